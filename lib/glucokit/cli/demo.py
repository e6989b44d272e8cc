"""glucokit demo: a small, reproducible data set and a summary of who sees what.

Two demo users: Alice owns two persons (herself and her son), Bob owns one.
Each person gets one of the simulated bundles in data/simulated/ (14 days of
CGM readings, meals and insulin from simglucose), ingested as its owner through
the same path as `glucokit ingest`. Ingest's new-data trigger queues each
person's first retrain; the retrain job drains the queue as the workers do
(train, store the artifacts, register, activate) and writes each person's
forecast curve (5-60 min) from the active model, with its 80 % band and
source anchors (the input hour, and the meals and insulin a model reads).

Loading is idempotent: fixed ids, and re-running the demo replaces the
demo persons' data.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args
from uuid import UUID, uuid5

import psycopg

from glucokit.api import reads
from glucokit.api.chart import ChartFormat, render
from glucokit.cli.common import Exit, Parser
from glucokit.cli.db import print_migration
from glucokit.db import connection, sessions
from glucokit.db.queries import query
from glucokit.db.sessions import Connection, Purpose
from glucokit.disclaimer import disclaimer_text
from glucokit.errors import GlucokitError
from glucokit.fhir.ingest import Ingest
from glucokit.jobs import retrain_job
from glucokit.modelops import registry
from glucokit.modelops.model_store import LocalModelStore, person_folder
from glucokit.modelops.retrain import RetrainResult
from glucokit.project import DEMO_CHARTS_DIR, MODEL_STORE_DIR, SIMULATED_DIR
from glucokit.tooling import database, migrate

_NAMESPACE = UUID("6f1c4f8e-2b7a-4f7e-9a51-2f0c6f9d1e11")


@dataclass(frozen=True)
class DemoPerson:
    id: UUID
    display_name: str
    bundle: str  # the person's simulated data, in data/simulated/


@dataclass(frozen=True)
class DemoUser:
    id: UUID
    email: str
    persons: tuple[DemoPerson, ...]


def _person(email: str, name: str, bundle: str) -> DemoPerson:
    return DemoPerson(id=uuid5(_NAMESPACE, f"{email}/{name}"), display_name=name, bundle=bundle)


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser(
        id=uuid5(_NAMESPACE, "alice@example.org"),
        email="alice@example.org",
        persons=(
            _person("alice@example.org", "Alice", "adult-001.json.gz"),
            _person("alice@example.org", "Ben", "child-001.json.gz"),
        ),
    ),
    DemoUser(
        id=uuid5(_NAMESPACE, "bob@example.org"),
        email="bob@example.org",
        persons=(_person("bob@example.org", "Bob", "adolescent-001.json.gz"),),
    ),
)


def load(conn: Connection, store: LocalModelStore, progress: Callable[[str], None] = print) -> None:
    """Load (or reload) the demo data set, train every demo person's model and write their forecasts."""
    with conn.transaction():
        for user in DEMO_USERS:
            conn.execute(query("demo_upsert_user"), {"id": user.id, "email": user.email})
            for person in user.persons:
                conn.execute(query("demo_reset_person"), {"id": person.id})
                conn.execute(query("demo_forget_erasure"), {"id": person.id})
                conn.execute(
                    query("demo_insert_person"),
                    {"id": person.id, "owner_id": user.id, "display_name": person.display_name},
                )
                folder = person_folder(user.id, person.id)
                conn.execute(query("demo_reset_model_files"), {"folder": folder})
                store.sweep(conn, folder)
    for user in DEMO_USERS:
        for person in user.persons:
            report = Ingest([conn], user_id=user.id, person_id=person.id).path(SIMULATED_DIR / person.bundle)
            if report.rejected:
                raise GlucokitError(f"the demo bundle {person.bundle} has rejected entries: {report.rejections[0]}")
    # Ingest's new-data trigger queued each person's first retrain: the retrain job drains the queue.
    persons = sum(len(user.persons) for user in DEMO_USERS)
    trained: list[RetrainResult] = []

    def show(result: RetrainResult) -> None:
        trained.append(result)
        done = min(len(trained), persons)
        progress(
            f"training [{'#' * done}{'.' * (persons - done)}] {done}/{persons}: {result.version} {result.algorithm}"
        )

    job = retrain_job.run(conn, store, on_result=show)
    if job.failed:
        raise GlucokitError(f"demo training failed: {next(iter(job.failed.values()))}")
    if job.forecast_failed:
        raise GlucokitError(f"demo forecast failed: {next(iter(job.forecast_failed.values()))}")


def models_table(conn: Connection) -> str:
    """Per demo person: the active model, its test errors against the baselines, its band coverage and files."""
    header = (
        f"{'name':<8}{'model':<8}{'family':<14}{'RMSE 30 (pers., AR2)':<24}{'RMSE 60 (pers., AR2)':<24}"
        f"{'cover 30':<10}files"
    )
    lines = [header, "-" * len(header)]
    for user in DEMO_USERS:
        for person in user.persons:
            with sessions.as_worker(conn, person.id, Purpose.TRAINING, "demo: summarise the active model"):
                model = registry.active(conn, person.id)
            if model is None:
                lines.append(f"{person.display_name:<8}(no model)")
                continue
            m = model.metrics
            rmse_30 = f"{m['rmse_30']:.1f} ({m['persistence_rmse_30']:.1f}, {m['ar2_rmse_30']:.1f})"
            rmse_60 = f"{m['rmse_60']:.1f} ({m['persistence_rmse_60']:.1f}, {m['ar2_rmse_60']:.1f})"
            lines.append(
                f"{person.display_name:<8}{model.version:<8}{model.algorithm:<14}{rmse_30:<24}{rmse_60:<24}"
                f"{m['coverage_30']:<10.0%}models/{model.storage_path}"
            )
    lines.append("")
    lines.append("Test split: the last 4 of the 14 days. Errors in mg/dL. Bands are 80 % split-conformal.")
    return "\n".join(lines)


def latest_forecasts(conn: Connection) -> str:
    """Each demo person's latest forecast as their owner reads it, with the disclaimer it was written with."""
    lines = []
    for user in DEMO_USERS:
        for person in user.persons:
            with sessions.as_user(conn, user.id):
                curve = reads.latest_curve(conn, person.id)
            if not curve:
                lines.append(f"{person.display_name}: no forecast")
                continue
            points = ", ".join(
                f"+{p.horizon_minutes} min {p.value_mg_dl:.0f} ({p.lower_mg_dl:.0f}-{p.upper_mg_dl:.0f})"
                for p in curve
                if p.horizon_minutes % 15 == 0
            )
            lines.append(
                f"{person.display_name}: from the reading of {curve[0].generated_at:%Y-%m-%d %H:%M} UTC,"
                f" model {curve[0].model_version}, mg/dL with {curve[0].coverage:.0%} band: {points}"
            )
            lines.append(f"  {disclaimer_text(curve[0].disclaimer_version, 'en')}")
    return "\n".join(lines)


def write_charts(conn: Connection, folder: Path) -> list[Path]:
    """Each demo person's chart (SVG and PNG), drawn from what their owner reads."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for user in DEMO_USERS:
        for person in user.persons:
            with sessions.as_user(conn, user.id):
                data = reads.chart_data(conn, person.id, "en")
            if data is None:
                continue
            for chart_format in get_args(ChartFormat):
                path = folder / f"{person.display_name.lower()}.{chart_format}"
                path.write_bytes(render(data, chart_format))
                written.append(path)
    return written


def table_counts(conn: Connection) -> list[tuple[str, int]]:
    """Rows per table, seen by the connection's own role (an administrator sees all)."""
    return [(str(table), int(str(rows))) for table, rows in conn.execute(query("table_row_counts"))]


def visible_counts(conn: Connection, user_id: UUID) -> list[tuple[str, int]]:
    """Rows per table that ``user_id`` sees through the Data API roles and policies."""
    with sessions.as_user(conn, user_id):
        return table_counts(conn)


def summary(conn: Connection) -> str:
    """What is in each table, and what each demo user can see of it."""
    totals = table_counts(conn)
    columns = [("all rows", dict(totals))]
    for user in DEMO_USERS:
        columns.append((user.email.split("@")[0], dict(visible_counts(conn, user.id))))
    header = f"{'table':<22}" + "".join(f"{name:>12}" for name, _ in columns)
    lines = [header, "-" * len(header)]
    for table, _ in totals:
        lines.append(f"{table:<22}" + "".join(f"{counts[table]:>12}" for _, counts in columns))
    lines.append("")
    lines.append(models_table(conn))
    lines.append("")
    lines.append(f"anon sees: {anon_access(conn)}")
    lines.append("")
    lines.append("Latest forecasts (informational only):")
    lines.append(latest_forecasts(conn))
    return "\n".join(lines)


def anon_access(conn: Connection) -> str:
    """What the anon key gets from the person table (nothing: no privilege)."""
    try:
        with sessions.as_anon(conn):
            conn.execute(b"select count(*) from public.person")
    except psycopg.errors.InsufficientPrivilege as exc:
        return f"nothing ({str(exc).splitlines()[0]})"
    return "rows of public.person (this is a bug)"


def _demo(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    print(f"database: {target.display}")
    print_migration(migrate.migrate(target.url))
    with connection.connect(target.url, autocommit=True) as conn:
        load(conn, LocalModelStore(MODEL_STORE_DIR))
        print()
        print(summary(conn))
        charts = write_charts(conn, DEMO_CHARTS_DIR)
    print()
    print(f"charts: {', '.join(str(path) for path in charts)}")
    return Exit.OK


def add_commands(commands: Any, common: Parser) -> None:
    """demo."""
    demo_command = commands.add_parser(
        "demo", help="migrate, load the demo data set and show what each demo user sees", parents=[common]
    )
    demo_command.set_defaults(handler=_demo)
