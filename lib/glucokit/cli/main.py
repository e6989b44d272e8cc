"""The ``glucokit`` command: the parser assembled from every command group, and each failure translated into one
line on stderr and an exit status from the table in common.py."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import psycopg

from glucokit.cli import (
    data,
    db,
    demo,
    experiments,
    imports,
    models,
    patterns,
    policies,
    privacy,
    queue,
    retention,
    summary,
)
from glucokit.cli.common import EXIT_MEANINGS, BadArgument, Exit, Parser
from glucokit.errors import DatabaseUnreachable, GlucokitError, NotFound

# Every command group, in the order `glucokit --help` lists them.
_GROUPS = (db, policies, data, imports, summary, models, queue, patterns, experiments, privacy, retention, demo)


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--database-url",
        metavar="URL",
        help="PostgreSQL URL to work on instead of the embedded database (default: $DATABASE_URL)",
    )
    parser = Parser(
        prog="glucokit",
        description="Supabase schema kit and workers for personal glucose forecasts (informational only).",
        epilog="exit status:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_MEANINGS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--debug", action="store_true", help="show a failure's traceback too (so does GLUCOKIT_DEBUG=1)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _GROUPS:
        group.add_commands(commands, common)
    return parser


# Each kind of failure with its exit status; the first that matches counts (so subclasses come before their bases).
_FAILURES: tuple[tuple[type[Exception] | tuple[type[Exception], ...], Exit], ...] = (
    (BadArgument, Exit.USAGE),
    (DatabaseUnreachable, Exit.UNREACHABLE),
    (NotFound, Exit.NOT_FOUND),
    # What begin_person_scope and row-level security answer for an unknown person or one without consent.
    ((psycopg.errors.NoDataFound, psycopg.errors.InsufficientPrivilege), Exit.NOT_FOUND),
    (psycopg.DataError, Exit.USAGE),
    # A file argument that cannot be read or written (a directory that is not there, no permission).
    ((FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError), Exit.USAGE),
)


def _failure(failure: Exception) -> tuple[Exit, str]:
    """The exit status of a command that raised ``failure``, and what to tell the person at the terminal."""
    match failure:
        case GlucokitError():
            message = str(failure)
        case psycopg.Error():
            # PostgreSQL's primary message: the lines after it (context, hints) are for developers.
            message = failure.diag.message_primary or str(failure)
        case OSError() if failure.filename is not None:
            message = f"{failure.filename}: {failure.strerror}"
        case _:
            return Exit.FAILED, f"unexpected {type(failure).__name__}: {failure} (--debug shows the traceback)"
    # Without an SQLSTATE, or in class 08 or 57P (shutdown), it is the connection itself that failed.
    if isinstance(failure, psycopg.OperationalError) and (failure.sqlstate or "08").startswith(("08", "57P")):
        return Exit.UNREACHABLE, f"lost the database connection: {message}"
    return next((status for kinds, status in _FAILURES if isinstance(failure, kinds)), Exit.FAILED), message


class _OneLine(logging.Formatter):
    """A warning or error a library logs (a job's failed person, with its traceback) as one line at the terminal:
    the command's own output says what failed; --debug shows the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return f"glucokit: {' '.join(record.getMessage().split())}"


def _log_to_terminal(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("glucokit: %(message)s") if debug else _OneLine())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error the parser has told in one line
        return int(done.code or 0)
    debug = args.debug or os.environ.get("GLUCOKIT_DEBUG") == "1"
    _log_to_terminal(debug)
    try:
        code: int = args.handler(args)
    except Exception as failure:
        if debug:
            raise
        status, message = _failure(failure)
        print(f"glucokit: error: {' '.join(message.split())}", file=sys.stderr)
        return status
    return code


if __name__ == "__main__":
    sys.exit(main())
