"""glucokit patterns: compute day patterns (as a worker) and find a person's similar days (as the owner)."""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any
from uuid import UUID

from glucokit.cli.common import BadArgument, Exit, Parser, person_owner
from glucokit.db import connection
from glucokit.db.sessions import as_user
from glucokit.errors import NotFound
from glucokit.jobs import pattern_job
from glucokit.modelops import patterns
from glucokit.tooling import database


def _patterns_compute(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        if args.all:
            if args.full:
                raise BadArgument("--full recomputes one person's days: use it with --person")
            run = pattern_job.run(conn, on_refresh=lambda done: print(done.summary()))
            for person, error in run.failed.items():
                print(f"person {person}: failed: {error}")
            return Exit.FAILED if run.failed else Exit.OK
        done = patterns.refresh(conn, args.person, full=args.full, reason="operator: compute day patterns")
    print(done.summary())
    for skipped in done.skipped:
        print(f"  skipped {skipped.day}: {skipped.reason}")
    return Exit.OK


def _patterns_similar(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        user = person_owner(conn, args.person, args.user)
        with as_user(conn, user):
            found = patterns.similar_days(conn, args.person, args.day, args.limit)
    if found is None:
        raise NotFound(f"person {args.person} has no day pattern for {args.day} (or is not yours)")
    for rank, similar in enumerate(found, 1):
        print(
            f"{rank:>3}  {similar.day}  {similar.rms_difference_mg_dl:6.1f} mg/dL RMS difference  "
            f"({similar.readings} readings, {similar.filled_slots} half-hours filled)"
        )
    return Exit.OK


def add_commands(commands: Any, common: Parser) -> None:
    """patterns compute and patterns similar."""
    day_patterns = commands.add_parser("patterns", help="day patterns: each day's glucose profile, and similar days")
    patterns_commands = day_patterns.add_subparsers(dest="patterns_command", required=True, metavar="ACTION")
    compute_command = patterns_commands.add_parser(
        "compute", help="compute the day patterns of ended days (as a worker, for pattern search)", parents=[common]
    )
    who = compute_command.add_mutually_exclusive_group(required=True)
    who.add_argument("--person", type=UUID, metavar="ID", help="this person's days")
    who.add_argument(
        "--all", action="store_true", help="every consenting person with ended days after their newest pattern"
    )
    compute_command.add_argument(
        "--full", action="store_true", help="recompute every day, removing days that no longer qualify (--person)"
    )
    compute_command.set_defaults(handler=_patterns_compute)
    similar_command = patterns_commands.add_parser(
        "similar", help="the person's days most like one day (as the owner, under row-level security)",
        parents=[common],
    )  # fmt: skip
    similar_command.add_argument("--person", type=UUID, required=True, metavar="ID")
    similar_command.add_argument("--day", type=date.fromisoformat, required=True, metavar="YYYY-MM-DD")
    similar_command.add_argument(
        "--limit", type=int, default=10, choices=range(1, patterns.MAX_SIMILAR + 1), metavar="K",
        help=f"how many days (1-{patterns.MAX_SIMILAR})",
    )  # fmt: skip
    similar_command.add_argument(
        "--user", type=UUID, metavar="ID", help="act as this signed-in user (default: the person's owner)"
    )
    similar_command.set_defaults(handler=_patterns_similar)
