"""The forecast job's steps fail apart: a failing check of earlier forecasts never costs a person their forecast."""

from __future__ import annotations

from pathlib import Path

import pytest

from glucokit.db.sessions import Connection
from glucokit.fhir.ingest import Ingest
from glucokit.jobs import forecast_job
from glucokit.modelops import monitoring
from glucokit.modelops.model_store import LocalModelStore
from glucokit.modelops.monitoring import MonitorReport
from glucokit.modelops.retrain import retrain
from glucokit.project import SIMULATED_DIR
from owners import Owner
from test_forecasts import RIDGE


def test_a_failing_check_still_writes_the_forecast_and_is_reported(
    conn: Connection, owner: Owner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Ingest([conn], user_id=owner.user, person_id=owner.person).path(SIMULATED_DIR / "adult-001.json.gz")
    store = LocalModelStore(tmp_path)
    assert retrain(conn, store, owner.person, "initial", settings=RIDGE).activated

    def broken(*args: object) -> MonitorReport:
        raise RuntimeError("the outcome query failed")

    monkeypatch.setattr(monitoring, "monitor_in_scope", broken)
    report = forecast_job.run(conn, store)
    assert [(w.person_id, w.points) for w in report.written if w.person_id == owner.person] == [(owner.person, 12)]
    assert report.monitor_failed[owner.person] == "RuntimeError('the outcome query failed')"
    assert owner.person not in report.failed
    assert owner.person not in forecast_job.due_persons(conn, None)
