"""Writing forecasts from the active model on the real database: points, bands, provenance, anchors, idempotency."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest
from fhir.resources.bundle import Bundle as R5Bundle
from fhir.resources.R4B.bundle import Bundle as R4BBundle

from fhir_samples import START, bundle, cgm
from glucokit import __version__
from glucokit.db.sessions import Connection, Purpose, as_user, as_worker
from glucokit.disclaimer import DISCLAIMER, DISCLAIMER_VERSION
from glucokit.errors import GlucokitError
from glucokit.fhir import export
from glucokit.fhir.ingest import Ingest
from glucokit.forecast import HORIZON_MINUTES, TrainingSettings
from glucokit.forecast.windows import check_horizons
from glucokit.jobs import forecast_job
from glucokit.jobs.runner import Shard
from glucokit.modelops import registry
from glucokit.modelops.forecasts import write_forecasts
from glucokit.modelops.model_store import LocalModelStore
from glucokit.modelops.retrain import retrain
from glucokit.project import PROJECT_DIR, SIMULATED_DIR
from owners import Owner, ingest

FIXTURE_END = datetime(2026, 10, 15, tzinfo=UTC)  # the simulated fixtures' last reading
FIRST_NEW = int((FIXTURE_END - START) / timedelta(minutes=5)) + 1  # cgm(n) for the first reading after it
RIDGE = TrainingSettings(families=("ridge",))


@pytest.fixture
def trained(conn: Connection, owner: Owner, tmp_path: Path) -> tuple[Owner, LocalModelStore]:
    """A person with 14 simulated days and an active ridge model trained on all of them."""
    Ingest([conn], user_id=owner.user, person_id=owner.person).path(SIMULATED_DIR / "adult-001.json.gz")
    store = LocalModelStore(tmp_path)
    assert retrain(conn, store, owner.person, "initial", settings=RIDGE).activated
    return owner, store


def predictions(conn: Connection, owner: Owner) -> list[dict[str, Any]]:
    """The person's forecast points as their owner reads them, oldest origin and shortest horizon first."""
    with as_user(conn, owner.user), conn.cursor() as cursor:
        cursor.execute(
            "select p.*, f.coverage, f.disclaimer_version, f.model_version, f.training_run_id, f.data_from,"
            " f.data_to, f.code_version, (select count(*) from public.prediction_source s"
            " where (s.forecast_id, s.generated_at) = (f.id, f.generated_at)) as anchors"
            " from public.prediction p"
            " join public.forecast f on (f.id, f.generated_at) = (p.forecast_id, p.generated_at)"
            " order by p.generated_at, p.horizon_minutes"
        )
        names = [column.name for column in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_after_a_retrain_the_curve_starts_at_the_latest_reading(
    conn: Connection, trained: tuple[Owner, LocalModelStore]
) -> None:
    owner, store = trained
    report = write_forecasts(conn, store, owner.person)
    assert (report.origins, report.points, report.existing, report.skipped) == (1, 12, 0, {})
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        model = registry.active(conn, owner.person)
    assert model is not None
    points = predictions(conn, owner)
    assert [point["horizon_minutes"] for point in points] == list(HORIZON_MINUTES)
    for point in points:
        assert point["generated_at"] == FIXTURE_END == model.data_to
        assert point["target_at"] == FIXTURE_END + timedelta(minutes=point["horizon_minutes"])
        assert point["lower_mg_dl"] <= point["value_mg_dl"] <= point["upper_mg_dl"]
        assert point["coverage"] == pytest.approx(0.8)
        assert (point["model_id"], point["model_version"], point["training_run_id"]) == (
            model.id, model.version, model.training_run_id,
        )  # fmt: skip
        assert (point["data_from"], point["data_to"]) == (model.data_from, model.data_to)
        assert (point["disclaimer_version"], point["code_version"]) == (DISCLAIMER_VERSION, __version__)
    widths = [point["upper_mg_dl"] - point["lower_mg_dl"] for point in points]
    assert widths[-1] > widths[0]  # further ahead, wider


def test_anchors_are_the_input_hour_and_the_events_the_model_reads(
    conn: Connection, trained: tuple[Owner, LocalModelStore]
) -> None:
    owner, store = trained
    write_forecasts(conn, store, owner.person)
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        model = registry.active(conn, owner.person)
        assert model is not None
        rows = conn.execute(
            "select s.role::text, o.code, o.effective_at from public.prediction_source s"
            " join public.observation o on (o.id, o.effective_at) = (s.observation_id, s.observation_effective_at)"
            " join public.prediction p on (p.forecast_id, p.generated_at) = (s.forecast_id, s.generated_at)"
            " where p.horizon_minutes = 30"
        ).fetchall()
    window = sorted(at for role, _, at in rows if role == "input_window" and isinstance(at, datetime))
    assert window == [FIXTURE_END - timedelta(minutes=5 * k) for k in range(11, -1, -1)]
    covariates = [(code, at) for role, code, at in rows if role == "covariate" and isinstance(at, datetime)]
    reads_events = any("carbohydrate" in feature or "insulin" in feature for feature in model.features)
    assert bool(covariates) == reads_events
    assert all(FIXTURE_END - timedelta(hours=4) < at <= FIXTURE_END for _, at in covariates)


def test_anchors_are_exactly_the_readings_the_inputs_were_made_of(
    conn: Connection, trained: tuple[Owner, LocalModelStore]
) -> None:
    owner, store = trained
    write_forecasts(conn, store, owner.person)
    # An hour of new readings but the second: 55 minutes before the last one, its point is filled
    # from the first reading and the third, so the first (an hour before the last) was read too.
    fresh = [k for k in range(13) if k != 1]
    ingest(conn, owner, bundle(*(cgm(FIRST_NEW + k, 150 + k) for k in fresh)))
    write_forecasts(conn, store, owner.person)
    last = FIXTURE_END + 13 * timedelta(minutes=5)
    with as_user(conn, owner.user):
        rows = conn.execute(
            "select s.observation_effective_at from public.prediction_source s"
            " join public.prediction p on (p.forecast_id, p.generated_at) = (s.forecast_id, s.generated_at)"
            " where p.generated_at = %s and p.horizon_minutes = 5 and s.role = 'input_window'",
            (last,),
        ).fetchall()
    read = sorted(at for (at,) in rows if isinstance(at, datetime))
    assert len(read) == len(rows)
    assert read == [FIXTURE_END + (k + 1) * timedelta(minutes=5) for k in fresh]


def test_new_readings_add_their_origins_and_nothing_is_written_twice(
    conn: Connection, trained: tuple[Owner, LocalModelStore]
) -> None:
    owner, store = trained
    write_forecasts(conn, store, owner.person)
    again = write_forecasts(conn, store, owner.person)
    assert (again.points, again.reason) == (0, "no new readings to forecast from")
    ingest(conn, owner, bundle(*(cgm(FIRST_NEW + k, 150 + 2 * k) for k in range(3))))
    report = write_forecasts(conn, store, owner.person)
    assert (report.origins, report.points) == (3, 36)
    points = predictions(conn, owner)
    assert len(points) == 48
    assert len({(p["model_id"], p["generated_at"], p["horizon_minutes"]) for p in points}) == 48
    assert max(p["generated_at"] for p in points) == FIXTURE_END + timedelta(minutes=15)
    assert all(p["anchors"] >= 12 for p in points)


class _CountingStore(LocalModelStore):
    """The local store, counting the files read back."""

    reads: list[str]

    def get(self, conn: Connection, name: str) -> bytes:
        self.reads.append(name.rsplit("/", 1)[-1])
        return super().get(conn, name)


def test_a_pass_with_nothing_new_reads_no_model_and_a_forecast_reads_no_log(
    conn: Connection, trained: tuple[Owner, LocalModelStore]
) -> None:
    owner, store = trained
    counting = _CountingStore(store.root)
    counting.reads = []
    write_forecasts(conn, counting, owner.person)
    assert sorted(counting.reads) == ["metadata.json", "model.safetensors"]  # the training log is not fetched
    counting.reads = []
    again = write_forecasts(conn, counting, owner.person)
    assert (again.reason, counting.reads) == ("no new readings to forecast from", [])


def test_horizons_are_configurable_and_checked(conn: Connection, trained: tuple[Owner, LocalModelStore]) -> None:
    owner, store = trained
    report = write_forecasts(conn, store, owner.person, horizons=(60, 30))
    assert report.points == 2
    assert [p["horizon_minutes"] for p in predictions(conn, owner)] == [30, 60]
    assert check_horizons([5, 5, 10]) == (5, 10)
    with pytest.raises(ValueError, match=r"forecast horizons must be some of 5, 10, .*, 60 minutes; got \[7\]"):
        check_horizons([7])
    with pytest.raises(ValueError, match=r"got \[\]"):
        check_horizons([])


def test_a_catch_up_goes_back_at_most_the_backfill_and_skips_gaps(
    conn: Connection, trained: tuple[Owner, LocalModelStore]
) -> None:
    owner, store = trained
    write_forecasts(conn, store, owner.person)
    # Two hours of new readings, then a 30-minute gap, then one more reading.
    fresh = [cgm(FIRST_NEW + k, 140) for k in range(24)] + [cgm(FIRST_NEW + 30, 140)]
    ingest(conn, owner, bundle(*fresh))
    report = write_forecasts(conn, store, owner.person, backfill=timedelta(minutes=60))
    # The latest reading is at 02:35, so origins start at 01:35: 01:35 .. 02:00 are forecast, 02:35 follows the gap.
    assert report.origins == 6
    assert report.skipped == {"the last hour of readings has a gap longer than 15 minutes": 1}


def test_no_active_model_writes_nothing(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    report = write_forecasts(conn, LocalModelStore(tmp_path), owner.person)
    assert (report.points, report.reason, report.model_version) == (0, "no active model", None)


def due(conn: Connection) -> list[UUID]:
    return forecast_job.due_persons(conn, None)


def test_the_forecast_job_writes_for_persons_with_new_readings(
    conn: Connection, make_owner: Callable[[], Owner], trained: tuple[Owner, LocalModelStore]
) -> None:
    owner, store = trained
    idle = make_owner()  # no model: never due
    assert owner.person in due(conn)
    assert idle.person not in due(conn)
    first = forecast_job.run(conn, store)
    assert [(w.person_id, w.points) for w in first.written if w.person_id == owner.person] == [(owner.person, 12)]
    assert owner.person not in due(conn)
    ingest(conn, owner, bundle(*(cgm(FIRST_NEW + k, 150) for k in range(2))))
    assert owner.person in due(conn)
    second = forecast_job.run(conn, store, horizons=(30,))
    assert [(w.origins, w.points) for w in second.written if w.person_id == owner.person] == [(2, 2)]
    assert (second.failed, second.stopped) == ({}, "every due person visited")
    # A reading after a gap cannot be forecast: the person stays due, visited once per pass.
    ingest(conn, owner, bundle(cgm(FIRST_NEW + 10, 150)))
    third = forecast_job.run(conn, store)
    mine = [w for w in third.written if w.person_id == owner.person]
    assert [(w.points, w.reason) for w in mine] == [(0, "no origin could be forecast")]
    assert owner.person in due(conn)
    elsewhere = forecast_job.run(conn, store, shard=Shard(1 - owner.person.int % 2, 2))
    assert owner.person not in {w.person_id for w in elsewhere.written}


def test_only_an_unscoped_worker_lists_persons_due(conn: Connection, owner: Owner) -> None:
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="listed unscoped"),
        as_worker(conn, owner.person, Purpose.TRAINING, "test"),
    ):
        conn.execute("select private.forecast_due_persons()")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(conn, owner.user):
        conn.execute("select private.forecast_due_persons()")


def test_the_cloud_run_forecast_job(
    database_url: str, conn: Connection, trained: tuple[Owner, LocalModelStore]
) -> None:
    owner, store = trained
    environment = os.environ | {"DATABASE_URL": database_url, "GLUCOKIT_MODEL_DIR": str(store.root)}
    job = [sys.executable, str(PROJECT_DIR / "workers" / "forecast_job.py")]
    result = subprocess.run(job, capture_output=True, text=True, env=environment, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert f"{owner.person}: 12 points from 1 readings" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1].endswith(" failed, every due person visited")
    bad = subprocess.run(
        job, capture_output=True, text=True, env=environment | {"GLUCOKIT_FORECAST_HORIZONS": "30,90"},
        timeout=300, check=False,
    )  # fmt: skip
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr == (
        "forecast_job: GLUCOKIT_FORECAST_HORIZONS='30,90': give minutes from 5, 10, 15, 20, 25, 30, 35, 40, 45, 50,"
        " 55, 60, separated by commas\n"
    )


def test_forecasts_export_as_fhir_derived_from_their_readings(
    conn: Connection, make_owner: Callable[[], Owner], trained: tuple[Owner, LocalModelStore]
) -> None:
    owner, store = trained
    write_forecasts(conn, store, owner.person)
    out = io.BytesIO()
    count = export.export(conn, out, user_id=owner.user, person_id=owner.person, forecasts=True)
    document = orjson.loads(out.getvalue())
    R4BBundle.model_validate(document)
    R5Bundle.model_validate(document)
    entries = document["entry"]
    assert len(entries) == count
    kinds: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        resource = entry["resource"]
        kind = "Provenance" if resource["resourceType"] == "Provenance" else resource["code"]["coding"][0]["code"]
        kinds.setdefault(kind, []).append(entry)
    forecasts, (provenance,) = kinds["glucose-forecast"], kinds["Provenance"]
    assert len(forecasts) == 12
    urls = {entry["fullUrl"] for entry in entries}
    for entry in forecasts:
        resource = entry["resource"]
        assert resource["status"] == "preliminary"
        assert {source["reference"] for source in resource["derivedFrom"]} <= urls  # every anchor is in the bundle
        lower, upper = (component["valueQuantity"]["value"] for component in resource["component"])
        assert lower <= resource["valueQuantity"]["value"] <= upper
        assert resource["note"] == [{"text": DISCLAIMER["en"]}]
    assert {target["reference"] for target in provenance["resource"]["target"]} == {e["fullUrl"] for e in forecasts}
    assert "model 1.0.0 (ridge)" in provenance["resource"]["agent"][0]["who"]["display"]
    # Ingested again, the readings are kept and the forecasts refused: a forecast is no reading.
    other = make_owner()
    report = Ingest([conn], user_id=other.user, person_id=other.person).document(out.getvalue(), source="export")
    assert (report.inserted, report.rejected) == (count - 13, 13)
    with pytest.raises(GlucokitError, match="forecasts are exported in a bundle only"):
        export.export(conn, io.BytesIO(), user_id=owner.user, person_id=owner.person, form="ndjson", forecasts=True)
