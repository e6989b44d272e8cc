"""Fixtures: a real PostgreSQL, migrated with `supabase db push`, and a seeded world.

By default the tests use the embedded PostgreSQL (started on demand) and give
the session its own fresh database; GLUCOKIT_TEST_SERVER_URL names another
server to do the same on (tests/with-postgres-15 sets it). With DATABASE_URL
set they run against that one database instead (it is migrated first), and
tests that need to create databases of their own are skipped.

A server without pgvector (Debian's PostgreSQL 15 here; every Supabase project
has it) is migrated without the migrations that need it, and the tests marked
`full_schema` are skipped there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql

from glucokit.db.sessions import Connection
from glucokit.db.urls import with_database
from glucokit.privacy.consent import CONSENT_PURPOSES
from glucokit.project import PROJECT_DIR, SUPABASE_DIR
from glucokit.tooling import database, migrate, policies
from glucokit.tooling.policies import ProbeWorld
from owners import Owner

# The API's fixtures (a signed-in world and an app), for every module that tests the API.
pytest_plugins = ["api_fixtures"]

EXTERNAL_URL = os.environ.get("DATABASE_URL")
TEST_SERVER_URL = os.environ.get("GLUCOKIT_TEST_SERVER_URL")


def _maintenance_url() -> str:
    return TEST_SERVER_URL or database.EmbeddedServer().start().url()


@cache
def _server_has_pgvector() -> bool:
    with psycopg.connect(EXTERNAL_URL or _maintenance_url()) as conn:
        return conn.execute("select exists (select from pg_available_extensions where name = 'vector')").fetchone() == (
            True,
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("full_schema")]
    if marked and not _server_has_pgvector():
        for item in marked:
            item.add_marker(pytest.mark.skip(reason="needs every migration: this server has no pgvector"))


@pytest.fixture(scope="session")
def migrations_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project, or on a server without pgvector a copy of its supabase/ without the migrations that need it."""
    if _server_has_pgvector():
        return PROJECT_DIR
    workdir = tmp_path_factory.mktemp("without-pgvector")
    shutil.copytree(SUPABASE_DIR, workdir / "supabase", ignore=shutil.ignore_patterns(".temp", ".branches"))
    for migration in (workdir / "supabase" / "migrations").glob("*.sql"):
        if "extension if not exists vector" in migration.read_text():
            migration.unlink()
    return workdir


@pytest.fixture(scope="session")
def server_url() -> str:
    """A maintenance database on a server where tests may create databases."""
    if EXTERNAL_URL:
        pytest.skip("creates databases of its own: not done on an external DATABASE_URL")
    return _maintenance_url()


def _create_database(server_url: str) -> str:
    name = f"glucokit_test_{uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def _drop_database(server_url: str, url: str) -> None:
    name = url.split("?", maxsplit=1)[0].rsplit("/", 1)[1]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
def new_database(server_url: str) -> Iterator[Callable[[], str]]:
    """Makes empty databases on the embedded server; drops them afterwards."""
    made: list[str] = []

    def make() -> str:
        made.append(_create_database(server_url))
        return made[-1]

    yield make
    for url in made:
        _drop_database(server_url, url)


@pytest.fixture(scope="session")
def database_url(migrations_workdir: Path) -> Iterator[str]:
    """A database migrated the way users migrate: platform layer, then `supabase db push`."""
    if EXTERNAL_URL:
        migrate.migrate(EXTERNAL_URL, workdir=migrations_workdir)
        yield EXTERNAL_URL
        return
    maintenance = _maintenance_url()
    url = _create_database(maintenance)
    migrate.migrate(url, workdir=migrations_workdir)
    yield url
    _drop_database(maintenance, url)


def _remove_world(conn: Connection, world: ProbeWorld) -> None:
    for person in (world.a, world.b):
        conn.execute(
            "delete from storage.objects where bucket_id = 'models' and starts_with(name, %s)", (f"{person.user}/",)
        )
        conn.execute("delete from auth.users where id = %s", (person.user,))  # cascades to everything of theirs


@pytest.fixture(scope="session")
def world(database_url: str) -> Iterator[ProbeWorld]:
    """Users A and B, each owning one person with a row of every kind (policies/world.sql), committed."""
    world = policies.probe_world("tests")
    with psycopg.connect(database_url) as conn:
        with conn.transaction():
            _remove_world(conn, world)
            for statement in policies.world_statements(world):
                conn.execute(statement)
            # The world's stand-ins for another application's storage policies (policies/world.sql) prove the
            # matrix, which seeds its own world; committed, they would be part of the catalog the guards check.
            for policy in ("Users manage their own avatars", "Users manage the files of their own folder"):
                conn.execute(sql.SQL("drop policy {} on storage.objects").format(sql.Identifier(policy)))
        yield world
        with conn.transaction():
            _remove_world(conn, world)


@pytest.fixture
def conn(database_url: str) -> Iterator[Connection]:
    """A connection as the database owner; tests switch roles per transaction."""
    with psycopg.connect(database_url) as connection:
        yield connection


@contextmanager
def _owners(database_url: str) -> Iterator[Callable[[], Owner]]:
    made: list[Owner] = []

    def make() -> Owner:
        owner = Owner(uuid4(), uuid4())
        with psycopg.connect(database_url) as conn:
            conn.execute(
                "insert into auth.users (id, aud, role, email) values (%s, 'authenticated', 'authenticated', %s)",
                (owner.user, f"{owner.user}@ingest.test"),
            )
            conn.execute("insert into public.person (id, owner_id) values (%s, %s)", (owner.person, owner.user))
            conn.execute(
                "insert into public.consent (person_id, purpose) select %s, unnest(%s::public.processing_purpose[])",
                (owner.person, [str(purpose) for purpose in CONSENT_PURPOSES]),
            )
        made.append(owner)
        return owner

    yield make
    with psycopg.connect(database_url) as conn:
        for owner in made:
            conn.execute("delete from auth.users where id = %s", (owner.user,))


@pytest.fixture
def make_owner(database_url: str) -> Iterator[Callable[[], Owner]]:
    """Signed-in users who own one fresh person each, consenting to every purpose (committed; removed with
    everything of theirs afterwards)."""
    with _owners(database_url) as make:
        yield make


@pytest.fixture(scope="module")
def make_module_owner(database_url: str) -> Iterator[Callable[[], Owner]]:
    """The same, kept for every test of a module (for data that is costly to make, such as trained models)."""
    with _owners(database_url) as make:
        yield make


@pytest.fixture
def owner(make_owner: Callable[[], Owner]) -> Owner:
    return make_owner()
