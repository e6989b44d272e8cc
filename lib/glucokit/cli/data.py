"""glucokit ingest, export, chart, simulate and evaluate: data in, data out, data drawn, data made up, data
learned from."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any, get_args
from uuid import UUID

from glucokit.api import reads
from glucokit.api.chart import ChartFormat, render
from glucokit.cli.common import Exit, Parser, person_owner
from glucokit.db import connection
from glucokit.db.sessions import as_user
from glucokit.disclaimer import LANGUAGES
from glucokit.errors import GlucokitError, NotFound
from glucokit.fhir import export, ingest
from glucokit.fhir.resources import FHIR_VERSIONS
from glucokit.tooling import database, simulate


def _ingest(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    limits = ingest.Limits(max_document_bytes=int(args.max_document_mib * ingest.MIB))
    connections = [connection.connect(target.url) for _ in range(args.writers)]
    rejected = 0
    try:
        user = person_owner(connections[0], args.person, args.user)
        run = ingest.Ingest(
            connections, user_id=user, person_id=args.person, fhir_version=args.fhir_version, limits=limits
        )
        for path in args.files:
            began = time.monotonic()
            report = run.path(path)
            elapsed = time.monotonic() - began
            print(f"{report.summary()} in {elapsed:.1f} s ({report.entries / max(elapsed, 1e-9):,.0f} entries/s)")
            for rejection in report.rejections:
                print(f"  {rejection}")
            if report.rejected > len(report.rejections):
                print(f"  ... and {report.rejected - len(report.rejections)} more: see public.quarantined_entry")
            rejected += report.rejected
    finally:
        for conn in connections:
            conn.close()
    return Exit.NOTHING if rejected else Exit.OK


def _export(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        user = person_owner(conn, args.person, args.user)
        if args.out is None:
            count = export.export(
                conn, sys.stdout.buffer, user_id=user, person_id=args.person, form=args.format, forecasts=args.forecasts
            )
        else:
            with args.out.open("wb") as out:
                count = export.export(
                    conn, out, user_id=user, person_id=args.person, form=args.format, forecasts=args.forecasts
                )
    print(
        f"exported {count} {'entries' if args.forecasts else 'observation(s)'} of person {args.person}", file=sys.stderr
    )
    return Exit.OK


def _chart(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        user = person_owner(conn, args.person, args.user)
        with as_user(conn, user):
            data = reads.chart_data(conn, args.person, args.lang)
    if data is None:
        raise NotFound(f"person {args.person} has no readings or forecast to chart (or is not yours)")
    out = args.out or Path(f"chart-{args.person}.{args.format}")
    out.write_bytes(render(data, args.format))
    print(f"wrote {out}")
    return Exit.OK


def _simulate(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("simglucose") is None:
        raise GlucokitError("glucokit simulate needs simglucose: pip install 'glucokit[simulate]'")
    began = time.monotonic()
    results = simulate.simulate(args.patients, args.days, seed=args.seed)
    written = simulate.write_bundles(results, args.out, compress=not args.no_compress)
    for result in results:
        if result.dropped:
            print(f"dropped {result.name}: {result.dropped}")
    print(f"wrote {len(written)} bundle(s) to {args.out} in {time.monotonic() - began:.0f} s")
    return Exit.OK


def _evaluate(args: argparse.Namespace) -> int:
    from glucokit.fhir.bundle import read_bundle  # noqa: PLC0415
    from glucokit.forecast import evaluation  # noqa: PLC0415 - torch loads only for this command

    people = {path.name.split(".")[0]: read_bundle(path) for path in args.files}
    summary = evaluation.evaluate_people(people, tz=args.tz)
    print(json.dumps(summary, indent=2))
    for name, dropped in summary["dropped_readings"].items():
        if dropped:
            counts = "; ".join(f"{count:,} {reason}" for reason, count in dropped.items())
            print(f"{name}: left out or not used as exact readings: {counts}", file=sys.stderr)
    return Exit.OK if summary["persons"] else Exit.NOTHING


def _input_file(text: str) -> Path:
    """A file to read: a missing one is a usage error, told before anything runs."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def add_commands(commands: Any, common: Parser) -> None:
    """ingest, export, chart, simulate and evaluate."""
    acting = Parser(add_help=False, parents=[common])
    acting.add_argument("--person", type=UUID, required=True, metavar="ID", help="the person the data belongs to")
    acting.add_argument(
        "--user",
        type=UUID,
        metavar="ID",
        help="act as this signed-in user, under row-level security (default: the person's owner)",
    )
    ingest_command = commands.add_parser(
        "ingest",
        help="store FHIR Observations (a Bundle, one Observation, or NDJSON; .gz too) for a person",
        description=f"Exit {Exit.OK}: every entry stored; {Exit.NOTHING}: some entries rejected "
        "(listed, and kept in quarantine).",
        parents=[acting],
    )
    ingest_command.add_argument("files", nargs="+", type=_input_file, metavar="FILE")
    ingest_command.add_argument("--fhir-version", choices=FHIR_VERSIONS, default="R4B", help="default: R4B")
    ingest_command.add_argument(
        "--writers", type=int, default=2, choices=range(1, 9), metavar="N", help="database connections (default: 2)"
    )
    ingest_command.add_argument(
        "--max-document-mib",
        type=float,
        default=ingest.Limits().max_document_bytes / ingest.MIB,
        metavar="MIB",
        help="largest JSON document accepted (NDJSON has no total limit; default: %(default)s)",
    )
    ingest_command.set_defaults(handler=_ingest)
    export_command = commands.add_parser(
        "export", help="write a person's observations as a FHIR Bundle or NDJSON", parents=[acting]
    )
    export_command.add_argument("--format", choices=export.EXPORT_FORMATS, default="bundle", help="default: bundle")
    export_command.add_argument("--out", type=Path, metavar="FILE", help="write here instead of to standard output")
    export_command.add_argument(
        "--forecasts",
        action="store_true",
        help="add the forecasts (Observations derived from the readings) and a Provenance per model (bundle only)",
    )
    export_command.set_defaults(handler=_export)

    chart_command = commands.add_parser(
        "chart",
        help="draw a person's recent readings and latest forecast with its band and the disclaimer (SVG or PNG)",
        parents=[acting],
    )
    chart_command.add_argument("--format", choices=get_args(ChartFormat), default="svg", help="default: svg")
    chart_command.add_argument("--lang", choices=LANGUAGES, default="en", help="default: en")
    chart_command.add_argument("--out", type=Path, metavar="FILE", help="default: chart-<person>.<format>")
    chart_command.set_defaults(handler=_chart)

    simulate_command = commands.add_parser(
        "simulate",
        help="simulated CGM, carbohydrate and insulin data (simglucose) as one FHIR bundle per patient",
        description="Seeded and reproducible; patients whose glucose falls below 10 mg/dL are dropped.",
    )
    simulate_command.add_argument("--patients", type=int, required=True, metavar="N", help="1 to 30")
    simulate_command.add_argument("--days", type=float, required=True, metavar="D")
    simulate_command.add_argument("--seed", type=int, default=0, help="default: 0")
    simulate_command.add_argument("--out", type=Path, required=True, metavar="DIR")
    simulate_command.add_argument("--no-compress", action="store_true", help="write .json instead of .json.gz")
    simulate_command.set_defaults(handler=_simulate)

    evaluate_command = commands.add_parser(
        "evaluate",
        help="train each person's forecaster on a FHIR bundle and report test metrics per candidate (JSON)",
        description="Chronological split per person by usable windows: the first 8/14 train, the next 2/14 "
        "validate, the last 4/14 test. Readings left out are counted per reason (dropped_readings, and on "
        f"stderr). Exit {Exit.NOTHING} when no person has enough data.",
    )
    evaluate_command.add_argument(
        "files", nargs="+", type=_input_file, metavar="BUNDLE", help="one person per file (.json, .gz)"
    )
    evaluate_command.add_argument("--tz", default="UTC", help="time zone of the time-of-day feature (default: UTC)")
    evaluate_command.set_defaults(handler=_evaluate)
