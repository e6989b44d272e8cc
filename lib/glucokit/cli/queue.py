"""glucokit queue: the retrain queue as its operator sees it."""

from __future__ import annotations

import argparse
from typing import Any

from glucokit.cli.common import Exit, Parser
from glucokit.db import connection
from glucokit.db.sessions import as_worker
from glucokit.modelops import retrain_queue
from glucokit.tooling import database


def _queue_status(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        with as_worker(conn, None):
            found = retrain_queue.metrics(conn)
        given_up = retrain_queue.dead_letters(conn, args.limit)
    oldest = f", the oldest {found.oldest_msg_age_sec} s old" if found.oldest_msg_age_sec is not None else ""
    print(f"queue: {found.queue_length} message(s) waiting{oldest}")
    print(
        f"requests: {found.queued} queued ({found.retrying} of them retrying after a failed attempt), "
        f"{found.running} running, {found.expired_leases} with an expired lease; "
        f"{found.failed_last_day} given up in the last day"
    )
    if not given_up:
        print("no request was given up")
        return Exit.OK
    print("given up (dead letters), newest first:")
    for letter in given_up:
        when = f"{letter.finished_at:%Y-%m-%d %H:%M}" if letter.finished_at is not None else "?"
        print(f"  {when}  person {letter.person_id}  request {letter.request_id}  ({letter.trigger}, "
              f"{letter.attempts} attempt(s)): {letter.error or 'no reason recorded'}")  # fmt: skip
    return Exit.OK


def _count(text: str) -> int:
    """A number of rows to show: 1 to 1000."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= number <= 1000:
        raise argparse.ArgumentTypeError(f"{number} is not between 1 and 1000")
    return number


def add_commands(commands: Any, common: Parser) -> None:
    """queue status."""
    queue = commands.add_parser("queue", help="the retrain queue, as its operator sees it")
    queue_commands = queue.add_subparsers(dest="queue_command", required=True, metavar="ACTION")
    queue_status = queue_commands.add_parser(
        "status",
        help="waiting, running and retrying requests, and the requests given up for good with their reasons",
        parents=[common],
    )
    queue_status.add_argument(
        "--limit", type=_count, default=20, help="given-up requests to list, 1 to 1000 (default 20)"
    )
    queue_status.set_defaults(handler=_queue_status)
