"""The vectorised replay and metrics give what straightforward loops give: the adaptive-band replay and the gRMSE
penalty to the bit, the time lag exactly (its correlations to within 1e-12).

The references below are the plain forms: one ``update`` per window, horizon and side in time order, one
``np.corrcoef`` per horizon and shift, the quartic evaluated on every point.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from glucokit.forecast.bands import (
    MAX_HALF_WIDTH,
    MAX_UPPER_PERCENT,
    SENSOR_HIGH,
    SENSOR_LOW,
    AdaptiveRun,
    Side,
    Widths,
    adaptive_bands,
    adaptive_runs,
    clamp,
    start,
    update,
)
from glucokit.forecast.metrics import GRMSE_HIGH, GRMSE_LOW, _correlations, _smooth_step, grmse_penalty, time_lag
from glucokit.forecast.windows import HORIZON_MINUTES, HORIZONS

COVERAGE = 0.8
CASES = 300


def reference_replay(prediction: np.ndarray, target: np.ndarray, end: np.ndarray, initial: Widths) -> AdaptiveRun:
    """Window by window, horizon by horizon: learn each outcome that has landed by the origin, then serve."""
    value = clamp(prediction)
    low, high = np.empty_like(value), np.empty_like(value)
    lowers: list[Side] = []
    uppers: list[Side] = []
    for h, (below, above) in enumerate(zip(*initial, strict=True)):
        lower, upper = start(below, MAX_HALF_WIDTH), start(above, MAX_UPPER_PERCENT)
        known = 0
        for i in range(len(end)):
            while known < i and end[known] + h + 1 <= end[i]:
                lower = update(lower, COVERAGE, bool(target[known, h] < low[known, h]), MAX_HALF_WIDTH)
                upper = update(upper, COVERAGE, bool(target[known, h] > high[known, h]), MAX_UPPER_PERCENT)
                known += 1
            low[i, h] = max(SENSOR_LOW, value[i, h] - lower.width)
            high[i, h] = min(SENSOR_HIGH, value[i, h] + value[i, h] * upper.width / 100)
        for rest in range(known, len(end)):
            lower = update(lower, COVERAGE, bool(target[rest, h] < low[rest, h]), MAX_HALF_WIDTH)
            upper = update(upper, COVERAGE, bool(target[rest, h] > high[rest, h]), MAX_UPPER_PERCENT)
        lowers.append(lower)
        uppers.append(upper)
    return AdaptiveRun(low, high, tuple(lowers), tuple(uppers))


def random_replay(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, Widths]:
    """Predictions (some outside the sensor's range), targets, origins with gaps and repeats, starting widths (some
    0, -0.0 or infinite)."""
    count, horizons = int(rng.integers(0, 80)), int(rng.integers(1, HORIZONS + 1))
    prediction = rng.uniform(20, 420, (count, horizons))
    target = prediction + rng.normal(0, rng.uniform(1, 40), (count, horizons))
    end = np.sort(rng.integers(0, 2 * count + 1, count)) if rng.random() < 0.5 else np.arange(count)
    special = [0.0, -0.0, math.inf, MAX_HALF_WIDTH + 1]
    lower = tuple(float(w) for w in rng.choice([*special, *rng.uniform(0, 40, 6)], horizons))
    upper = tuple(float(w) for w in rng.choice([*special, *rng.uniform(0, 30, 6)], horizons))
    return prediction, target, end, (lower, upper)


def assert_same_run(found: AdaptiveRun, expected: AdaptiveRun) -> None:
    np.testing.assert_array_equal(found.low, expected.low)
    np.testing.assert_array_equal(found.high, expected.high)
    assert found.lower == expected.lower
    assert found.upper == expected.upper


@pytest.mark.parametrize("seed", range(3))
def test_the_replay_is_the_window_by_window_replay_to_the_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(CASES // 3):
        prediction, target, end, initial = random_replay(rng)
        expected = reference_replay(prediction, target, end, initial)
        assert_same_run(adaptive_bands(prediction, target, end, initial, COVERAGE), expected)


def test_forecasters_replayed_side_by_side_get_what_each_gets_alone() -> None:
    rng = np.random.default_rng(7)
    prediction, target, end, initial = random_replay(rng)
    while len(end) < 20:
        prediction, target, end, initial = random_replay(rng)
    others = [np.clip(prediction + rng.normal(0, 15, prediction.shape), 40, 400) for _ in range(3)]
    initials = [initial, *[(initial[1], initial[0])] * 3]
    runs = adaptive_runs([prediction, *others], target, end, initials, COVERAGE)
    for run, predicted, widths in zip(runs, [prediction, *others], initials, strict=True):
        assert_same_run(run, reference_replay(predicted, target, end, widths))
    assert adaptive_runs([], target, end, [], COVERAGE) == []


def test_widths_for_another_number_of_horizons_are_refused() -> None:
    with pytest.raises(ValueError, match="each of the 2 horizons"):
        adaptive_bands(np.full((3, 2), 100.0), np.full((3, 2), 100.0), np.arange(3), ((1.0,), (1.0,)), COVERAGE)
    with pytest.raises(ValueError, match="2 forecasters' predictions but 1 band widths"):
        adaptive_runs([np.full((3, 1), 100.0)] * 2, np.full((3, 1), 100.0), np.arange(3), [((1.0,), (1.0,))], COVERAGE)


def reference_lag(prediction: np.ndarray, target: np.ndarray, origin: np.ndarray) -> tuple[float | None, ...]:
    """One ``np.corrcoef`` per horizon and shift; flat series score -inf; the first best shift wins."""
    readings = np.column_stack([origin, target])
    lags: list[float | None] = []
    for h in range(prediction.shape[1]):
        scores = []
        for shift in range(h + 2):
            a, b = prediction[:, h], readings[:, h + 1 - shift]
            flat = len(a) < 2 or np.std(a) == 0 or np.std(b) == 0
            scores.append(-math.inf if flat else float(np.corrcoef(a, b)[0, 1]))
        finite = any(math.isfinite(score) for score in scores)
        lags.append(float(HORIZON_MINUTES[0] * scores.index(max(scores))) if finite else None)
    return tuple(lags)


def test_the_time_lag_is_the_one_correlation_at_a_time_lag() -> None:
    """Equal lags on random data with 3 to 200 windows, flat and persistence-like forecasts among them.

    (With 2 windows every correlation is +-1, and which of the tied shifts wins is rounding.)
    """
    rng = np.random.default_rng(11)
    for case in range(CASES):
        count = int(rng.integers(3, 200))
        target, origin = rng.uniform(40, 400, (count, HORIZONS)), rng.uniform(40, 400, count)
        prediction = target + rng.normal(0, 20, (count, HORIZONS))
        if case % 4 == 1:
            prediction[:, 3] = 100.0  # a flat forecast: no lag there
        if case % 4 == 2:
            prediction = np.repeat(origin[:, None], HORIZONS, axis=1)  # persistence
        if case % 5 == 0:
            target[:, 2] = target[0, 2]  # flat readings, whose mean may round off the value
        assert time_lag(prediction, target, origin) == reference_lag(prediction, target, origin)
        readings = np.column_stack([origin, target])
        found = _correlations(prediction, readings)
        for h in range(HORIZONS):
            for k in range(HORIZONS + 1):
                a, b = prediction[:, h], readings[:, k]
                if np.std(a) == 0 or np.std(b) == 0:
                    assert found[h, k] == -math.inf
                else:
                    assert found[h, k] == pytest.approx(np.corrcoef(a, b)[0, 1], rel=0, abs=1e-12)


def reference_smooth_step(x: np.ndarray) -> np.ndarray:
    xi = np.clip(x, -1.0, 1.0)
    return np.asarray(np.where(xi <= 0, (-(xi**4) - 2 * xi**3 + 2 * xi + 1) / 2, (xi**4 - 2 * xi**3 + 2 * xi + 1) / 2))


def test_the_grmse_penalty_is_the_quartic_on_every_point_to_the_bit() -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-3, 3, 5_000), [-1.0, 1.0, 0.0, -0.0, -2.0, 2.0, 0.5, -0.5]])
    np.testing.assert_array_equal(_smooth_step(x), reference_smooth_step(x))
    assert _smooth_step(np.empty(0)).shape == (0,)
    reference, prediction = rng.uniform(40, 400, (300, HORIZONS)), rng.uniform(40, 400, (300, HORIZONS))
    low, high = GRMSE_LOW, GRMSE_HIGH
    g, p = reference, prediction
    expected = (
        1
        + low["weight"]
        * reference_smooth_step(-2 / low["margin"] * (g - p + low["margin"] / 2))
        * reference_smooth_step(-2 / low["fade"] * (g - low["reading"] + low["fade"] / 2))
        + high["weight"]
        * reference_smooth_step(2 / high["margin"] * (g - p - high["margin"] / 2))
        * reference_smooth_step(2 / high["fade"] * (g - high["reading"] - high["fade"] / 2))
    )
    np.testing.assert_array_equal(grmse_penalty(reference, prediction), expected)
