"""A scratch database for a benchmark: fresh, migrated like any other, dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

import psycopg
from psycopg import sql

from glucokit.db.urls import with_database
from glucokit.tooling import database, migrate


@contextmanager
def scratch_database() -> Iterator[str]:
    """The URL of a new database on the embedded server, migrated with `supabase db push`."""
    server = database.EmbeddedServer().start().url()
    name = f"glucokit_bench_{uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        url = with_database(server, name)
        migrate.migrate(url)
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
