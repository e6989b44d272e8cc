"""Forecast monitoring on the real database: outcomes, rollups, drift and the performance retrain."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import numpy as np
import psycopg
import pytest

import forecast_rows
from fhir_samples import START, bundle, cgm
from glucokit.db.sessions import Connection, Purpose, as_user, as_worker
from glucokit.forecast import HORIZON_MINUTES, ForecastState, ModelState
from glucokit.forecast.bands import MAX_HALF_WIDTH, MAX_UPPER_PERCENT, Side, start, track
from glucokit.forecast.metrics import grmse
from glucokit.modelops import band_state, monitoring
from glucokit.privacy import rights
from owners import Owner, ingest

T0 = START  # cgm(n) is a reading at T0 + 5n minutes
NOW = T0 + timedelta(hours=30)


def active_model(conn: Connection, owner: Owner, *, rmse_30: float = 10.0, trained_until: datetime = T0) -> UUID:
    """An active model of the person, registered as the workers would (the database owner stands in)."""
    model = uuid4()
    conn.execute(
        "insert into public.ml_model (id, person_id, version, algorithm, data_from, data_to, trained_at, stage,"
        " metrics) values (%s, %s, '1.0.0', 'ridge', %s, %s, %s, 'active', %s)",
        (model, owner.person, trained_until - timedelta(days=1), trained_until, trained_until,
         f'{{"rmse_30": {rmse_30}}}'),
    )  # fmt: skip
    conn.commit()
    return model


def forecast_point(
    conn: Connection, owner: Owner, model: UUID, target_at: datetime, value: float, band: tuple[float, float]
) -> UUID:
    """One 30-minute forecast point aimed at ``target_at``."""
    written = forecast_rows.point(conn, model, target_at - timedelta(minutes=30), 30, value, band)
    conn.commit()
    return written


def outcomes(conn: Connection, owner: Owner) -> dict[UUID, tuple[Any, ...]]:
    with as_user(conn, owner.user):
        rows = conn.execute(
            "select prediction_id, observed_mg_dl, error_mg_dl, inside_band, observed_at from public.forecast_outcome"
        ).fetchall()
    return {UUID(str(row[0])): tuple(row[1:]) for row in rows}


def test_a_forecast_is_matched_to_the_nearest_reading_within_two_and_a_half_minutes(
    conn: Connection, owner: Owner
) -> None:
    # Readings every 5 minutes from T0 (cgm(n) is at T0 + 5n min), and one off the grid.
    ingest(conn, owner, bundle(cgm(0, 100), cgm(1, 110), cgm(2, 120), cgm(7, 150)))
    model = active_model(conn, owner, trained_until=T0 - timedelta(minutes=30))
    exact = forecast_point(conn, owner, model, T0 + timedelta(minutes=5), 105, (95, 115))
    between = forecast_point(conn, owner, model, T0 + timedelta(minutes=7), 130, (120, 140))  # 2 min from cgm(1)
    missing = forecast_point(conn, owner, model, T0 + timedelta(minutes=22, seconds=30), 140, (130, 150))
    late = forecast_point(conn, owner, model, T0 + timedelta(minutes=60), 170, (160, 180))

    report = monitoring.monitor(conn, owner.person, now=NOW)
    assert report.outcomes == 2
    found = outcomes(conn, owner)
    assert found[exact][:3] == (110, -5, True)
    assert found[between][:3] == (110, 20, False)
    assert found[between][3] == T0 + timedelta(minutes=5)
    # 2.5 minutes from two readings is not within: no outcome, and no error either.
    assert missing not in found
    assert late not in found

    # A late reading is matched when it arrives; nothing is recorded twice.
    ingest(conn, owner, bundle(cgm(12, 160)))
    assert monitoring.monitor(conn, owner.person, now=NOW).outcomes == 1
    assert outcomes(conn, owner)[late][:3] == (160, 10, True)
    assert monitoring.monitor(conn, owner.person, now=NOW).outcomes == 0


def test_the_daily_rollup_and_the_feedback_summary_are_the_owners_alone(
    conn: Connection, make_owner: Callable[[], Owner]
) -> None:
    owner, other = make_owner(), make_owner()
    ingest(conn, owner, bundle(*(cgm(n, 100 + n) for n in range(12))))
    model = active_model(conn, owner, trained_until=T0 - timedelta(minutes=30))
    # Forecasts off by 10, -20 and 0 mg/dL with bands of +-5: only the last holds its reading.
    targets = {
        n: forecast_point(conn, owner, model, T0 + timedelta(minutes=5 * n), 100 + n + d, (95 + n + d, 105 + n + d))
        for n, d in ((1, 10), (2, -20), (3, 0))
    }
    monitoring.monitor(conn, owner.person, now=NOW)
    with as_user(conn, owner.user):
        conn.execute(
            "insert into public.forecast_feedback (prediction_id, person_id, rating, comment) values"
            " (%s, %s, 'up', null), (%s, %s, 'down', 'Too low.')",
            (targets[1], owner.person, targets[2], owner.person),
        )
        rollup = conn.execute(
            "select model_version, day, horizon_minutes, forecasts, outcomes, mae_mg_dl, rmse_mg_dl, mard_percent,"
            " coverage, nominal_coverage from public.model_daily_accuracy where person_id = %s",
            (owner.person,),
        ).fetchall()
        summary = conn.execute(
            "select model_version, thumbs_up, thumbs_down, comments from public.model_feedback_summary"
        ).fetchall()
    (row,) = rollup
    errors = [10, -20, 0]
    observed = [101, 102, 103]
    assert row[:5] == ("1.0.0", T0.date(), 30, 3, 3)
    assert float(str(row[5])) == pytest.approx(10)
    assert float(str(row[6])) == pytest.approx(math.sqrt(500 / 3))
    assert float(str(row[7])) == pytest.approx(100 * sum(abs(e) / o for e, o in zip(errors, observed, strict=True)) / 3)
    assert float(str(row[8])) == pytest.approx(1 / 3)
    assert float(str(row[9])) == pytest.approx(0.8)
    assert summary == [("1.0.0", 1, 1, 1)]
    with as_user(conn, other.user):
        assert conn.execute("select count(*) from public.model_daily_accuracy").fetchone() == (0,)
        assert conn.execute("select count(*) from public.model_feedback_summary").fetchone() == (0,)
        assert conn.execute("select count(*) from public.forecast_outcome").fetchone() == (0,)
        assert conn.execute("select count(*) from public.model_health_check").fetchone() == (0,)


def performance_requests(conn: Connection, owner: Owner) -> list[str]:
    with as_user(conn, owner.user):
        return [
            str(r) for (r,) in conn.execute("select reason from public.retrain_request where trigger = 'performance'")
        ]


def degraded_history(conn: Connection, owner: Owner, *, error: float, points: int = 120) -> UUID:
    """``points`` readings 5 minutes apart and a 30-minute forecast for each, off by ``error`` mg/dL."""
    ingest(conn, owner, bundle(*(cgm(n, 120 + (n % 5)) for n in range(points))))
    model = active_model(conn, owner, rmse_30=10.0, trained_until=T0 - timedelta(minutes=30))
    for n in range(points):
        value = 120 + (n % 5) + error
        forecast_point(conn, owner, model, T0 + timedelta(minutes=5 * n), value, (value - 15, value + 15))
    return model


def test_a_degraded_model_queues_one_performance_retrain(conn: Connection, owner: Owner) -> None:
    degraded_history(conn, owner, error=25.0)
    now = T0 + timedelta(minutes=5 * 120)
    report = monitoring.monitor(conn, owner.person, now=now)
    check = report.check
    assert check is not None
    assert (check.outcomes, check.degraded) == (120, True)
    assert check.live_rmse == pytest.approx(25.0)
    assert "live RMSE 25.0 mg/dL is above 1.5 x the test RMSE 10.0" in check.reason
    assert "band coverage 0% is more than 15% below 80%" in check.reason
    assert check.retrain_request_id is not None
    assert performance_requests(conn, owner) == [check.reason]
    # Checked again (forced past the interval): still degraded, but one retrain per model version.
    again = monitoring.monitor(conn, owner.person, now=now, force=True).check
    assert again is not None
    assert again.degraded
    assert again.retrain_request_id is None
    assert len(performance_requests(conn, owner)) == 1
    # Within the check interval, a run only records outcomes.
    assert monitoring.monitor(conn, owner.person, now=now).check is None
    with as_user(conn, owner.user):
        checks = conn.execute("select degraded, retrain_request_id from public.model_health_check").fetchall()
    assert sorted(checks, key=str) == sorted([(True, check.retrain_request_id), (True, None)], key=str)


def test_a_healthy_model_or_too_few_outcomes_queue_nothing(conn: Connection, make_owner: Callable[[], Owner]) -> None:
    healthy, sparse = make_owner(), make_owner()
    degraded_history(conn, healthy, error=8.0)
    degraded_history(conn, sparse, error=40.0, points=30)
    now = T0 + timedelta(minutes=5 * 120)
    good = monitoring.monitor(conn, healthy.person, now=now).check
    assert good is not None
    assert (good.degraded, good.reason) == (False, "within limits over 120 outcomes")
    few = monitoring.monitor(conn, sparse.person, now=now).check
    assert few is not None
    assert (few.degraded, few.reason) == (False, "30 outcomes at 30 min, 96 needed")
    assert performance_requests(conn, healthy) == performance_requests(conn, sparse) == []


def test_drift_is_the_population_stability_index_against_the_training_window(conn: Connection, owner: Owner) -> None:
    # Training window: a day around 110 mg/dL; recent readings around 200 mg/dL.
    ingest(conn, owner, bundle(*(cgm(n, 105 + (n % 10)) for n in range(288))))
    ingest(conn, owner, bundle(*(cgm(n, 195 + (n % 10)) for n in range(288, 576))))
    active_model(conn, owner, trained_until=T0 + timedelta(minutes=5 * 287))
    check = monitoring.monitor(conn, owner.person, now=T0 + timedelta(minutes=5 * 576)).check
    assert check is not None
    assert check.drift_readings == 576  # the last 3 days (drift_window) hold both days
    assert check.drift_psi is not None
    assert check.drift_psi > 0.25
    assert "readings drifted from the training window" in check.reason


def test_the_stability_index() -> None:
    assert monitoring.psi([10, 20, 30], [1, 2, 3]) == 0
    # Shares (0.5, 0.5) against (0.9, 0.1): 0.4 ln(0.9/0.5) + (-0.4) ln(0.1/0.5).
    assert monitoring.psi([50, 50], [90, 10]) == pytest.approx(0.4 * math.log(1.8) - 0.4 * math.log(0.2))
    assert math.isfinite(monitoring.psi([10, 0], [0, 10]))
    with pytest.raises(ValueError, match="readings in both windows"):
        monitoring.psi([0, 0], [1, 1])


def test_monitoring_needs_consent_to_forecasting(conn: Connection, owner: Owner) -> None:
    rights.withdraw(conn, owner.user, owner.person, [Purpose.FORECASTING])
    with pytest.raises(Exception, match="has not consented to forecasting"):
        monitoring.monitor(conn, owner.person, now=NOW)


# ---- adaptive bands and clinical accuracy ------------------------------------


def served_state(lower: float, upper: float) -> ForecastState:
    """A trained state whose band reaches ``lower`` mg/dL below and ``upper`` % above at every horizon."""
    horizons = len(HORIZON_MINUTES)
    return ForecastState(ModelState("persistence", {}, {}), (lower,) * horizons, (upper,) * horizons, 0.8, "UTC")


def bands_of(conn: Connection, owner: Owner, model: UUID) -> dict[int, band_state.HorizonBand]:
    with as_worker(conn, owner.person, Purpose.FORECASTING, "test: band state"):
        return band_state.read(conn, model)


def test_a_model_serves_its_trained_band_first_and_each_outcome_moves_it(conn: Connection, owner: Owner) -> None:
    model = active_model(conn, owner, trained_until=T0 - timedelta(minutes=30))
    with as_worker(conn, owner.person, Purpose.FORECASTING, "test: serve"):
        served = band_state.serving(conn, model, served_state(15.0, 10.0))
    assert (served.lower, served.upper) == ((15.0,) * len(HORIZON_MINUTES), (10.0,) * len(HORIZON_MINUTES))
    # Readings of 120 mg/dL; 30-minute forecasts of 120 (inside their band of -15/+12), of 150 (the reading
    # is below the band) and of 100 (above it).
    ingest(conn, owner, bundle(*(cgm(n, 120) for n in range(10))))
    for n, value in enumerate([120, 150, 150, 120, 150, 120, 120, 100, 150, 100]):
        forecast_point(conn, owner, model, T0 + timedelta(minutes=5 * n), value, (value - 15, value * 1.1))
    assert monitoring.monitor(conn, owner.person, now=NOW).outcomes == 10
    # In order of target time, each side's misses.
    below = [False, True, True, False, True, False, False, False, True, False]
    above = [False, False, False, False, False, False, False, True, False, True]
    thirty = bands_of(conn, owner, model)[30]
    lower = track(start(15.0, MAX_HALF_WIDTH), 0.8, below, MAX_HALF_WIDTH)
    upper = track(start(10.0, MAX_UPPER_PERCENT), 0.8, above, MAX_UPPER_PERCENT)
    assert thirty.lower.width == pytest.approx(lower.width, abs=1e-4)  # stored as real
    assert thirty.upper.width == pytest.approx(upper.width, abs=1e-4)
    assert (thirty.outcomes, thirty.misses) == (10, 6)
    assert thirty.lower.width > 15  # four misses below in ten: wider
    assert thirty.upper.width > 10  # two above
    # The other horizons had no outcome and stay; the next forecasts are served with what was learned.
    assert bands_of(conn, owner, model)[60].lower.width == 15
    with as_worker(conn, owner.person, Purpose.FORECASTING, "test: serve again"):
        served = band_state.serving(conn, model, served_state(15.0, 10.0))
    assert served.lower[HORIZON_MINUTES.index(30)] == pytest.approx(thirty.lower.width)
    assert served.upper[HORIZON_MINUTES.index(30)] == pytest.approx(thirty.upper.width)
    # Outcomes are learned from once.
    assert monitoring.monitor(conn, owner.person, now=NOW).outcomes == 0
    assert bands_of(conn, owner, model)[30] == thirty


def test_outcomes_of_a_model_that_never_served_an_adaptive_band_teach_nothing(conn: Connection, owner: Owner) -> None:
    model = active_model(conn, owner, trained_until=T0 - timedelta(minutes=30))
    ingest(conn, owner, bundle(cgm(1, 120)))
    forecast_point(conn, owner, model, T0 + timedelta(minutes=5), 150, (140, 160))
    assert monitoring.monitor(conn, owner.person, now=NOW).outcomes == 1
    assert bands_of(conn, owner, model) == {}


def test_band_state_is_the_workers_alone_and_only_in_scope(conn: Connection, make_owner: Callable[[], Owner]) -> None:
    owner, other = make_owner(), make_owner()
    model = active_model(conn, owner, trained_until=T0 - timedelta(minutes=30))
    with as_worker(conn, owner.person, Purpose.FORECASTING, "test: serve"):
        band_state.serving(conn, model, served_state(15.0, 10.0))
    # Users see neither the table nor the functions.
    for statement in (
        "select * from private.band_state",
        f"select * from private.read_band_state('{model}')",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(conn, owner.user):
            conn.execute(statement)
    # A worker reaches it only in a person's scope, and only that person's models.
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_worker(conn, None):
        conn.execute("select * from private.band_state")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="in the person's scope"), as_worker(conn, None):
        band_state.read(conn, model)
    assert bands_of(conn, other, model) == {}
    with (
        pytest.raises(psycopg.errors.NoDataFound, match="not a model of the person in scope"),
        as_worker(conn, other.person, Purpose.FORECASTING, "test: another person's model"),
    ):
        band_state.save(conn, model, {30: band_state.HorizonBand(Side(1.0, 1.0), Side(1.0, 1.0), 0, 0)})
    assert bands_of(conn, owner, model)[30].lower.width == 15


def test_the_daily_rollup_has_grmse_and_the_detection_of_lows_and_highs(conn: Connection, owner: Owner) -> None:
    readings = [40, 100, 200, 65, 250, 60]
    forecasts = [60, 110, 170, 100, 190, 65]
    ingest(conn, owner, bundle(*(cgm(n + 1, value) for n, value in enumerate(readings))))
    model = active_model(conn, owner, trained_until=T0 - timedelta(minutes=30))
    for n, value in enumerate(forecasts):
        forecast_point(conn, owner, model, T0 + timedelta(minutes=5 * (n + 1)), value, (value - 5, value + 5))
    monitoring.monitor(conn, owner.person, now=NOW)
    with as_user(conn, owner.user):
        row = conn.execute(
            "select outcomes, grmse_mg_dl, lows, lows_forecast, lows_detected, highs, highs_forecast, highs_detected"
            " from public.model_daily_accuracy where person_id = %s",
            (owner.person,),
        ).fetchone()
    assert row is not None
    assert row[0] == 6
    # The same gRMSE as the metric evaluation reports.
    expected = float(grmse(np.array(readings, dtype=np.float64), np.array(forecasts, dtype=np.float64)))
    assert float(str(row[1])) == pytest.approx(expected)
    assert expected > math.sqrt(np.mean((np.array(forecasts) - np.array(readings)) ** 2))  # the penalties count
    # Lows: 40, 65, 60 read; 60 and 65 forecast low; 40->60 and 60->65 both. Highs: 200, 250 read; 190 forecast.
    assert row[2:] == (3, 2, 2, 2, 1, 1)
