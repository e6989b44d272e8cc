"""glucokit retention: the forecast retention policy, and the retention job (as a worker)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from glucokit.cli.common import Exit, Parser
from glucokit.db import connection
from glucokit.jobs import retention_job
from glucokit.tooling import database


def _retention_policy(args: argparse.Namespace) -> int:
    with connection.connect(database.target(args.database_url).url) as conn:
        print(retention_job.policy(conn).summary())
    return Exit.OK


def _retention_run(args: argparse.Namespace) -> int:
    with connection.connect(database.target(args.database_url).url) as conn:
        done = retention_job.run(conn, now=args.now)
    print(done.summary())
    for name in done.partitions_dropped:
        print(f"  dropped partitions.{name}")
    return Exit.OK


def add_commands(commands: Any, common: Parser) -> None:
    """retention policy and retention run."""
    parser = commands.add_parser("retention", help="how long full-resolution forecasts are kept, and the job")
    actions = parser.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    policy_command = actions.add_parser("policy", help="the retention policy in force", parents=[common])
    policy_command.set_defaults(handler=_retention_policy)
    run_command = actions.add_parser(
        "run",
        help="the retention job: create the forecast partitions ahead, drop expired days (audited)",
        parents=[common],
    )
    run_command.add_argument(
        "--now", type=datetime.fromisoformat, metavar="TIME", help="expire as of this moment (default: now)"
    )
    run_command.set_defaults(handler=_retention_run)
