"""Forecast retention on the real database: whole days expire, and no outcome-based figure changes.

The forecasts here are made in March 2020, a month no other test writes forecasts in, so dropping its day
partitions (which hold every person's forecasts of that day) touches nothing of theirs.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson
import psycopg
import pytest

import forecast_rows
from glucokit.db.queries import query
from glucokit.db.sessions import Connection, Purpose, as_user, as_worker
from glucokit.fhir.export import export
from glucokit.fhir.forecasts import PREDICTION_IDENTIFIER
from glucokit.jobs import retention_job
from glucokit.modelops import band_state, monitoring
from owners import Owner

DAY = datetime(2020, 3, 2, tzinfo=UTC)
T0 = DAY + timedelta(hours=8)  # the first reading; one every 5 minutes for two hours
READINGS = 24
NOW = T0 + timedelta(hours=6)  # when the outcomes are recorded
EXPIRED = datetime(2020, 5, 1, tzinfo=UTC)  # 30 days + the look-back + the longest horizon after that day
KEPT = DAY + timedelta(days=30)  # still within the window


def _readings(conn: Connection, owner: Owner) -> list[tuple[UUID, datetime]]:
    rows = conn.execute(
        """insert into public.observation (person_id, code, value, unit, effective_at, source_system, source_id)
           select %s, '99504-3', 100 + 3 * n, 'mg/dL', %s + make_interval(mins => 5 * n), 'urn:test', 'r' || n
           from generate_series(0, %s - 1) as n
           returning id, effective_at""",
        (owner.person, T0, READINGS),
    ).fetchall()
    readings = []
    for id_, at in rows:
        assert isinstance(at, datetime)
        readings.append((UUID(str(id_)), at))
    return readings


def _model(conn: Connection, owner: Owner) -> UUID:
    model = uuid4()
    conn.execute(
        "insert into public.ml_model (id, person_id, version, algorithm, data_from, data_to, trained_at, stage,"
        " metrics) values (%s, %s, '1.0.0', 'ridge', %s, %s, %s, 'active', '{\"rmse_30\": 10}')",
        (model, owner.person, T0 - timedelta(days=1), T0, T0),
    )
    return model


@pytest.fixture
def forecasts(conn: Connection, owner: Owner) -> UUID:
    """The owner's model, with a forecast (5- to 30-minute points, anchored to the hour before) from every reading
    of the first hour, and their outcomes recorded; committed."""
    readings = _readings(conn, owner)
    model = _model(conn, owner)
    for k in range(12):
        origin = T0 + timedelta(minutes=5 * k)
        for horizon in range(5, 35, 5):
            value = 100 + 3 * (k + horizon / 5) + (k % 3 - 1) * 6
            forecast_rows.point(conn, model, origin, horizon, value, (value - 8, value + 8))
        conn.execute(
            """insert into public.prediction_source (forecast_id, person_id, owner_id, model_id, generated_at,
                 observation_id, observation_effective_at)
               select f.id, f.person_id, f.owner_id, f.model_id, f.generated_at, r.id, r.at
               from public.forecast f, unnest(%s::uuid[], %s::timestamptz[]) as r (id, at)
               where f.model_id = %s and f.generated_at = %s""",
            ([id_ for id_, at in readings if at <= origin], [at for _, at in readings if at <= origin], model, origin),
        )
    conn.commit()
    assert monitoring.monitor(conn, owner.person, now=NOW).outcomes > 0
    return model


def _figures(conn: Connection, owner: Owner, model: UUID) -> dict[str, Any]:
    """Every outcome-based figure: the daily rollup (less the count of points still held), the live metrics of
    each horizon, the band state, and the outcomes themselves."""
    with as_user(conn, owner.user):
        rollup = conn.execute(
            "select * from public.model_daily_accuracy where person_id = %s order by day, horizon_minutes",
            (owner.person,),
        )
        names = [column.name for column in rollup.description or [] if column.name != "forecasts"]
        rows = [
            {name: value for name, value in zip([c.name for c in rollup.description or []], row, strict=True)
             if name != "forecasts"}
            for row in rollup.fetchall()
        ]  # fmt: skip
        outcomes = conn.execute(
            "select * from public.forecast_outcome where person_id = %s order by prediction_id", (owner.person,)
        ).fetchall()
    assert names
    assert rows
    with as_worker(conn, owner.person, Purpose.FORECASTING, "test"):
        live = {
            minutes: conn.execute(
                query("live_metrics"),
                {"person_id": owner.person, "model_id": model, "minutes": minutes, "since": DAY, "now": NOW},
            ).fetchone()
            for minutes in range(5, 35, 5)
        }
        bands = band_state.read(conn, model)
    return {"rollup": rows, "outcomes": outcomes, "live": live, "bands": bands}


def _held(conn: Connection, owner: Owner) -> tuple[int, ...]:
    with as_user(conn, owner.user):
        row = conn.execute(
            "select (select count(*) from public.forecast), (select count(*) from public.prediction),"
            " (select count(*) from public.prediction_source), (select count(*) from public.forecast_outcome)"
        ).fetchone()
    assert row is not None
    return tuple(int(str(value)) for value in row)


def _latest_curve(conn: Connection, owner: Owner) -> list[tuple[object, ...]]:
    with as_user(conn, owner.user):
        rows = conn.execute("select * from public.latest_forecast(%s)", (owner.person,)).fetchall()
    with conn.transaction():
        pointer = conn.execute("select count(*) from private.latest_forecast where person_id = %s", (owner.person,))
        assert pointer.fetchone() == (len(rows) and 1,)
    return rows


def test_expiry_drops_whole_days_and_keeps_every_outcome_based_figure(
    conn: Connection, owner: Owner, forecasts: UUID
) -> None:
    with conn.transaction():
        conn.execute("select private.create_forecast_partitions(%s, %s)", (DAY.date(), DAY.date() + timedelta(1)))
    before = _figures(conn, owner, forecasts)
    forecasts_, points, anchors, outcomes = _held(conn, owner)
    assert (forecasts_, points) == (12, 72)
    assert len(_latest_curve(conn, owner)) == 6
    assert anchors > 0
    assert outcomes > 0

    # Within the window nothing goes.
    kept = retention_job.run(conn, now=KEPT)
    assert kept.partitions_dropped == []
    assert _held(conn, owner) == (12, 72, anchors, outcomes)

    done = retention_job.run(conn, now=EXPIRED)
    day = DAY.strftime("%Y%m%d")
    assert {f"forecast_d{day}", f"prediction_d{day}", f"prediction_source_d{day}"} <= set(done.partitions_dropped)
    assert done.keep == timedelta(days=30)
    assert _held(conn, owner) == (0, 0, 0, outcomes)
    assert _figures(conn, owner, forecasts) == before
    assert _latest_curve(conn, owner) == []  # the pointer to an expired forecast went with it

    # The run is audited, and the days ahead of it exist.
    ahead = EXPIRED.strftime("%Y%m%d")
    with conn.transaction():
        audited = conn.execute(
            "select partitions_dropped, forecast_keep from private.retention_run order by id desc limit 1"
        ).fetchone()
        created = conn.execute("select to_regclass(%s) is not null", (f"partitions.prediction_d{ahead}",)).fetchone()
    assert audited == (done.partitions_dropped, timedelta(days=30))
    assert created == (True,)


def test_expiry_reaches_forecasts_left_in_the_default_partition(
    conn: Connection, owner: Owner, forecasts: UUID
) -> None:
    # No day partition for March 2020 here: the rows sit in the default partitions and are deleted row by row.
    before = _figures(conn, owner, forecasts)
    outcomes = _held(conn, owner)[3]
    done = retention_job.run(conn, now=EXPIRED)
    assert done.default_rows_deleted >= 12 + 72
    assert _held(conn, owner) == (0, 0, 0, outcomes)
    assert _figures(conn, owner, forecasts) == before
    assert _latest_curve(conn, owner) == []


def test_the_export_keeps_observations_and_the_forecasts_within_the_window(
    conn: Connection, owner: Owner, forecasts: UUID
) -> None:
    def exported() -> tuple[int, int]:
        """(readings, forecast points) in the owner's FHIR export."""
        out = io.BytesIO()
        export(conn, out, user_id=owner.user, person_id=owner.person, forecasts=True)
        readings = points = 0
        for entry in orjson.loads(out.getvalue())["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] != "Observation":
                continue
            systems = {identifier.get("system") for identifier in resource.get("identifier", [])}
            if PREDICTION_IDENTIFIER in systems:
                points += 1
            else:
                readings += 1
        return readings, points

    assert exported() == (READINGS, 72)
    retention_job.run(conn, now=EXPIRED)
    assert exported() == (READINGS, 0)


def test_the_owner_reads_the_retention_policy(conn: Connection, owner: Owner) -> None:
    with as_user(conn, owner.user):
        row = conn.execute("select * from public.forecast_retention()").fetchone()
    assert row == (timedelta(days=30), timedelta(days=2), timedelta(hours=4))
    assert "30 days" in retention_job.policy(conn).summary()


def test_a_new_owner_of_a_person_takes_their_forecasts_and_outcomes_along(
    conn: Connection, owner: Owner, forecasts: UUID, make_owner: Callable[[], Owner]
) -> None:
    held = _held(conn, owner)
    heir = make_owner()
    with conn.transaction():  # a privileged path (the database owner); users cannot change a person's owner
        conn.execute("update public.person set owner_id = %s where id = %s", (heir.user, owner.person))
    try:
        assert _held(conn, heir) == held
        assert _held(conn, owner) == (0, 0, 0, 0)
        for table in ("forecast", "prediction", "prediction_source", "forecast_outcome"):
            with conn.transaction():
                stale = conn.execute(
                    f"select count(*) from public.{table} where person_id = %s and owner_id <> %s".encode(),
                    (owner.person, heir.user),
                ).fetchone()
            assert stale == (0,), table
    finally:
        with conn.transaction():
            conn.execute("update public.person set owner_id = %s where id = %s", (owner.user, owner.person))


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_the_partitions_are_out_of_the_api_roles_reach(conn: Connection, role: str) -> None:
    with conn.transaction(force_rollback=True):
        conn.execute(f"set local role {role}".encode())
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select count(*) from partitions.prediction_default")
