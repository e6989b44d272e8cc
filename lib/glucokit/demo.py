"""The demo: a small, reproducible data set and a summary of who sees what.

Two demo users: Alice owns two persons (herself and her son), Bob owns one.
Each person gets one of the simulated bundles in data/simulated/ (14 days of
CGM readings, meals and insulin from simglucose), ingested as its owner through
the same path as `glucokit ingest`. A worker, scoped to
each person in turn, then records a training run and registers a persistence
baseline, flagged as a fallback, and writes one forecast curve (5-60 min)
with an empirical 80 % band and source anchors.

Loading is idempotent: fixed ids, and re-running the demo replaces the
demo persons' data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID, uuid5

import psycopg
from psycopg.types.json import Jsonb

from glucokit import __version__, sessions
from glucokit.disclaimer import DISCLAIMER, DISCLAIMER_VERSION
from glucokit.errors import GlucokitError
from glucokit.ingest import Ingest
from glucokit.project import SIMULATED_DIR
from glucokit.queries import query
from glucokit.sessions import Connection

_NAMESPACE = UUID("6f1c4f8e-2b7a-4f7e-9a51-2f0c6f9d1e11")
HORIZONS_MIN = tuple(range(5, 65, 5))
BAND_COVERAGE = 0.8
BASELINE_VERSION = "1.0.0"


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


def load(conn: Connection) -> None:
    """Load (or reload) the demo data set: each person's simulated bundle, ingested as its owner."""
    with conn.transaction():
        for user in DEMO_USERS:
            conn.execute(query("demo_upsert_user"), {"id": user.id, "email": user.email})
            for person in user.persons:
                conn.execute(query("demo_reset_person"), {"id": person.id})
                conn.execute(
                    query("demo_insert_person"),
                    {"id": person.id, "owner_id": user.id, "display_name": person.display_name},
                )
    for user in DEMO_USERS:
        for person in user.persons:
            report = Ingest([conn], user_id=user.id, person_id=person.id).path(SIMULATED_DIR / person.bundle)
            if report.rejected:
                raise GlucokitError(f"the demo bundle {person.bundle} has rejected entries: {report.rejections[0]}")
            _register_baseline(conn, person.id)


def _register_baseline(conn: Connection, person_id: UUID) -> None:
    """As the worker in this person's scope: a persistence fallback model and one forecast curve."""
    with sessions.as_worker(conn, person_id):
        readings = conn.execute(query("demo_person_readings"), {"person_id": person_id}).fetchall()
        values = [float(str(value)) for _id, _at, value in readings]
        data_from, data_to = readings[0][1], readings[-1][1]
        run = conn.execute(
            query("demo_insert_training_run"), {"person_id": person_id, "reason": "demo data loaded"}
        ).fetchone()
        assert run is not None
        metrics = {f"persistence_rmse_{h}": round(_persistence_rmse(values, h // 5), 2) for h in (30, 60)}
        model = conn.execute(
            query("demo_insert_model"),
            {
                "person_id": person_id,
                "training_run_id": run[0],
                "version": BASELINE_VERSION,
                "data_from": data_from,
                "data_to": data_to,
                "metrics": Jsonb(metrics),
            },
        ).fetchone()
        assert model is not None
        latest_id, latest_at, _ = readings[-1]
        value = values[-1]
        for horizon in HORIZONS_MIN:
            lower, upper = _band(values, horizon // 5, BAND_COVERAGE)
            prediction = conn.execute(
                query("demo_insert_prediction"),
                {
                    "person_id": person_id,
                    "model_id": model[0],
                    "generated_at": latest_at,
                    "horizon": horizon,
                    "value": value,
                    "lower": max(0.0, value + lower),
                    "upper": value + upper,
                    "coverage": BAND_COVERAGE,
                    "disclaimer_version": DISCLAIMER_VERSION,
                    "version": BASELINE_VERSION,
                    "training_run_id": run[0],
                    "data_from": data_from,
                    "data_to": data_to,
                    "code_version": __version__,
                },
            ).fetchone()
            assert prediction is not None
            conn.execute(
                query("demo_insert_prediction_source"),
                {
                    "prediction_id": prediction[0],
                    "person_id": person_id,
                    "observation_id": latest_id,
                    "effective_at": latest_at,
                },
            )


def _differences(values: list[float], steps: int) -> Iterator[float]:
    return (later - earlier for earlier, later in zip(values, values[steps:], strict=False))


def _persistence_rmse(values: list[float], steps: int) -> float:
    squared = [d * d for d in _differences(values, steps)]
    return math.sqrt(sum(squared) / len(squared))


def _band(values: list[float], steps: int, coverage: float) -> tuple[float, float]:
    """Empirical quantiles of the persistence error at this horizon (the band around the last value)."""
    errors = sorted(_differences(values, steps))
    tail = (1 - coverage) / 2
    return errors[int(tail * (len(errors) - 1))], errors[math.ceil((1 - tail) * (len(errors) - 1))]


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
