"""glucokit summary: a person's CGM summary over a period (HL7 CGM Implementation Guide), as JSON or as the
IG's FHIR CGM Summary Observation with its members."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from glucokit.cli.common import Exit, Parser, person_owner
from glucokit.db import connection
from glucokit.db.sessions import as_user
from glucokit.fhir import summary
from glucokit.tooling import database


def _moment(text: str) -> datetime:
    """A time with its offset (2026-11-01T00:00:00Z): without one, which day a reading falls in is a guess."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone offset (e.g. Z or +01:00)")
    return moment


def _summary(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        user = person_owner(conn, args.person, args.user)
        with as_user(conn, user):
            found = summary.read(conn, args.person, args.start, args.end)
    document: dict[str, Any] = (
        summary.bundle(found, args.person, datetime.now(UTC))
        if args.fhir
        else {"person_id": str(args.person), **dataclasses.asdict(found)}
    )
    text = json.dumps(document, indent=2, default=str)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return Exit.OK if found.readings else Exit.NOTHING


def add_commands(commands: Any, common: Parser) -> None:
    """summary."""
    command = commands.add_parser(
        "summary",
        help="a person's CGM summary over a period: times in ranges, mean, GMI, CV, days of wear, sensor active %%",
        description="Over [--from, --to), at most 90 days, from the person's valid CGM readings. "
        f"Exit {Exit.NOTHING}: no readings in the period (and no FHIR form).",
        parents=[common],
    )
    command.add_argument("--person", type=UUID, required=True, metavar="ID", help="the person summarised")
    command.add_argument(
        "--user",
        type=UUID,
        metavar="ID",
        help="act as this signed-in user, under row-level security (default: the person's owner)",
    )
    command.add_argument(
        "--from", dest="start", type=_moment, required=True, metavar="TIME", help="ISO 8601, with offset"
    )
    command.add_argument("--to", dest="end", type=_moment, required=True, metavar="TIME", help="ISO 8601, with offset")
    command.add_argument(
        "--fhir", action="store_true", help="write the HL7 CGM Summary Observation and its members as a FHIR Bundle"
    )
    command.add_argument("--out", type=Path, metavar="FILE", help="write here instead of to standard output")
    command.set_defaults(handler=_summary)
