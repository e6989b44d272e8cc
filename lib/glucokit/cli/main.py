"""The ``glucokit`` command line."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn, get_args
from uuid import UUID

import psycopg

from glucokit.api import reads
from glucokit.api.chart import ChartFormat, render
from glucokit.cli import demo
from glucokit.db import connection
from glucokit.db.queries import query
from glucokit.db.sessions import Connection, Purpose, as_user, as_worker
from glucokit.disclaimer import LANGUAGES
from glucokit.errors import DatabaseUnreachable, GlucokitError, NotFound
from glucokit.fhir import export, ingest
from glucokit.fhir.resources import FHIR_VERSIONS
from glucokit.forecast.pipeline import FAMILIES
from glucokit.jobs import retrain_queue
from glucokit.modelops import experiments, model_store, patterns, registry
from glucokit.modelops.model_store import LocalModelStore
from glucokit.privacy import rights as privacy
from glucokit.privacy.consent import CONSENT_PURPOSES
from glucokit.project import DEMO_CHARTS_DIR, MODEL_STORE_DIR, PRISMA_SCHEMA
from glucokit.tooling import advisors, database, migrate, pgtap, policies, prisma_check, simulate


class Exit(IntEnum):
    """The exit status of every glucokit command; ``EXIT_MEANINGS`` says what each one means."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOTHING = 3
    UNREACHABLE = 4
    NOT_FOUND = 5


EXIT_MEANINGS = {
    Exit.OK: "done",
    Exit.FAILED: "failed: the command found a problem (a lint, drift, a failed person) or could not do what was asked",
    Exit.USAGE: "bad input: an unknown option or a missing argument, a malformed value (a person id that is not"
    " a UUID), a file that cannot be read or written",
    Exit.NOTHING: "done, with nothing to show or not everything done (no versions, entries rejected, continue)",
    Exit.UNREACHABLE: "the database cannot be reached (not running, refused, or no answer in time)",
    Exit.NOT_FOUND: "not found or not allowed: an unknown or someone else's person, an unknown experiment,"
    " no consent for the purpose",
}


class BadArgument(GlucokitError):
    """An argument the parser accepted that the command cannot take (exit 2, like the parser's own errors)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line: the usage itself is one ``--help`` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(Exit.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    _print_migration(report)
    return Exit.OK


def _db_reset(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    report = migrate.reset(target, confirmed=args.yes)
    print(f"reset {target.display}")
    _print_migration(report)
    return Exit.OK


def _demo(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    print(f"database: {target.display}")
    _print_migration(migrate.migrate(target.url))
    with connection.connect(target.url, autocommit=True) as conn:
        demo.load(conn, LocalModelStore(MODEL_STORE_DIR))
        print()
        print(demo.summary(conn))
        charts = demo.write_charts(conn, DEMO_CHARTS_DIR)
    print()
    print(f"charts: {', '.join(str(path) for path in charts)}")
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
    serious = advisors.at_or_above(found, "WARN")
    for lint in serious:
        print(f"{lint.level} {lint.name}: {lint.detail}")
    print(f"{len(serious)} lint(s) at WARN or above, {len(found) - len(serious)} at INFO")
    return Exit.FAILED if serious else Exit.OK


def _db_test(args: argparse.Namespace) -> int:
    return Exit.OK if pgtap.prove(_answering(database.target(args.database_url))) == 0 else Exit.FAILED


def _answering(target: database.Target) -> str:
    """The target's URL, once its database answers: a program it is handed to (the Supabase CLI,
    pg_prove, Prisma's schema engine) would report a database that is down in many lines of its own."""
    connection.connect(target.url).close()
    return target.url


def _policies_check(args: argparse.Namespace) -> int:
    matrix = policies.load()
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        measurement = policies.measure(conn, matrix)
        problems = policies.guard(conn, matrix) + measurement.mismatches(matrix)
    for problem in problems:
        print(f"problem: {problem}")
    blanket = sum(1 for _ in policies.blanket_cells(matrix))
    print(
        f"{len(measurement.outcomes)} cells and {blanket} statements without WHERE measured; {len(problems)} problem(s)"
    )
    return Exit.FAILED if problems else Exit.OK


def _policies_report(args: argparse.Namespace) -> int:
    matrix = policies.load()
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        text = policies.report(matrix, policies.measure(conn, matrix))
    if args.write:
        policies.REPORT_FILE.write_text(text)
        print(f"wrote {policies.REPORT_FILE}")
    else:
        print(text, end="")
    return Exit.OK


def _policies_pgtap(args: argparse.Namespace) -> int:
    text = policies.pgtap_file(policies.load())
    path = policies.PGTAP_FILE
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is out of date: run `glucokit policies pgtap`")
            return Exit.FAILED
        print(f"{path} is up to date")
        return Exit.OK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return Exit.OK


def _person_owner(conn: Connection, person_id: UUID, user: UUID | None) -> UUID:
    """The user to act as: ``--user``, or else the person's owner (the CLI holds the database's credentials)."""
    if user is not None:
        return user
    row = conn.execute(query("person_owner"), {"person_id": person_id}).fetchone()
    conn.commit()
    if row is None:
        raise NotFound(f"person {person_id} does not exist")
    owner = row[0]
    assert isinstance(owner, UUID)
    return owner


def _ingest(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    limits = ingest.Limits(max_document_bytes=int(args.max_document_mib * ingest.MIB))
    connections = [connection.connect(target.url) for _ in range(args.writers)]
    rejected = 0
    try:
        user = _person_owner(connections[0], args.person, args.user)
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
        user = _person_owner(conn, args.person, args.user)
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
        user = _person_owner(conn, args.person, args.user)
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
    from glucokit.forecast import evaluation  # noqa: PLC0415 - torch loads only for this command
    from glucokit.forecast.bundle import read_bundle  # noqa: PLC0415

    people = {path.name.split(".")[0]: read_bundle(path) for path in args.files}
    summary = evaluation.evaluate_people(people, tz=args.tz)
    print(json.dumps(summary, indent=2))
    return Exit.OK if summary["persons"] else Exit.NOTHING


def _models_list(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with (
        connection.connect(target.url) as conn,
        as_worker(conn, args.person, Purpose.TRAINING, "operator: list model versions"),
    ):
        found = registry.versions(conn, args.person)
    if not found:
        print(f"person {args.person} has no model versions")
        return Exit.NOTHING
    for model in found:
        fallback = ", fallback" if model.is_fallback else ""
        rmse = " ".join(
            f"RMSE{minutes} {model.metrics[key]:.2f}"
            for minutes in (30, 60)
            if isinstance(model.metrics.get(key := f"rmse_{minutes}"), float)
        )
        trained = f"trained {model.trained_at:%Y-%m-%d %H:%M}"
        print(f"{model.version:>8}  {model.stage:<8}  {model.algorithm}{fallback}  {trained}  {rmse}".rstrip())
        if model.stage_reason:
            print(f"{'':>8}  {model.stage_reason}")
    return Exit.OK


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


def _models_rollback(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with (
        connection.connect(target.url) as conn,
        as_worker(conn, args.person, Purpose.TRAINING, f"operator: roll back ({args.reason})"),
    ):
        restored = registry.rollback(conn, args.person, reason=args.reason)
    print(f"person {args.person}: version {restored.version} ({restored.algorithm}) is active again")
    return Exit.OK


def _patterns_compute(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        if args.all:
            if args.full:
                raise BadArgument("--full recomputes one person's days: use it with --person")
            run = patterns.refresh_due(conn, on_refresh=lambda done: print(done.summary()))
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
        user = _person_owner(conn, args.person, args.user)
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


def _print_migration(report: migrate.MigrationReport) -> None:
    layer = "skipped (Supabase project)" if report.supabase_project else "installed"
    print(f"platform layer: {layer}")
    print(f"pgmq: {report.pgmq}")
    if report.applied:
        print(f"applied {len(report.applied)} migration(s): {', '.join(report.applied)}")
    else:
        print("database is up to date")


def _external_url(args: argparse.Namespace) -> bool:
    return bool(database.target_url_override(args.database_url))


def _input_file(text: str) -> Path:
    """A file to read: a missing one is a usage error, told before anything runs."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def _add_data_commands(commands: Any, common: _Parser) -> None:
    """ingest, export, simulate and evaluate: data in, data out, data made up, data learned from."""
    acting = _Parser(add_help=False, parents=[common])
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
        description="Chronological split per person: the first 8/14 of the span train, the next 2/14 validate, "
        f"the last 4/14 test. Exit {Exit.NOTHING} when no person has enough data.",
    )
    evaluate_command.add_argument(
        "files", nargs="+", type=_input_file, metavar="BUNDLE", help="one person per file (.json, .gz)"
    )
    evaluate_command.add_argument("--tz", default="UTC", help="time zone of the time-of-day feature (default: UTC)")
    evaluate_command.set_defaults(handler=_evaluate)


def _add_pattern_commands(commands: Any, common: _Parser) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--database-url",
        metavar="URL",
        help="PostgreSQL URL to work on instead of the embedded database (default: $DATABASE_URL)",
    )
    parser = _Parser(
        prog="glucokit",
        description="Supabase schema kit and workers for personal glucose forecasts (informational only).",
        epilog="exit status:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_MEANINGS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--debug", action="store_true", help="show a failure's traceback too (so does GLUCOKIT_DEBUG=1)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
        "advisors": (f"run Supabase's database linter; exit {Exit.FAILED} on any lint at WARN or above", _db_advisors),
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

    policies_parser = commands.add_parser("policies", help="the access matrix in policies/access.toml")
    policies_commands = policies_parser.add_subparsers(dest="policies_command", required=True, metavar="ACTION")
    check = policies_commands.add_parser(
        "check",
        help=f"measure every cell and run the catalog guards (exit {Exit.FAILED} on any problem)",
        parents=[common],
    )
    check.set_defaults(handler=_policies_check)
    report = policies_commands.add_parser(
        "report", help="the matrix with the measured outcome of every cell, as markdown", parents=[common]
    )
    report.add_argument("--write", action="store_true", help=f"write it to {policies.REPORT_FILE.name} in docs/")
    report.set_defaults(handler=_policies_report)
    pgtap_command = policies_commands.add_parser("pgtap", help="write the matrix as pgTAP tests for pg_prove")
    pgtap_command.add_argument("--check", action="store_true", help="only check that the file is up to date")
    pgtap_command.set_defaults(handler=_policies_pgtap)

    _add_data_commands(commands, common)

    models = commands.add_parser("models", help="a person's registered forecasting models (as a worker in scope)")
    models_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    person = _Parser(add_help=False, parents=[common])
    person.add_argument("--person", type=UUID, required=True, metavar="ID")
    list_command = models_commands.add_parser(
        "list", help=f"every version with its stage and test RMSE (exit {Exit.NOTHING}: none)", parents=[person]
    )
    list_command.set_defaults(handler=_models_list)
    rollback_command = models_commands.add_parser(
        "rollback",
        help="archive the active version and reactivate the newest earlier archived one",
        parents=[person],
    )
    rollback_command.add_argument("--reason", required=True, help="kept with both versions' stage")
    rollback_command.set_defaults(handler=_models_rollback)

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

    _add_pattern_commands(commands, common)

    _add_experiment_commands(commands, common)

    _add_privacy_commands(commands, common)

    demo_command = commands.add_parser(
        "demo", help="migrate, load the demo data set and show what each demo user sees", parents=[common]
    )
    demo_command.set_defaults(handler=_demo)
    return parser


def _count(text: str) -> int:
    """A number of rows to show: 1 to 1000."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= number <= 1000:
        raise argparse.ArgumentTypeError(f"{number} is not between 1 and 1000")
    return number


def _variant_spec(text: str) -> experiments.Variant:
    """An experiment variant from NAME=FAMILY[,FAMILY...][:WEIGHT]."""
    name, equals, rest = text.partition("=")
    families, colon, weight = rest.partition(":")
    if not equals or not families or (colon and not weight.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=FAMILY[,FAMILY...][:WEIGHT] (e.g. b=network,ridge:1)")
    try:
        return experiments.Variant(name, tuple(f.strip() for f in families.split(",")), int(weight) if colon else 1)
    except ValueError as bad:
        raise argparse.ArgumentTypeError(str(bad)) from None


def _experiments_create(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    try:
        rule = experiments.Rule(
            args.horizon, args.alpha, args.mixture_sd, args.min_points, args.min_persons, args.max_persons
        )
        with connection.connect(target.url) as conn:
            made = experiments.create(conn, args.key, args.description, args.variant, rule)
    except ValueError as bad:
        raise BadArgument(str(bad)) from None
    print(f"experiment {made.key} created (draft); start it with: glucokit experiments start {made.key}")
    return Exit.OK


def _experiments_transition(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        done = experiments.transition(conn, args.key, args.experiments_command)
    print(f"experiment {done.key} is {done.status}")
    return Exit.OK


def _print_experiment(conn: Connection, experiment: experiments.Experiment) -> None:
    rule = experiment.rule
    started = f", started {experiment.started_at:%Y-%m-%d %H:%M}" if experiment.started_at else ""
    print(f"{experiment.key}  {experiment.status}{started}  {experiment.description}")
    print(
        f"  rule: mixture SPRT on per-person MAE at {rule.horizon_minutes} min, alpha {rule.alpha}, "
        f"mixture sd {rule.mixture_sd} mg/dL, >= {rule.min_points_per_person} points per person, "
        f">= {rule.min_persons_per_variant} persons per variant"
        + (f", futility at {rule.max_persons_per_variant}" if rule.max_persons_per_variant else "")
    )
    counts = {row.variant: row for row in experiments.counts(conn, experiment)}
    analysis = experiments.analyse(conn, experiment)
    measured = {metrics.variant: metrics for metrics in analysis.metrics}
    for variant in experiment.variants:
        count, metrics = counts.get(variant.name), measured[variant.name]
        print(
            f"  {variant.name:<12} weight {variant.weight:<4} {','.join(variant.families):<24}"
            f" assigned {count.assigned if count else 0}, exposed {count.exposed if count else 0},"
            f" contaminated {count.contaminated if count else 0}; {metrics.persons} persons, {metrics.points} points:"
            f" MAE {metrics.mae:.2f}, RMSE {metrics.rmse:.2f} mg/dL, coverage {metrics.coverage:.1%}"
        )
    for person, why in analysis.excluded.items():
        print(f"  left out {person}: {why}")
    if analysis.verdict is not None:
        print(f"  rule: {analysis.verdict.decision}: {analysis.verdict.reason}")


def _experiments_status(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        found = [experiments.get(conn, args.key)] if args.key else experiments.all_experiments(conn)
        if args.json:
            print(json.dumps([experiments.analyse(conn, e).as_json() for e in found], indent=2))
        for experiment in found if not args.json else ():
            _print_experiment(conn, experiment)
    if not found:
        print("no experiments")
        return Exit.NOTHING
    return Exit.OK


def _experiments_decide(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        experiment = experiments.get(conn, args.key)
        analysis = experiments.analyse(conn, experiment)
        assert analysis.verdict is not None
        if analysis.verdict.decision == "continue":
            print(f"experiment {experiment.key}: continue: {analysis.verdict.reason}")
            return Exit.NOTHING
        experiments.record_decision(conn, experiment, analysis)
    print(f"experiment {experiment.key} decided: {analysis.verdict.decision}: {analysis.verdict.reason}")
    return Exit.OK


def _add_experiment_commands(commands: Any, common: _Parser) -> None:
    """create, start, stop, status and decide A/B experiments over model families (as the database owner)."""
    parser = commands.add_parser("experiments", help="A/B experiments over model families across persons")
    actions = parser.add_subparsers(dest="experiments_command", required=True, metavar="ACTION")
    keyed = _Parser(add_help=False, parents=[common])
    keyed.add_argument("key", help="the experiment's key")
    create = actions.add_parser("create", help="define a draft experiment with two variants", parents=[keyed])
    create.add_argument("--description", required=True, help="what the experiment compares, and why")
    create.add_argument(
        "--variant", type=_variant_spec, action="append", required=True, metavar="NAME=FAMILY[,FAMILY][:WEIGHT]",
        help=f"a variant: its name, model families (of {', '.join(FAMILIES)}) and weight (default 1); twice",
    )  # fmt: skip
    defaults = experiments.Rule()
    for flag, kind, default, help_text in (
        ("--horizon", int, defaults.horizon_minutes, "forecast horizon compared, minutes"),
        ("--alpha", float, defaults.alpha, "type-I error rate of the decision rule"),
        ("--mixture-sd", float, defaults.mixture_sd, "mixture standard deviation of the MAE difference, mg/dL"),
        ("--min-points", int, defaults.min_points_per_person, "forecast points with an outcome a person needs"),
        ("--min-persons", int, defaults.min_persons_per_variant, "persons per variant before the rule may stop"),
        ("--max-persons", int, None, "persons per variant after which the rule stops for futility"),
    ):
        create.add_argument(flag, type=kind, default=default, help=f"{help_text} (default: {default})")
    create.set_defaults(handler=_experiments_create)
    for action, help_text in (
        ("start", "start a draft experiment: persons are assigned at their next retrain"),
        ("stop", "stop a running experiment without a decision"),
    ):
        actions.add_parser(action, help=help_text, parents=[keyed]).set_defaults(handler=_experiments_transition)
    status = actions.add_parser(
        "status", help=f"variants, assignments, per-variant metrics and the rule's verdict (exit {Exit.NOTHING}: none)",
        parents=[common],
    )  # fmt: skip
    status.add_argument("key", nargs="?", help="one experiment (default: all)")
    status.add_argument("--json", action="store_true", help="the analyses as JSON")
    status.set_defaults(handler=_experiments_status)
    decide = actions.add_parser(
        "decide",
        help=f"apply the decision rule; record the decision when it stops (exit {Exit.NOTHING}: continue)",
        parents=[keyed],
    )
    decide.set_defaults(handler=_experiments_decide)


def _privacy_owner(args: argparse.Namespace, conn: Connection) -> UUID:
    return _person_owner(conn, args.person, args.user)


def _print_consents(person: UUID, records: list[privacy.Consent]) -> None:
    for record in records:
        state = (
            f"given {record.granted_at:%Y-%m-%d %H:%M}"
            if record.in_force
            else f"withdrawn {record.withdrawn_at:%Y-%m-%d %H:%M}"
            + (", models removed" if record.delete_models else "")
        )
        print(f"person {person}: {record.purpose:<15} {state}")


def _privacy_consent(args: argparse.Namespace) -> int:
    with connection.connect(database.target(args.database_url).url) as conn:
        user = _privacy_owner(args, conn)
        if args.grant:
            records = privacy.grant(conn, user, args.person, args.grant)
        elif args.withdraw:
            records = privacy.withdraw(conn, user, args.person, args.withdraw, delete_models=args.delete_models)
        else:
            records = privacy.consents(conn, user, args.person)
    if not records:
        print(f"person {args.person} has given no consent")
        return Exit.NOTHING
    _print_consents(args.person, records)
    return Exit.OK


def _privacy_audit(args: argparse.Namespace) -> int:
    with connection.connect(database.target(args.database_url).url) as conn:
        entries = privacy.audit_log(conn, _privacy_owner(args, conn), args.person, limit=args.limit)
    for entry in entries:
        print(
            f"{entry.occurred_at:%Y-%m-%d %H:%M:%S}  {entry.purpose:<15} {entry.worker} ({entry.application}):"
            f" {entry.reason}"
        )
    return Exit.OK if entries else Exit.NOTHING


def _privacy_export(args: argparse.Namespace) -> int:
    with connection.connect(database.target(args.database_url).url) as conn:
        user = _privacy_owner(args, conn)
        done = privacy.export_everything(conn, model_store.from_environment(), user, args.person, args.out)
    rows = sum(done.tables.values())
    print(
        f"person {args.person}: {done.entries} FHIR entries in {args.out / 'bundle.json'};"
        f" {rows} rows of {len(done.tables)} tables and {done.models} model metadata files"
        f" in {args.out / 'records.json'}"
    )
    return Exit.OK


def _privacy_erase(args: argparse.Namespace) -> int:
    with connection.connect(database.target(args.database_url).url) as conn:
        user = _privacy_owner(args, conn)
        if not args.yes:
            raise GlucokitError(f"erasing person {args.person} removes everything about them for good: add --yes")
        privacy.delete_person(conn, user, args.person)
    print(f"person {args.person}: every row erased; their files go when the privacy job runs (glucokit privacy run)")
    return Exit.OK


def _privacy_run(args: argparse.Namespace) -> int:
    with connection.connect(database.target(args.database_url).url) as conn:
        done = privacy.run(conn, model_store.from_environment())
    for person, files in done.erased.items():
        print(f"{person}: erased ({len(files)} files)")
    for person, models in done.models_removed.items():
        print(f"{person}: {models} model versions removed")
    for person, failure in done.failed.items():
        print(f"{person}: failed: {failure}", file=sys.stderr)
    print(
        f"{len(done.erased)} erased, {len(done.models_removed)} model removals, {len(done.failed)} failed,"
        f" {done.stopped}"
    )
    return Exit.FAILED if done.failed else Exit.OK


def _add_privacy_commands(commands: Any, common: _Parser) -> None:
    """privacy consent, audit, export, erase (the owner) and run (the privacy job)."""
    parser = commands.add_parser("privacy", help="consent, audit log, export and erasure of a person (GDPR)")
    actions = parser.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    owner = _Parser(add_help=False, parents=[common])
    owner.add_argument("--person", type=UUID, required=True, metavar="ID")
    owner.add_argument(
        "--user", type=UUID, metavar="ID", help="act as this signed-in user (default: the person's owner)"
    )
    purposes = [str(purpose) for purpose in CONSENT_PURPOSES]
    consent_command = actions.add_parser(
        "consent",
        help=f"show, give or withdraw the person's consent per purpose (exit {Exit.NOTHING}: none given)",
        parents=[owner],
    )
    change = consent_command.add_mutually_exclusive_group()
    change.add_argument("--grant", nargs="+", choices=purposes, metavar="PURPOSE", help=f"one of {', '.join(purposes)}")
    change.add_argument("--withdraw", nargs="+", choices=purposes, metavar="PURPOSE")
    consent_command.add_argument(
        "--delete-models", action="store_true", help="with --withdraw training: remove the person's models too"
    )
    consent_command.set_defaults(handler=_privacy_consent)
    audit = actions.add_parser(
        "audit",
        help=f"which worker touched the person when and why, newest first (exit {Exit.NOTHING}: nothing)",
        parents=[owner],
    )
    audit.add_argument("--limit", type=int, default=100, metavar="N")
    audit.set_defaults(handler=_privacy_audit)
    export_everything = actions.add_parser(
        "export",
        help="everything about the person: a FHIR bundle and every record with model metadata",
        parents=[owner],
    )
    export_everything.add_argument("--out", type=Path, required=True, metavar="DIR")
    export_everything.set_defaults(handler=_privacy_export)
    erase = actions.add_parser(
        "erase", help="erase the person: every row now, their files with the privacy job", parents=[owner]
    )
    erase.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    erase.set_defaults(handler=_privacy_erase)
    actions.add_parser(
        "run", help="the privacy job: remove erased persons' files and withdrawn models (as a worker)", parents=[common]
    ).set_defaults(handler=_privacy_run)


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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error the parser has told in one line
        return int(done.code or 0)
    try:
        code: int = args.handler(args)
    except Exception as failure:
        if args.debug or os.environ.get("GLUCOKIT_DEBUG") == "1":
            raise
        status, message = _failure(failure)
        print(f"glucokit: error: {' '.join(message.split())}", file=sys.stderr)
        return status
    return code


if __name__ == "__main__":
    sys.exit(main())
