"""What users get is what evaluation scores: the forecast job's stored points equal evaluation's, origin by origin.

A simulated person's first ten days train a model through the real retrain;
the next hours arrive in two batches, each followed by the real forecast job,
which writes its points and anchors through the database. Evaluation then
scores the same saved model on all the person's data the way ``train_person``
scores its test split: windows of the whole series, predictions clamped,
bands of the model's widths. Each origin both have must agree, to the
rounding of the stored ``real`` columns, values and band bounds alike, and
the anchors must be exactly the records evaluation's inputs were made of.

The readings carry up to a minute of jitter, as a real sensor's do, and both
families that read carbohydrate and insulin are tried: a live path that saw
fewer events than four hours, or laid its grid differently, would differ.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from glucokit.db.sessions import Connection, Purpose, as_user, as_worker
from glucokit.fhir.bundle import from_bundle
from glucokit.forecast import TrainingSettings
from glucokit.forecast.bands import band
from glucokit.forecast.pipeline import predict_windows, reads_events, restore
from glucokit.forecast.series import moment, prepare
from glucokit.forecast.windows import sources_at, windows
from glucokit.jobs import forecast_job
from glucokit.modelops import registry
from glucokit.modelops.model_store import LocalModelStore, load_state
from glucokit.modelops.retrain import retrain
from glucokit.project import SIMULATED_DIR
from glucokit.units import CARBOHYDRATE_CODE, CGM_CODES, INSULIN_CODE
from owners import Owner, ingest

FIXTURE = SIMULATED_DIR / "adult-001.json.gz"
FIRST = datetime(2026, 10, 1, tzinfo=UTC)  # the fixture's first reading
TRAINED_UNTIL = FIRST + timedelta(days=10)
BATCHES = (TRAINED_UNTIL + timedelta(hours=3), TRAINED_UNTIL + timedelta(hours=6))
# float4 keeps 24 bits: 1e-3 mg/dL is far above its rounding below 1000 mg/dL, far below any difference in input.
ROUNDING = 1e-3


def jittered() -> list[dict[str, Any]]:
    """The fixture's entries up to the last batch, each time moved by up to a minute (seeded)."""
    rng = np.random.default_rng(20261205)
    entries = []
    for entry in orjson.loads(gzip.decompress(FIXTURE.read_bytes()))["entry"]:
        resource = entry["resource"]
        moment = datetime.fromisoformat(resource["effectiveDateTime"])
        if moment < BATCHES[-1]:
            moved = moment + timedelta(seconds=int(rng.integers(-60, 61)))
            resource["effectiveDateTime"] = moved.isoformat().replace("+00:00", "Z")
            entries.append(entry)
    return entries


def document(entries: list[dict[str, Any]], since: datetime, until: datetime) -> dict[str, Any]:
    """A collection Bundle of the entries whose (jittered) time is in [since, until)."""

    def at(entry: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(entry["resource"]["effectiveDateTime"])

    return {"resourceType": "Bundle", "type": "collection", "entry": [e for e in entries if since <= at(e) < until]}


def stored(conn: Connection, owner: Owner) -> dict[datetime, list[tuple[float, float, float]]]:
    """The person's forecast points by origin, as their owner reads them: (value, low, high) per horizon."""
    with as_user(conn, owner.user):
        rows = conn.execute(
            "select generated_at, value_mg_dl, lower_mg_dl, upper_mg_dl from public.prediction"
            " order by generated_at, horizon_minutes"
        ).fetchall()
    curves: dict[datetime, list[tuple[float, float, float]]] = {}
    for generated_at, value, low, high in rows:
        assert isinstance(generated_at, datetime)
        curves.setdefault(generated_at, []).append((float(str(value)), float(str(low)), float(str(high))))
    return curves


def anchors(conn: Connection, owner: Owner) -> dict[datetime, set[tuple[str, datetime]]]:
    """Each origin's anchors, as (kind, time) of the observation."""
    kinds = {**dict.fromkeys(CGM_CODES, "glucose"), CARBOHYDRATE_CODE: "carbs", INSULIN_CODE: "insulin"}
    with as_user(conn, owner.user):
        rows = conn.execute(
            "select p.generated_at, o.code, o.effective_at from public.prediction_source s"
            " join public.prediction p on (p.forecast_id, p.generated_at) = (s.forecast_id, s.generated_at)"
            " join public.observation o on (o.id, o.effective_at) = (s.observation_id, s.observation_effective_at)"
            " where p.horizon_minutes = 5"
        ).fetchall()
    found: dict[datetime, set[tuple[str, datetime]]] = {}
    for generated_at, code, effective_at in rows:
        assert isinstance(generated_at, datetime)
        assert isinstance(effective_at, datetime)
        found.setdefault(generated_at, set()).add((kinds[str(code)], effective_at))
    return found


@pytest.mark.parametrize("family", ["ridge", "network"])
def test_the_forecast_job_serves_what_evaluation_scores(
    conn: Connection, owner: Owner, tmp_path: Path, family: str
) -> None:
    entries = jittered()
    store = LocalModelStore(tmp_path)
    ingest(conn, owner, document(entries, FIRST - timedelta(days=1), TRAINED_UNTIL))
    assert retrain(conn, store, owner.person, "initial", settings=TrainingSettings(families=(family,))).activated
    since = TRAINED_UNTIL
    for until in BATCHES:
        ingest(conn, owner, document(entries, since, until))
        report = forecast_job.run(conn, store)
        assert [w.points > 0 for w in report.written if w.person_id == owner.person] == [True]
        since = until
    with as_worker(conn, owner.person, Purpose.FORECASTING, "test"):
        model = registry.active(conn, owner.person)
        assert model is not None
        state = load_state(conn, store, model)
    assert state.model.family == family
    assert reads_events(state) == (True, True)  # the events' look-back is what this test is about

    # Evaluation: the saved model on every window of the person's data, scored as train_person scores.
    data = from_bundle(document(entries, FIRST - timedelta(days=1), BATCHES[-1]))
    series = prepare(data.glucose, data.carbs, data.insulin)
    every = windows(series, 0, len(series))
    value = predict_windows(restore(state.model), every)
    low, high = band(value, np.asarray(state.lower), np.asarray(state.upper))
    origins = series.records.glucose_at[series.reading[every.end]]
    at = [moment(int(origin)) for origin in origins]

    served = stored(conn, owner)
    read = anchors(conn, owner)
    compared = 0
    for row, origin in enumerate(at):
        if origin not in served:
            continue
        compared += 1
        expected = np.stack([value[row], low[row], high[row]], axis=1)  # (HORIZONS, 3)
        np.testing.assert_allclose(np.array(served[origin]), expected, rtol=0, atol=ROUNDING, err_msg=str(origin))
        sources = sources_at(series.records, int(origins[row]))
        used = {("glucose", data.glucose[i][0]) for i in sources.glucose}
        used |= {("carbs", data.carbs[i][0]) for i in sources.carbs}
        used |= {("insulin", data.insulin[i][0]) for i in sources.insulin}
        assert read[origin] == used, origin
    # Six hours of readings after training, the last hour of them without every target yet.
    assert compared >= 55
