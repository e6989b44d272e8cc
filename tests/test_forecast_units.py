"""glucokit.forecast, piece by piece: the grid, windows and split, the baselines, ridge, metrics and bands.

Small hand-made series only; training a person end to end is test_forecast_pipeline.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from glucokit.errors import GlucokitError
from glucokit.forecast import InsufficientData, clarke_zones, conformal_quantile
from glucokit.forecast.bands import band, calibrate
from glucokit.forecast.candidates import AR2, Persistence, Ridge, rmse
from glucokit.forecast.features import FeatureSpec
from glucokit.forecast.metrics import evaluate
from glucokit.forecast.series import Reading, micros, prepare, resample, timeline
from glucokit.forecast.windows import (
    EVENT_LOOKBACK,
    EVENT_STEPS,
    GLUCOSE_LOOKBACK,
    HORIZONS,
    INPUT_STEPS,
    Inputs,
    history,
    inputs_at,
    sources_at,
    split,
    windows,
)

START = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)


def steady(count: int, value: float = 120.0, *, offset: timedelta = timedelta(0)) -> list[Reading]:
    return [(START + offset + i * STEP, value + i % 7) for i in range(count)]


def inputs_of(glucose: list[list[float]]) -> Inputs:
    rows = np.array([[math.nan] * (INPUT_STEPS - len(row)) + row for row in glucose])
    zeros = np.zeros((len(rows), EVENT_STEPS))
    return Inputs(glucose=rows, day_fraction=np.zeros(len(rows)), carbs=zeros, insulin=zeros)


# ---- series: grid, range, duplicates, gaps ---------------------------------


def test_readings_snap_to_their_own_phase_and_the_nearest_point() -> None:
    # A sensor reading at :02:30 past each 5 minutes, with up to 40 s of jitter.
    jitter = [0, 40, -40, 10, -10, 25]
    readings = [
        (START + timedelta(minutes=2.5) + i * STEP + timedelta(seconds=j), 100.0 + i) for i, j in enumerate(jitter)
    ]
    series = resample(readings)
    phase = series.start - START - timedelta(minutes=2.5)
    assert abs(phase.total_seconds() - sum(jitter) / len(jitter)) < 1
    assert series.glucose.tolist() == [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]
    assert series.report.duplicates == 0


def test_duplicates_keep_one_reading_per_point() -> None:
    readings: list[Reading] = [
        (START, 100.0),
        (START + STEP, 110.0),
        (START + STEP, 999.0),  # the same time again: the first given wins
        (START + 2 * STEP + timedelta(minutes=2), 130.0),  # two on one point: the nearer wins
        (START + 2 * STEP - timedelta(seconds=30), 120.0),
        (START + 3 * STEP, 140.0),
    ]
    series = resample(readings)
    assert series.glucose.tolist() == [100.0, 110.0, 120.0, 140.0]
    assert (series.report.duplicates, series.report.crowded) == (1, 1)
    assert series.report.dropped() == {"duplicate timestamp": 1, "a second reading on one 5-minute point": 1}


def test_out_of_range_and_non_numbers_are_dropped() -> None:
    readings: list[Reading] = [
        (START, 9.0),
        (START + STEP, Decimal(10)),
        (START + 2 * STEP, 1000.0),
        (START + 3 * STEP, 1001.0),
        (START + 4 * STEP, math.nan),
    ]
    series = resample(readings)
    assert series.glucose.tolist() == [10.0, 1000.0]
    assert series.start == START + STEP
    assert series.report.out_of_range == 3
    with pytest.raises(InsufficientData, match="physiological range"):
        resample([(START, 5.0)])


def test_short_gaps_are_filled_as_inputs_only_and_long_gaps_stay_missing() -> None:
    values = [100.0, 110.0, math.nan, math.nan, 140.0, 150.0, math.nan, math.nan, math.nan, 190.0]
    readings = [(START + i * STEP, value) for i, value in enumerate(values) if not math.isnan(value)]
    series = resample(readings)
    # 15 minutes between readings: filled; 20 minutes: left as a gap.
    assert series.glucose[:6].tolist() == [100.0, 110.0, 120.0, 130.0, 140.0, 150.0]
    assert np.isnan(series.glucose[6:9]).all()
    assert series.observed.tolist() == [not math.isnan(value) for value in values]
    assert np.isnan(series.targets[2:4]).all()  # filled points are never targets
    assert (series.report.filled, series.report.missing, series.report.gaps) == (2, 3, 1)


def test_events_are_summed_per_step_and_implausible_ones_dropped() -> None:
    series = resample(
        steady(10),
        carbs=[(START + STEP, 20.0), (START + STEP + timedelta(minutes=1), 15.0), (START, -1.0)],
        insulin=[(START + 3 * STEP, 1.5), (START + 3 * STEP, 0.5), (START + 4 * STEP, 500.0)],
    )
    assert series.carbs[:3].tolist() == [0.0, 35.0, 0.0]
    assert series.insulin[3] == 2.0
    assert series.insulin.sum() == 2.0
    assert series.report.events_dropped == 2


def test_time_of_day_is_local() -> None:
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    series = resample([(datetime(2026, 7, 1, 10, tzinfo=UTC), 100.0)], tz=ZoneInfo("Europe/Paris"))
    assert history(series, np.array([0], dtype=np.int64)).day_fraction[0] == pytest.approx(12 / 24)


def test_naive_times_are_refused() -> None:
    with pytest.raises(GlucokitError, match="no time zone"):
        resample([(datetime(2026, 3, 1), 100.0)])


def test_less_than_two_days_is_insufficient() -> None:
    with pytest.raises(InsufficientData, match=r"575 valid readings \(1.99 days.*at least 2 days \(576"):
        prepare(steady(575))
    assert len(prepare(steady(576))) == 576
    with pytest.raises(InsufficientData, match="no glucose readings"):
        prepare([])


# ---- windows and the chronological split -----------------------------------


def test_windows_are_gap_aware() -> None:
    values = [100.0 + i for i in range(60)]
    values[30] = math.nan  # a 10-minute gap: filled, so an input, never a target
    values[45:50] = [math.nan] * 5  # a 30-minute gap: neither
    series = resample([(START + i * STEP, v) for i, v in enumerate(values) if not math.isnan(v)])
    found = windows(series, 0, len(series))
    for end in found.end.tolist():
        assert 30 not in range(end + 1, end + HORIZONS + 1)
        assert not set(range(45, 50)) & set(range(end - INPUT_STEPS + 1, end + HORIZONS + 1))
    # A window starts from a reading, as a live forecast does: a filled latest point would be
    # interpolated from the reading after it, the future.
    assert 30 not in found.end
    assert 31 in found.end  # the filled point is an input of the windows after it
    assert np.isfinite(found.target).all()
    assert np.isfinite(found.inputs.glucose).all()
    np.testing.assert_array_equal(found.target[:, 0], found.inputs.last + 1)


def test_split_is_chronological_without_windows_across_boundaries() -> None:
    series = prepare(steady(14 * 288 + 1))
    parts = split(series)
    # 4,010 usable windows cut 8:2:4 by count, at windows 2,291 and 2,864 (about days 8 and 10); a split starts at
    # its first window's first input.
    assert parts.bounds == ((0, 2291), (2291, 2864), (2864, 14 * 288 + 1))
    for (start, stop), found in zip(parts.bounds, (parts.train, parts.validation, parts.test), strict=True):
        assert found.end.min() - INPUT_STEPS + 1 == start
        assert found.end.max() + HORIZONS == stop - 1
    # The 23 windows before each boundary whose targets reach past it are left out.
    assert parts.counts() == {"train": 2291 - 23, "validation": 2864 - 2291 - 23, "test": 4010 - 2864}
    assert parts.train.end.max() + HORIZONS < parts.validation.end.min() - INPUT_STEPS + 1


def test_event_history_looks_back_only() -> None:
    series = resample(steady(80), carbs=[(START + 5 * STEP, 30.0), (START + 70 * STEP, 99.0)])
    inputs = history(series, np.array([20, 52, 53], dtype=np.int64))
    assert inputs.carbs.shape == (3, EVENT_STEPS)
    assert inputs.carbs[0, EVENT_STEPS - 1 - 15] == 30.0  # 15 steps before the latest reading
    assert inputs.carbs[1, 0] == 30.0  # 4 hours back, the oldest step
    # The meal at step 70 is in every window's future; the one at 5 is too old for the last.
    assert inputs.carbs.sum(axis=1).tolist() == [30.0, 30.0, 0.0]


def test_an_origin_reads_its_look_back_and_nothing_after_it() -> None:
    origin = START + 60 * STEP
    tiny = timedelta(microseconds=1)
    carbs: list[Reading] = [
        (origin - EVENT_LOOKBACK, 10.0),  # half a step beyond the oldest step: not read
        (origin - EVENT_LOOKBACK + tiny, 20.0),  # the oldest step
        (origin - 15 * STEP + timedelta(minutes=3), 30.0),  # 14.4 steps back: the step 14 back
        (origin, 40.0),
        (origin + tiny, 50.0),  # after the origin: never read
    ]
    glucose = steady(80)
    records = timeline(glucose, carbs)
    inputs = inputs_at(records, np.array([micros(origin)]), UTC)
    read_carbs = {int(i): float(v) for i, v in enumerate(inputs.carbs[0]) if v}
    assert read_carbs == {0: 20.0, EVENT_STEPS - 1 - 14: 30.0, EVENT_STEPS - 1: 40.0}
    read = sources_at(records, micros(origin))
    assert read.carbs == [1, 2, 3]
    assert [glucose[i][0] for i in read.glucose] == [origin - k * STEP for k in range(INPUT_STEPS - 1, -1, -1)]
    assert inputs.glucose[0].tolist() == [float(glucose[60 - k][1]) for k in range(INPUT_STEPS - 1, -1, -1)]


def test_a_short_gap_at_the_start_of_the_hour_is_filled_from_the_reading_before_it() -> None:
    origin = START + 60 * STEP
    # Readings up to 13 steps back, but none 11 and 12 steps back: 15 minutes between two readings.
    glucose = [(origin - k * STEP, 100.0 + k) for k in range(14) if k not in (11, 12)]
    records = timeline(glucose)
    inputs = inputs_at(records, np.array([micros(origin)]), UTC)
    assert inputs.glucose[0, 0] == pytest.approx(111.0)
    assert sorted(glucose[i][0] for i in sources_at(records, micros(origin)).glucose) == sorted(
        moment for moment, _ in glucose
    )
    # One reading fewer and the gap is 20 minutes: the hour is not whole, and nothing older is read.
    short = timeline(glucose[:-1])
    assert not inputs_at(short, np.array([micros(origin)]), UTC).whole[0]
    assert GLUCOSE_LOOKBACK == 13.5 * STEP


def test_inputs_at_an_origin_are_the_same_from_any_longer_history() -> None:
    # A jittered sensor and events at odd times: the window at an origin must come out the same
    # from the whole record (training, evaluation) as from its look-back alone (serving).
    rng = np.random.default_rng(5)
    glucose = [(START + i * STEP + timedelta(seconds=float(rng.uniform(-70, 70))), 100.0 + 30 * math.sin(i / 9))
               for i in range(400)]  # fmt: skip
    carbs = [(START + timedelta(minutes=float(m)), 20.0) for m in rng.uniform(0, 2000, 15)]
    insulin = [(START + timedelta(minutes=float(m)), 1.5) for m in rng.uniform(0, 2000, 40)]
    everything = timeline(glucose, carbs, insulin)
    origins = everything.glucose_at[100::37]
    whole = inputs_at(everything, origins, UTC)
    for row, origin in enumerate(origins.tolist()):
        since = origin - max(GLUCOSE_LOOKBACK, EVENT_LOOKBACK) // timedelta(microseconds=1)

        def recent(readings: Sequence[Reading], since: int = since, origin: int = origin) -> list[Reading]:
            return [(moment, value) for moment, value in readings if since < micros(moment) <= origin]

        alone = inputs_at(timeline(recent(glucose), recent(carbs), recent(insulin)), np.array([origin]), UTC)
        for name in ("glucose", "day_fraction", "carbs", "insulin"):
            np.testing.assert_array_equal(getattr(alone, name)[0], getattr(whole, name)[row], err_msg=name)
    assert whole.carbs.any()
    assert whole.insulin.any()


# ---- the baselines and ridge ------------------------------------------------


def test_ar2_matches_nightscout_by_hand() -> None:
    predicted = AR2().predict(inputs_of([[120.0, 130.0], [30.0, 390.0]]))
    # y = ln(BG / 140): y1 = -0.723 ln(120/140) + 1.716 ln(130/140) = -0.015718 -> 137.817 mg/dL;
    # y2 = -0.723 (-0.074108) + 1.716 (-0.015718) = 0.026608 -> 143.775 mg/dL.
    assert predicted[0, 0] == pytest.approx(137.817, abs=1e-3)
    assert predicted[0, 1] == pytest.approx(143.775, abs=1e-3)
    assert predicted.shape == (2, HORIZONS)
    assert predicted[1].max() == 400.0  # Nightscout's clamp


def test_persistence_repeats_the_latest_reading() -> None:
    predicted = Persistence().predict(inputs_of([[100.0, 150.0]]))
    assert predicted.tolist() == [[150.0] * HORIZONS]


def test_ridge_recovers_a_linear_autoregressive_process() -> None:
    # y[t] - 150 = 1.6 (y[t-1] - 150) - 0.7 (y[t-2] - 150) + N(0, 2^2): the best 5-minute
    # forecast is linear in the last two readings, and ridge on the hour should find it.
    rng = np.random.default_rng(11)
    values = np.full(14 * 288, 150.0)
    for t in range(2, len(values)):
        values[t] = 150 + 1.6 * (values[t - 1] - 150) - 0.7 * (values[t - 2] - 150) + rng.normal(0, 2)
    series = resample([(START + i * STEP, float(v)) for i, v in enumerate(values)])
    parts = split(series)
    glucose = parts.test.inputs.glucose
    oracle = 150 + 1.6 * (glucose[:, -1] - 150) - 0.7 * (glucose[:, -2] - 150)
    # Without a penalty to speak of: the oracle's forecast, up to estimation noise.
    nearly_ols = Ridge("ridge", FeatureSpec(time_of_day=False), lambdas=(1e-6,))
    nearly_ols.fit(parts.train, parts.validation)
    assert np.sqrt(np.mean((nearly_ols.predict(parts.test.inputs)[:, 0] - oracle) ** 2)) < 0.15
    # With the penalty chosen on validation (over all horizons): as good as the oracle at 5 minutes.
    ridge = Ridge("ridge", FeatureSpec(time_of_day=False))
    ridge.fit(parts.train, parts.validation)
    assert rmse(ridge.predict(parts.test.inputs), parts.test.target)[0] == pytest.approx(2.0, abs=0.1)


# ---- metrics and bands ------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "prediction", "zone"),
    [
        (100, 100, "A"),
        (100, 119, "A"),
        (50, 65, "A"),  # both below 70
        (300, 250, "A"),
        (100, 125, "B"),
        (200, 130, "B"),
        (100, 215, "C"),  # over-treatment: 110 above the reference
        (150, 25, "C"),  # below 7/5 * 150 - 182 = 28
        (300, 150, "D"),  # a high missed
        (50, 150, "D"),  # a low missed
        (60, 75, "D"),  # above 6/5 * 60 = 72
        (250, 50, "E"),
        (50, 250, "E"),
    ],
)
def test_clarke_zones_of_known_points(reference: float, prediction: float, zone: str) -> None:
    found = clarke_zones(np.array([reference], dtype=np.float64), np.array([prediction], dtype=np.float64))
    assert "ABCDE"[int(found[0])] == zone


def test_conformal_quantile_of_a_known_residual_set() -> None:
    residuals = np.array([-3.0, 1.0, 7.0, -10.0, 2.0, 5.0, -4.0, 9.0, 6.0, 8.0])  # |r| = 1..10
    assert conformal_quantile(residuals, 0.8) == 9.0  # ceil(11 * 0.8) = 9th smallest
    assert conformal_quantile(residuals, 0.9) == 10.0
    assert conformal_quantile(residuals, 0.5) == 6.0
    assert conformal_quantile(residuals[:3], 0.8) == math.inf  # ceil(4 * 0.8) = 4 > 3


def test_bands_cover_nominally_on_a_stationary_process() -> None:
    rng = np.random.default_rng(3)
    scale = np.linspace(2, 20, HORIZONS)
    calibration, test = (rng.normal(0, scale, (count, HORIZONS)) for count in (2_000, 20_000))
    lower, upper = calibrate(200 + calibration, np.full_like(calibration, 200.0), 0.8)
    bands = band(200 + test, np.array(lower), np.array(upper))
    coverage = evaluate(200 + test, np.full_like(test, 200.0), bands=bands).coverage
    assert coverage is not None
    assert np.abs(np.array(coverage) - 0.8).max() < 0.02


def test_band_stays_within_what_a_sensor_reads() -> None:
    # 30 mg/dL below, 30 % of the (clamped) forecast above.
    low, high = band(np.array([20.0, 100.0, 390.0]), np.array([30.0, 30.0, 30.0]), np.array([30.0, 30.0, 30.0]))
    assert low.tolist() == [40.0, 70.0, 360.0]
    assert high.tolist() == [52.0, 130.0, 400.0]


def test_metrics_of_known_errors() -> None:
    target = np.array([[100.0] * HORIZONS, [200.0] * HORIZONS])
    prediction = target + np.array([[10.0] * HORIZONS, [-20.0] * HORIZONS])
    metrics = evaluate(prediction, target, persistence_rmse=np.full(HORIZONS, 2 * math.sqrt(250.0)))
    at_30 = metrics.at(30)
    assert at_30["rmse"] == pytest.approx(math.sqrt(250.0))
    assert at_30["mae"] == 15.0
    assert at_30["mard"] == pytest.approx(10.0)
    assert at_30["clarke"] == {"A": 1.0, "B": 0.0, "C": 0.0, "D": 0.0, "E": 0.0}
    assert at_30["gain"] == pytest.approx(0.5)
    assert "coverage" not in at_30
    assert metrics.as_dict()["rmse"] == list(metrics.rmse)
