"""The forecast pass's shortcuts change no result: each pass reads only the records its new origins read, writes
points and anchors as arrays in one call, runs its statements in functions that keep generic plans, and forecasts
on one thread; what it writes is what the model gives from a read of every record (values as float4, as the columns
hold them)."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import orjson
import torch

from glucokit.db.sessions import Connection, Purpose, as_worker
from glucokit.fhir.ingest import Ingest
from glucokit.forecast import HORIZON_MINUTES, ForecastPoint, TrainingSettings
from glucokit.forecast.model import NetworkConfig, NetworkForecaster, one_thread
from glucokit.forecast.pipeline import ForecastState, forecast_from
from glucokit.forecast.series import micros, timeline
from glucokit.forecast.windows import LOOKBACK
from glucokit.jobs import forecast_job
from glucokit.modelops import forecasts, registry
from glucokit.modelops.forecasts import ForecastWrite
from glucokit.modelops.model_store import LocalModelStore, load_state
from glucokit.modelops.retrain import retrain
from glucokit.project import SIMULATED_DIR
from glucokit.units import CGM_CODES
from owners import Owner

NETWORK = TrainingSettings(families=("network",))
STEPS = 12  # the last hour, a reading and a pass at a time


def _entries() -> list[tuple[datetime, dict[str, Any]]]:
    with gzip.open(SIMULATED_DIR / "adult-001.json.gz") as raw:
        entries = orjson.loads(raw.read())["entry"]
    return sorted(
        ((datetime.fromisoformat(e["resource"]["effectiveDateTime"]), e) for e in entries), key=lambda p: p[0]
    )


def _moment(value: object) -> datetime:
    assert isinstance(value, datetime)
    return value


def _ingest(conn: Connection, owner: Owner, entries: list[dict[str, Any]]) -> None:
    document = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    Ingest([conn], user_id=owner.user, person_id=owner.person).document(orjson.dumps(document), source="test.json")


def test_pass_by_pass_writes_what_one_read_of_every_record_gives(
    conn: Connection, make_owner: Callable[[], Owner], tmp_path: Path
) -> None:
    owner = make_owner()
    entries = _entries()
    glucose_times = sorted({at for at, e in entries if e["resource"]["code"]["coding"][0]["code"] in CGM_CODES})
    held_back = glucose_times[-STEPS]  # the history ends just before the last hour's readings
    _ingest(conn, owner, [e for at, e in entries if at < held_back])
    store = LocalModelStore(tmp_path)
    assert retrain(conn, store, owner.person, "initial", settings=NETWORK).activated
    written: list[ForecastWrite] = []
    forecast_job.run(conn, store, on_write=written.append)  # from the history's last reading
    for step in range(STEPS):
        since, until = glucose_times[-STEPS + step - 1], glucose_times[-STEPS + step]
        _ingest(conn, owner, [e for at, e in entries if since < at <= until])
        forecast_job.run(conn, store, on_write=written.append)
    mine = [write for write in written if write.person_id == owner.person]
    assert [write.origins for write in mine] == [1] * (STEPS + 1)

    with as_worker(conn, owner.person, Purpose.FORECASTING, "test"):
        model = registry.active(conn, owner.person)
        assert model is not None
        stored = [
            (_moment(at), int(str(minutes)), np.float32(float(str(value))))
            for at, minutes, value in conn.execute(
                "select generated_at, horizon_minutes, value_mg_dl from public.prediction where model_id = %s"
                " order by generated_at, horizon_minutes",
                (model.id,),
            )
        ]
        anchors = sorted(
            (_moment(at), str(observation), str(role))
            for at, observation, role in conn.execute(
                "select generated_at, observation_id, role::text from public.prediction_source where model_id = %s",
                (model.id,),
            )
        )
        # Every record since the first origin's look-back, in one read, as the writer read them before.
        now = conn.execute("select now()").fetchone()
        assert now is not None
        records = forecasts._records(conn, owner.person, model.data_to - LOOKBACK, _moment(now[0]))
        state = load_state(conn, store, model)
    origins = sorted({row[0] for row in stored})
    assert len(origins) == STEPS + 1
    points: list[tuple[datetime, ForecastPoint]] = []
    sources: list[tuple[datetime, UUID, datetime, str]] = []
    for origin in origins:  # one at a time, as the passes forecast (a batch may round the last bit differently)
        curve, read = forecasts._curves(state, records, [origin], HORIZON_MINUTES, ForecastWrite(owner.person))
        points += curve
        sources += read
    # The column is float4: the stored value is the model's rounded to the nearest float4.
    assert stored == [(origin, point.minutes, np.float32(point.value)) for origin, point in points]
    assert anchors == sorted((origin, str(observation), role) for origin, observation, _, role in sources)

    # The statements a pass plans most run in functions that keep their generic plans for the server connection,
    # whether or not the client prepares (a transaction-mode pooler prepares nothing), as the calling worker.
    functions = conn.execute(
        "select p.proname, p.prosecdef, p.proconfig, has_function_privilege('authenticated', p.oid, 'execute')"
        " from pg_proc p where p.pronamespace = 'private'::regnamespace"
        " and p.proname in ('forecast_bounds', 'forecast_records', 'write_forecasts', 'record_outcomes')"
    ).fetchall()
    assert len(functions) == 4
    for _, definer, settings, users_may_call in functions:
        assert not definer  # security invoker: the worker's row-level security and policies decide
        assert isinstance(settings, list)
        assert "plan_cache_mode=force_generic_plan" in settings
        assert not users_may_call
    # The latest reading, which the API's chart reads too, runs as its caller, whoever that is.
    shared = conn.execute(
        "select p.prosecdef, p.proconfig from pg_proc p where p.oid = 'private.latest_reading(uuid, timestamptz,"
        " text[], text[])'::regprocedure"
    ).fetchone()
    assert shared == (False, ['search_path=""', "plan_cache_mode=force_generic_plan"])


def test_one_intra_op_thread_forecasts_what_the_default_threads_do() -> None:
    torch.manual_seed(7)
    network = NetworkForecaster("network", NetworkConfig())
    state = ForecastState(network.export(), (20.0,) * 12, (15.0,) * 12, 0.8, "UTC")
    start = datetime.fromisoformat("2026-10-01T08:00:00+00:00")
    glucose = [(start + timedelta(minutes=5 * k), 120.0 + 30.0 * np.sin(k / 9)) for k in range(200)]
    found = timeline(glucose)
    origins = np.array([micros(at) for at, _ in glucose[24:]], dtype=np.int64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(max(2, threads))
        default = forecast_from(state, found, origins)
        with one_thread():
            assert torch.get_num_threads() == 1
            single = forecast_from(state, found, origins)
        assert torch.get_num_threads() == max(2, threads)  # as it was
    finally:
        torch.set_num_threads(threads)
    assert single == default
    assert sum(curve is not None for curve in single) == len(origins)
