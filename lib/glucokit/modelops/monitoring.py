"""Forecast monitoring: outcomes, live error and coverage, input drift, and the performance retrain.

Runs in a worker transaction scoped to one person for forecasting (checking
forecasts is part of giving them). In order:

1. **Outcomes.** Each forecast point whose target time has passed is matched
   to the nearest valid CGM reading within ±``match_seconds`` (2.5 min by
   default) and its error recorded (``public.forecast_outcome``). Points whose
   reading has not arrived stay unmatched: a late reading is matched when it
   comes (within ``outcome_lookback``), a missing one never is. Neither is an
   error. Each outcome also moves its model's band for that horizon
   (``band_state.learn``): each side wider after a reading beyond it,
   narrower otherwise, so that the bands keep their nominal coverage when
   glucose drifts.
2. **Check** (at most every ``check_interval`` per model): over the outcomes of
   the last ``live_window`` at the judged horizon, the live RMSE against the
   RMSE the model measured on its test split, and the band's live coverage
   against its nominal level; and the input drift of the last
   ``drift_window`` of readings against the training window, as a population
   stability index. Recorded in ``public.model_health_check``.
3. **Trigger.** Live RMSE above ``max_rmse_ratio`` times the test RMSE, or coverage
   more than ``max_coverage_shortfall`` below nominal, with at least
   ``min_outcomes`` outcomes, marks the model degraded and queues a
   performance retrain (once per model version; the retrain still has to beat
   the model on the same holdout to replace it).

The thresholds live in ``private.monitoring_config`` (one row; change it with
an UPDATE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, Purpose, as_worker
from glucokit.fhir.validation import cgm_filter
from glucokit.modelops import band_state, registry
from glucokit.modelops.band_state import Outcome
from glucokit.modelops.registry import ModelVersion

# Glucose bin edges for the drift index, mg/dL: the consensus thresholds of
# time in ranges (54, 70, 180, 250; Battelino et al., Diabetes Care 2019;42:1593)
# with the target range split at 100 and 140, so that a shift inside it shows.
DRIFT_EDGES: Final = (54.0, 70.0, 100.0, 140.0, 180.0, 250.0)
# Floor for an empty bin's share, so that the index stays finite.
PSI_FLOOR: Final = 1e-4


@dataclass(frozen=True)
class Settings:
    match_seconds: int
    outcome_lookback: timedelta
    live_window: timedelta
    min_outcomes: int
    judged_horizon_minutes: int
    max_rmse_ratio: float
    max_coverage_shortfall: float
    drift_window: timedelta
    drift_psi_limit: float
    check_interval: timedelta


@dataclass(frozen=True)
class HealthCheck:
    """One check of a model (a row of public.model_health_check)."""

    model_version: str
    outcomes: int
    live_rmse: float | None
    test_rmse: float | None
    live_coverage: float | None
    nominal_coverage: float | None
    drift_psi: float | None
    drift_readings: int
    degraded: bool
    reason: str
    retrain_request_id: UUID | None


@dataclass(frozen=True)
class MonitorReport:
    person_id: UUID
    outcomes: int  # outcomes recorded by this run
    check: HealthCheck | None  # None: no active model, or checked recently


def psi(expected: list[int], actual: list[int]) -> float:
    """Population stability index of ``actual`` against ``expected`` counts per bin:
    sum over bins of (a - e) * ln(a / e) on the shares (Siddiqi, Credit Risk Scorecards, 2006;
    below 0.1 is usually read as stable, above 0.25 as a major shift)."""
    total_e, total_a = sum(expected), sum(actual)
    if total_e == 0 or total_a == 0:
        raise ValueError("the drift index needs readings in both windows")
    index = 0.0
    for e_count, a_count in zip(expected, actual, strict=True):
        e = max(e_count / total_e, PSI_FLOOR)
        a = max(a_count / total_a, PSI_FLOOR)
        index += (a - e) * math.log(a / e)
    return index


def settings(conn: Connection) -> tuple[Settings, datetime]:
    """The monitoring thresholds and the transaction's clock (one round trip)."""
    row = conn.execute(query("monitoring_settings")).fetchone()
    assert row is not None
    clock, match, lookback, live, minimum, horizon, ratio, shortfall, drift, limit, interval = row
    return Settings(
        int(str(match)), _interval(lookback), _interval(live), int(str(minimum)), int(str(horizon)),
        float(str(ratio)), float(str(shortfall)), _interval(drift), float(str(limit)), _interval(interval),
    ), _moment(clock)  # fmt: skip


def _interval(value: object) -> timedelta:
    assert isinstance(value, timedelta)
    return value


def record_outcomes(conn: Connection, person_id: UUID, config: Settings, now: datetime) -> list[Outcome]:
    """In the person's scope: matches due forecasts to their readings; returns the outcomes recorded, oldest first."""
    parameters = {
        "person_id": person_id, "now": now, "lookback": config.outcome_lookback,
        "match_seconds": config.match_seconds, **cgm_filter(),
    }  # fmt: skip
    rows = conn.execute(query("record_outcomes"), parameters).fetchall()
    return [
        Outcome(_uuid(model_id), int(str(minutes)), _moment(target_at), bool(inside), bool(above), float(str(coverage)))
        for model_id, minutes, target_at, inside, above, coverage in rows
    ]


def _uuid(value: object) -> UUID:
    assert isinstance(value, UUID)
    return value


def _moment(value: object) -> datetime:
    assert isinstance(value, datetime)
    return value


def drift(
    conn: Connection, person_id: UUID, model: ModelVersion, config: Settings, now: datetime
) -> tuple[float | None, int]:
    """The PSI of the last ``drift_window`` of readings against the model's training window, and how many
    recent readings it rests on (None without readings in either window)."""
    parameters = {
        "person_id": person_id, "edges": list(DRIFT_EDGES), "train_from": model.data_from,
        "train_to": model.data_to, "recent_from": now - config.drift_window, "now": now, **cgm_filter(),
    }  # fmt: skip
    bins = len(DRIFT_EDGES) + 1
    expected, actual = [0] * bins, [0] * bins
    for bin_index, e_count, a_count in conn.execute(query("drift_counts"), parameters):
        expected[int(str(bin_index))] += int(str(e_count))
        actual[int(str(bin_index))] += int(str(a_count))
    if sum(expected) == 0 or sum(actual) == 0:
        return None, sum(actual)
    return psi(expected, actual), sum(actual)


@dataclass(frozen=True)
class Live:
    """The outcomes of a model's last ``live_window`` at the judged horizon."""

    outcomes: int
    rmse: float | None
    coverage: float | None
    nominal: float | None


def verdict(live: Live, test_rmse: float | None, drift_psi: float | None, config: Settings) -> tuple[bool, str]:
    """Whether the model is degraded, and why (or why not)."""
    drifted = (
        f"; readings drifted from the training window (PSI {drift_psi:.2f} > {config.drift_psi_limit:.2f})"
        if drift_psi is not None and drift_psi > config.drift_psi_limit
        else ""
    )
    horizon = config.judged_horizon_minutes
    if live.outcomes < config.min_outcomes or live.rmse is None:
        return False, f"{live.outcomes} outcomes at {horizon} min, {config.min_outcomes} needed{drifted}"
    problems = []
    if test_rmse is not None and live.rmse > config.max_rmse_ratio * test_rmse:
        problems.append(
            f"live RMSE {live.rmse:.1f} mg/dL is above {config.max_rmse_ratio:g} x the test RMSE {test_rmse:.1f}"
        )
    shortfall = config.max_coverage_shortfall
    if live.coverage is not None and live.nominal is not None and live.coverage < live.nominal - shortfall:
        problems.append(f"band coverage {live.coverage:.0%} is more than {shortfall:.0%} below {live.nominal:.0%}")
    if problems:
        return True, "; ".join(problems) + drifted
    return False, f"within limits over {live.outcomes} outcomes{drifted}"


def check(conn: Connection, person_id: UUID, model: ModelVersion, config: Settings, now: datetime) -> HealthCheck:
    """In the person's scope: one check of ``model``, recorded, queueing a performance retrain when degraded."""
    since = now - config.live_window
    minutes = config.judged_horizon_minutes
    row = conn.execute(
        query("live_metrics"),
        {"person_id": person_id, "model_id": model.id, "minutes": minutes, "since": since, "now": now},
    ).fetchone()
    assert row is not None
    count, rmse, coverage, nominal = (None if value is None else float(str(value)) for value in row)
    live = Live(int(count or 0), rmse, coverage, nominal)
    measured = model.metrics.get(f"rmse_{minutes}")
    test_rmse = float(measured) if isinstance(measured, int | float) else None
    drift_psi, drift_readings = drift(conn, person_id, model, config, now)
    degraded, reason = verdict(live, test_rmse, drift_psi, config)
    request: UUID | None = None
    if degraded:
        queued = conn.execute(query("enqueue_performance_retrain"), {"model_id": model.id, "reason": reason}).fetchone()
        request = queued[0] if queued and isinstance(queued[0], UUID) else None
    conn.execute(
        query("insert_health_check"),
        {
            "person_id": person_id, "model_id": model.id, "now": now, "window_from": since, "minutes": minutes,
            "outcomes": live.outcomes, "live_rmse": rmse, "test_rmse": test_rmse, "live_coverage": coverage,
            "nominal_coverage": nominal, "psi": drift_psi, "drift_readings": drift_readings, "degraded": degraded,
            "reason": reason, "retrain_request_id": request,
        },
    )  # fmt: skip
    return HealthCheck(
        model.version, live.outcomes, rmse, test_rmse, coverage, nominal, drift_psi, drift_readings, degraded, reason,
        request,
    )  # fmt: skip


def monitor(conn: Connection, person_id: UUID, *, now: datetime | None = None, force: bool = False) -> MonitorReport:
    """Records the person's due outcomes and, unless checked within ``check_interval`` (or ``force``),
    checks their active model."""
    with as_worker(conn, person_id, Purpose.FORECASTING, "forecast monitoring: outcomes and model health"):
        config, clock = settings(conn)
        return monitor_in_scope(conn, person_id, registry.active(conn, person_id), config, now or clock, force=force)


def monitor_in_scope(
    conn: Connection,
    person_id: UUID,
    model: ModelVersion | None,
    config: Settings,
    now: datetime,
    *,
    force: bool = False,
) -> MonitorReport:
    """``monitor`` inside a worker transaction already scoped to the person for forecasting, with their active
    ``model`` (None: none), at ``now``."""
    found = record_outcomes(conn, person_id, config, now)
    band_state.learn(conn, found)
    recorded = len(found)
    if model is None:
        return MonitorReport(person_id, recorded, None)
    last = conn.execute(query("last_health_check"), {"person_id": person_id, "model_id": model.id}).fetchone()
    if not force and last and isinstance(last[0], datetime) and last[0] > now - config.check_interval:
        return MonitorReport(person_id, recorded, None)
    return MonitorReport(person_id, recorded, check(conn, person_id, model, config, now))
