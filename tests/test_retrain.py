"""Retraining one person end to end on the real database: read, train, store, register, champion/challenger."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fhir_samples import bundle, cgm
from glucokit.db.sessions import Connection, Purpose, as_user, as_worker
from glucokit.fhir.ingest import Ingest
from glucokit.forecast import TrainingSettings, forecast
from glucokit.modelops import registry
from glucokit.modelops.model_store import LocalModelStore, load_state
from glucokit.modelops.retrain import person_readings, retrain
from glucokit.project import SIMULATED_DIR
from owners import Owner, ingest


@pytest.fixture
def simulated(conn: Connection, owner: Owner) -> Owner:
    """A person with 14 simulated days (CGM, meals, insulin), ingested as their owner."""
    report = Ingest([conn], user_id=owner.user, person_id=owner.person).path(SIMULATED_DIR / "child-001.json.gz")
    assert report.rejected == 0
    return owner


def test_the_first_model_is_trained_stored_registered_and_active(
    conn: Connection, simulated: Owner, tmp_path: Path
) -> None:
    store = LocalModelStore(tmp_path)
    result = retrain(conn, store, simulated.person, "initial")
    assert (result.version, result.activated) == ("1.0.0", True)
    assert result.reason.startswith("first trained model: holdout RMSE ")
    assert result.test["rmse_30"] < 25
    with as_worker(conn, simulated.person, Purpose.TRAINING, "test"):
        (model,) = registry.versions(conn, simulated.person)
        state = load_state(conn, store, model)
        glucose, carbs, insulin = person_readings(conn, simulated.person)
    assert (model.stage, model.is_fallback, model.algorithm) == ("active", False, result.algorithm)
    points = forecast(state, glucose, glucose[-1][0], carbs, insulin)
    assert [point.minutes for point in points] == list(range(5, 65, 5))
    assert all(point.low <= point.value <= point.high for point in points)
    with as_user(conn, simulated.user):
        run = conn.execute("select status::text, metrics ->> 'version' from public.training_run").fetchone()
    assert run == ("succeeded", "1.0.0")


def test_a_retrain_that_is_not_better_is_rejected_with_its_reason(
    conn: Connection, simulated: Owner, tmp_path: Path
) -> None:
    store = LocalModelStore(tmp_path)
    retrain(conn, store, simulated.person, "initial")
    second = retrain(conn, store, simulated.person, "scheduled")
    assert (second.version, second.activated) == ("1.1.0", False)
    assert second.reason.startswith("not better: holdout RMSE ")
    assert second.reason.endswith("mg/dL of active 1.0.0")
    with as_worker(conn, simulated.person, Purpose.TRAINING, "test"):
        assert {model.version: model.stage for model in registry.versions(conn, simulated.person)} == {
            "1.0.0": "active",
            "1.1.0": "rejected",
        }


def test_too_little_data_gets_a_baseline_flagged_as_fallback(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    ingest(conn, owner, bundle(*(cgm(n, 100 + (n % 7)) for n in range(80))))
    result = retrain(conn, LocalModelStore(tmp_path), owner.person, "initial")
    assert result.activated
    assert result.algorithm in {"persistence", "ar2"}
    assert result.reason.startswith("baseline fallback (")
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        (model,) = registry.versions(conn, owner.person)
    assert (model.is_fallback, model.stage) == (True, "active")


def test_a_baseline_never_replaces_a_trained_model(conn: Connection, simulated: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    retrain(conn, store, simulated.person, "initial")
    starved = retrain(conn, store, simulated.person, "scheduled", settings=TrainingSettings(min_days=100))
    assert not starved.activated
    assert starved.reason.startswith("a baseline does not replace trained version 1.0.0")


def test_no_data_fails_the_run_and_registers_nothing(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    result = retrain(conn, LocalModelStore(tmp_path), owner.person, "initial")
    assert (result.version, result.activated) == (None, False)
    with as_user(conn, owner.user):
        run = conn.execute("select status::text, error from public.training_run").fetchone()
        models = conn.execute("select count(*) from public.ml_model").fetchone()
    assert run is not None
    assert run[0] == "failed"
    assert models == (0,)


def test_the_artifacts_hold_the_state_and_the_training_summary(
    conn: Connection, simulated: Owner, tmp_path: Path
) -> None:
    store = LocalModelStore(tmp_path)
    result = retrain(conn, store, simulated.person, "initial")
    folder = tmp_path / "models" / str(simulated.user) / str(simulated.person) / "glucose-forecast" / "v1.0.0"
    metadata = orjson.loads((folder / "metadata.json").read_bytes())
    assert metadata["version"] == "1.0.0"
    assert metadata["forecast_state"]["family"] == result.algorithm
    assert metadata["training"]["champion"]
    assert "champion:" in (folder / "training_log.txt").read_text()
