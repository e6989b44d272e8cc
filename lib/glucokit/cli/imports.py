"""glucokit import: the exports people have (Nightscout, Dexcom Clarity, LibreView, Apple Health) into a person's
observations, through the same validation, quarantine and idempotency as glucokit ingest."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from uuid import UUID

from glucokit.cli import data
from glucokit.cli.common import BadArgument, Exit, Parser, person_owner
from glucokit.db import connection
from glucokit.fhir import importers
from glucokit.fhir.importers import nightscout
from glucokit.fhir.importers.common import person_time_zone
from glucokit.fhir.ingest import Ingest, IngestReport, Record
from glucokit.tooling import database


def _import(args: argparse.Namespace) -> int:
    if args.url is not None and args.format != "nightscout":
        raise BadArgument("--url pulls from a Nightscout site: use it with --format nightscout")
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        user = person_owner(conn, args.person, args.user)
        # The person is checked (and their time zone read) before a byte of the export is.
        zone = person_time_zone(conn, user, args.person)
        run = Ingest([conn], user_id=user, person_id=args.person)
        began = time.monotonic()
        if args.file is not None:
            with args.file.open("rb") as stream:
                report = run.resources(importers.records(args.format, stream, zone), source=args.file.name)
        else:
            report = _pull(run, args)
    elapsed = time.monotonic() - began
    print(f"{report.summary()} in {elapsed:.1f} s")
    for rejection in report.rejections:
        print(f"  {rejection}")
    if report.rejected > len(report.rejections):
        print(f"  ... and {report.rejected - len(report.rejections)} more: see public.quarantined_entry")
    return Exit.NOTHING if report.rejected else Exit.OK


def _pull(run: Ingest, args: argparse.Namespace) -> IngestReport:
    token = os.environ.get(args.token_env)
    if not token:
        raise BadArgument(f"${args.token_env} is not set: it holds the site's access token")
    site = nightscout.Site(args.url, token)
    until = datetime.now(UTC)
    start = until - timedelta(days=args.since_days)
    conn = run.connections[0]

    def since(system: str) -> datetime:
        return nightscout.newest(conn, run.user_id, run.person_id, system) or start

    entries_since, treatments_since = since(nightscout.ENTRIES), since(nightscout.TREATMENTS)

    def records() -> Iterator[Record]:
        yield from site.records("entries", entries_since, until)
        yield from site.records("treatments", treatments_since, until)

    try:
        return run.resources(records(), source=site.url)
    finally:
        site.close()


def add_commands(commands: Any, common: Parser) -> None:
    """import."""
    command = commands.add_parser(
        "import",
        help="store a Nightscout, Dexcom Clarity, LibreView or Apple Health export for a person",
        description="Each record becomes a FHIR Observation and goes through glucokit ingest's validation, "
        "quarantine and idempotency. Local times without zone are read in the person's time zone. "
        f"Exit {Exit.OK}: every record stored or counted as skipped; {Exit.NOTHING}: some rejected (listed, and "
        "kept in quarantine).",
        parents=[common],
    )
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=data._input_file, metavar="FILE", help="the export")
    source.add_argument("--url", metavar="URL", help="pull from this Nightscout site instead of a file")
    command.add_argument("--format", type=str, choices=get_args(importers.Format), required=True)
    command.add_argument("--person", type=UUID, required=True, metavar="ID", help="the person the data belongs to")
    command.add_argument(
        "--user", type=UUID, metavar="ID", help="act as this signed-in user (default: the person's owner)"
    )
    command.add_argument(
        "--token-env",
        default="NIGHTSCOUT_TOKEN",
        metavar="VAR",
        help="environment variable holding the site's access token (default: NIGHTSCOUT_TOKEN)",
    )
    command.add_argument(
        "--since-days",
        type=float,
        default=90,
        metavar="D",
        help="with --url and nothing imported from the site yet: start this many days back (default: 90)",
    )
    command.set_defaults(handler=_import)
