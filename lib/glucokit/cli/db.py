"""glucokit db and glucokit prisma: the database's lifecycle, its migrations, Supabase's linter, the pgTAP tests
and Prisma's schema check."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from glucokit.cli.common import Exit, Parser
from glucokit.db import connection
from glucokit.errors import GlucokitError
from glucokit.project import PRISMA_SCHEMA
from glucokit.tooling import advisors, database, migrate, pgtap, prisma_check, typescript


def _db_start(args: argparse.Namespace) -> int:
    if _external_url(args):
        raise GlucokitError(
            "the target is another server (DATABASE_URL or --database-url): glucokit only starts its embedded database"
        )
    began = time.monotonic()
    running = database.EmbeddedServer().start()
    print(f"embedded PostgreSQL running (pid {running.pid}) in {time.monotonic() - began:.1f} s")
    print(running.url())
    return Exit.OK


def _db_stop(args: argparse.Namespace) -> int:
    if _external_url(args):
        raise GlucokitError(
            "the target is another server (DATABASE_URL or --database-url): glucokit only stops its embedded database"
        )
    stopped = database.EmbeddedServer().stop()
    print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return Exit.OK


def _db_status(args: argparse.Namespace) -> int:
    if not _external_url(args) and database.EmbeddedServer().postmaster() is None:
        print(f"embedded PostgreSQL: stopped (data in {database.EMBEDDED_PGDATA})")
        return Exit.UNREACHABLE
    target = database.target(args.database_url, start=False)
    applied = migrate.applied_migrations(target.url)
    local = migrate.local_migrations()
    pending = [version for version in local if version not in applied]
    kind = "embedded PostgreSQL: running" if target.embedded else "database"
    print(f"{kind} at {target.display}")
    print(f"migrations: {len(applied)} applied, {len(pending)} pending")
    return Exit.OK


def _db_url(args: argparse.Namespace) -> int:
    print(database.target(args.database_url, start=False).url)
    return Exit.OK


def _db_migrate(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    report = migrate.migrate(target.url)
    print_migration(report)
    return Exit.OK


def _db_reset(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    report = migrate.reset(target, confirmed=args.yes)
    print(f"reset {target.display}")
    print_migration(report)
    return Exit.OK


def _prisma_check(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    report = prisma_check.check(_answering(target), Path(args.schema))
    if report.engine_diff:
        print(f"Prisma's schema engine finds drift; SQL that would bring the database to {args.schema}:")
        print(report.engine_diff)
    for problem in report.problems:
        print(f"drift: {problem}")
    if report.in_sync:
        print(f"in sync: {args.schema} matches {target.display}")
        return Exit.OK
    return Exit.FAILED


def _db_advisors(args: argparse.Namespace) -> int:
    found = advisors.lints(_answering(database.target(args.database_url)))
    schema = advisors.of_schema(found)
    for lint in schema:
        print(f"{lint.level} {lint.name}: {lint.detail}")
    print(f"{len(schema)} lint(s) about the schema, {len(found) - len(schema)} about index usage (not judged)")
    return Exit.FAILED if schema else Exit.OK


def _types(args: argparse.Namespace) -> int:
    url = _answering(database.target(args.database_url))
    path = typescript.TYPES_FILE
    if args.check:
        if not typescript.is_current(url):
            print(f"{path} differs from the migrated database: run `glucokit types --write`")
            return Exit.FAILED
        print(f"{path} is up to date")
        return Exit.OK
    text = typescript.generate(url)
    if args.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    else:
        print(text, end="")
    return Exit.OK


def _db_test(args: argparse.Namespace) -> int:
    return Exit.OK if pgtap.prove(_answering(database.target(args.database_url))) == 0 else Exit.FAILED


def _answering(target: database.Target) -> str:
    """The target's URL, once its database answers: a program it is handed to (the Supabase CLI,
    pg_prove, Prisma's schema engine) would report a database that is down in many lines of its own."""
    connection.connect(target.url).close()
    return target.url


def print_migration(report: migrate.MigrationReport) -> None:
    layer = "skipped (Supabase project)" if report.supabase_project else "installed"
    print(f"platform layer: {layer}")
    print(f"pgmq: {report.pgmq}")
    if report.applied:
        print(f"applied {len(report.applied)} migration(s): {', '.join(report.applied)}")
    else:
        print("database is up to date")


def _external_url(args: argparse.Namespace) -> bool:
    return bool(database.target_url_override(args.database_url))


def add_commands(commands: Any, common: Parser) -> None:
    """db start, stop, status, url, migrate, reset, advisors and test; prisma check; types."""
    db = commands.add_parser("db", help="start, stop, inspect and migrate the database")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    actions: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
        "start": ("start the embedded PostgreSQL", _db_start),
        "stop": ("stop the embedded PostgreSQL", _db_stop),
        "status": (
            f"say whether the database runs and how far it is migrated (exit {Exit.UNREACHABLE}: it does not)",
            _db_status,
        ),
        "url": ("print the database URL on one line", _db_url),
        "migrate": ("apply the migrations with `supabase db push`", _db_migrate),
        "reset": ("drop and recreate the database, then migrate it", _db_reset),
        "advisors": (
            f"run Supabase's database linter; exit {Exit.FAILED} on any lint, INFO included (unused indexes aside)",
            _db_advisors,
        ),
        "test": ("run the pgTAP tests in supabase/tests with pg_prove", _db_test),
    }
    for name, (help_text, handler) in actions.items():
        action = db_commands.add_parser(name, help=help_text, parents=[common])
        action.set_defaults(handler=handler)
        if name == "reset":
            action.add_argument(
                "--yes", action="store_true", help="confirm resetting a database other than the embedded one"
            )
    prisma = commands.add_parser("prisma", help="check the Prisma schema against the database")
    prisma_commands = prisma.add_subparsers(dest="prisma_command", required=True, metavar="ACTION")
    prisma_check_command = prisma_commands.add_parser(
        "check",
        help=f"diff prisma/schema.prisma against the migrated database (exit {Exit.FAILED} on drift)",
        parents=[common],
    )
    prisma_check_command.add_argument("--schema", default=str(PRISMA_SCHEMA), help="Prisma schema file")
    prisma_check_command.set_defaults(handler=_prisma_check)
    types = commands.add_parser(
        "types",
        help="the Database type for supabase-js, from `supabase gen types typescript` (printed unless --write/--check)",
        parents=[common],
    )
    types_output = types.add_mutually_exclusive_group()
    types_output.add_argument(
        "--write", action="store_true", help=f"write it to {typescript.TYPES_FILE.name} in types/"
    )
    types_output.add_argument(
        "--check", action="store_true", help=f"exit {Exit.FAILED} when the committed file differs from it"
    )
    types.set_defaults(handler=_types)
