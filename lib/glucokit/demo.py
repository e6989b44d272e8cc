"""The demo: a small, reproducible data set and a summary of who sees what.

Two demo users: Alice owns two persons (herself and her son), Bob owns one.
Each person gets one of the simulated bundles in data/simulated/ (14 days of
CGM readings, meals and insulin from simglucose), ingested as its owner through
the same path as `glucokit ingest`. Ingest's new-data trigger queues each
person's first retrain; the retrain job drains the queue as the workers do
(train, store the artifacts, register, activate), and a worker scoped to each
person writes one forecast curve (5-60 min) from the active model, with its
80 % band and source anchors (the input hour).

Loading is idempotent: fixed ids, and re-running the demo replaces the
demo persons' data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Final
from uuid import UUID, uuid5

import psycopg

from glucokit import __version__, registry, retrain_job, sessions
from glucokit.disclaimer import DISCLAIMER, DISCLAIMER_VERSION
from glucokit.errors import GlucokitError
from glucokit.forecast import forecast
from glucokit.ingest import Ingest
from glucokit.model_store import LocalModelStore, person_folder
from glucokit.project import SIMULATED_DIR
from glucokit.queries import query
from glucokit.retrain import RetrainResult, load_state, person_readings
from glucokit.sessions import Connection
from glucokit.units import CGM_CODES

_NAMESPACE = UUID("6f1c4f8e-2b7a-4f7e-9a51-2f0c6f9d1e11")
INPUT_HOUR: Final = timedelta(hours=1)  # the readings a forecast starts from: its source anchors


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
    """Load (or reload) the demo data set, train every demo person's model and write one forecast each."""
    with conn.transaction():
        for user in DEMO_USERS:
            conn.execute(query("demo_upsert_user"), {"id": user.id, "email": user.email})
            for person in user.persons:
                conn.execute(query("demo_reset_person"), {"id": person.id})
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
    for user in DEMO_USERS:
        for person in user.persons:
            _write_forecast(conn, store, person.id)


def _write_forecast(conn: Connection, store: LocalModelStore, person_id: UUID) -> None:
    """As the worker in this person's scope: one forecast curve from the active model, anchored on its input hour."""
    with sessions.as_worker(conn, person_id):
        model = registry.active(conn, person_id)
        if model is None:
            raise GlucokitError(f"demo person {person_id} has no active model")
        state = load_state(conn, store, model)
        glucose, carbs, insulin = person_readings(conn, person_id)
        points = forecast(state, glucose, glucose[-1][0], carbs, insulin)
        anchors = conn.execute(
            query("demo_input_hour"),
            {"person_id": person_id, "codes": sorted(CGM_CODES), "since": points[0].generated_at - INPUT_HOUR},
        ).fetchall()
        for point in points:
            prediction = conn.execute(
                query("demo_insert_prediction"),
                {
                    "person_id": person_id,
                    "model_id": model.id,
                    "generated_at": point.generated_at,
                    "horizon": point.minutes,
                    "value": point.value,
                    "lower": point.low,
                    "upper": point.high,
                    "coverage": state.coverage,
                    "disclaimer_version": DISCLAIMER_VERSION,
                    "version": model.version,
                    "training_run_id": model.training_run_id,
                    "data_from": model.data_from,
                    "data_to": model.data_to,
                    "code_version": __version__,
                },
            ).fetchone()
            assert prediction is not None
            for observation_id, effective_at in anchors:
                conn.execute(
                    query("demo_insert_prediction_source"),
                    {
                        "prediction_id": prediction[0],
                        "person_id": person_id,
                        "observation_id": observation_id,
                        "effective_at": effective_at,
                    },
                )


def models_table(conn: Connection) -> str:
    """Per demo person: the active model, its test errors against the baselines, its band coverage and files."""
    header = (
        f"{'name':<8}{'model':<8}{'family':<14}{'RMSE 30 (pers., AR2)':<24}{'RMSE 60 (pers., AR2)':<24}"
        f"{'cover 30':<10}files"
    )
    lines = [header, "-" * len(header)]
    for user in DEMO_USERS:
        for person in user.persons:
            with sessions.as_worker(conn, person.id):
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
    lines.append(f"Every forecast carries disclaimer {DISCLAIMER_VERSION}: {DISCLAIMER['en']}")
    return "\n".join(lines)


def anon_access(conn: Connection) -> str:
    """What the anon key gets from the person table (nothing: no privilege)."""
    try:
        with sessions.as_anon(conn):
            conn.execute(b"select count(*) from public.person")
    except psycopg.errors.InsufficientPrivilege as exc:
        return f"nothing ({str(exc).splitlines()[0]})"
    return "rows of public.person (this is a bug)"
