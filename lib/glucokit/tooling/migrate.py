"""Migrating a database the way users do: ``supabase db push``.

On a plain PostgreSQL the platform layer goes first; then PGMQ, which the
migrations assume (the ``pgmq`` extension on a Supabase project, PGMQ's
SQL-only install from the ``pgmq`` package elsewhere); then the real Supabase
CLI applies ``supabase/migrations/`` and records each file in Supabase's own
``supabase_migrations.schema_migrations``. Each file runs in its own
transaction, so a failing file leaves the earlier ones applied and recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from glucokit.db.connection import connect
from glucokit.db.queries import query
from glucokit.db.sessions import Connection
from glucokit.db.urls import database_name, with_database
from glucokit.errors import GlucokitError
from glucokit.project import PROJECT_DIR
from glucokit.tooling import platform, supabase_cli
from glucokit.tooling.database import Target

_APPLYING = re.compile(r"Applying migration (\S+?)\.\.\.")


# How PGMQ was found or put in place (MigrationReport.pgmq).
PGMQ_PRESENT = "already present"
PGMQ_EXTENSION = "extension"
PGMQ_INSTALLED = "installed"


@dataclass(frozen=True)
class MigrationReport:
    supabase_project: bool
    applied: list[str]
    pgmq: str  # one of the PGMQ_* values


def install_pgmq(conn: Connection, *, supabase_project: bool) -> str:
    """Make sure PGMQ is there; says how (one of the PGMQ_* values).

    A database that has it (as an extension or from an earlier SQL-only
    install) is left alone: PGMQ's SQL-only script cannot run twice. A Supabase
    project gets the ``pgmq`` extension (Supabase Queues); any other server gets
    the SQL-only install of the PGMQ version the ``pgmq`` package pins, in one
    transaction.
    """
    row = conn.execute(query("pgmq_present")).fetchone()
    if row and row[0]:
        return PGMQ_PRESENT
    if supabase_project:
        conn.execute(query("pgmq_create_extension"))
        return PGMQ_EXTENSION
    try:
        # Imported here: only a plain PostgreSQL without PGMQ needs it, and the package is not light.
        from pgmq.install import get_embedded_install_sql  # noqa: PLC0415
    except ImportError as exc:
        raise GlucokitError(f"PGMQ is not installed and its SQL-only install needs the pgmq package: {exc}") from exc
    with conn.transaction():
        conn.execute(get_embedded_install_sql().encode())
    return PGMQ_INSTALLED


def migrate(url: str, *, workdir: Path = PROJECT_DIR) -> MigrationReport:
    """Bring the database up to date; re-running on an up-to-date database changes nothing."""
    with connect(url, autocommit=True) as conn:
        supabase_project = platform.is_supabase(conn)
        if not supabase_project:
            platform.install(conn)
        pgmq = install_pgmq(conn, supabase_project=supabase_project)
    result = supabase_cli.run(["db", "push", "--yes"], url, workdir=workdir)
    applied = _APPLYING.findall(result.output)
    if result.returncode != 0:
        if applied:
            earlier = len(applied) - 1
            raise GlucokitError(
                f"migration {applied[-1]} failed: {supabase_cli.error_summary(result.output)}"
                f" ({earlier} earlier migration{'s' if earlier != 1 else ''} of this run applied and recorded)"
            )
        raise GlucokitError(f"supabase db push failed: {supabase_cli.error_summary(result.output)}")
    return MigrationReport(supabase_project=supabase_project, applied=applied, pgmq=pgmq)


def applied_migrations(url: str) -> list[str]:
    """Versions recorded in the migration history (empty when the database was never migrated)."""
    with connect(url) as conn:
        exists = conn.execute(query("migration_history_exists")).fetchone()
        if not (exists and exists[0]):
            return []
        return [str(version) for version, _name in conn.execute(query("applied_migrations"))]


def local_migrations(workdir: Path = PROJECT_DIR) -> list[str]:
    """Versions of the migration files, oldest first."""
    return sorted(path.name.split("_", 1)[0] for path in (workdir / "supabase" / "migrations").glob("*.sql"))


def reset(target: Target, *, confirmed: bool) -> MigrationReport:
    """Drop and recreate the target database, then migrate it.

    The embedded database is reset on request; any other server only with
    ``confirmed``, and a Supabase project never (use the Supabase dashboard or
    CLI for that).
    """
    if not target.embedded and not confirmed:
        raise GlucokitError(f"refusing to reset {target.display} without --yes: it is not the embedded database")
    with connect(target.url, autocommit=True) as conn:
        if platform.is_supabase(conn):
            raise GlucokitError("refusing to reset a Supabase project: glucokit only resets databases it can recreate")
    name = database_name(target.url)
    maintenance = with_database(target.url, "template1" if name == "postgres" else "postgres")
    with connect(maintenance, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return migrate(target.url)
