"""Forecast bands whose coverage holds online, held inside what a sensor can read.

Split conformal (``metrics.conformal_quantile``) covers as promised only while
future errors look like the calibration errors; when a person's glucose drifts
away from the validation days, its band under-covers and stays so. Adaptive
conformal inference (Gibbs & Candès, "Adaptive conformal inference under
distribution shift", NeurIPS 2021) corrects the level after every outcome,
``alpha_{t+1} = alpha_t + gamma (alpha - err_t)``, with ``err_t = 1`` when the
outcome fell outside the band. glucokit applies the same update to the band's
width itself, the quantile form of ACI (Angelopoulos, Candès & Tibshirani,
"Conformal PID control for time series prediction", NeurIPS 2023, quantile
tracking)::

    q_{t+1} = q_t + eta (err_t - alpha / 2),  kept within [0, a limit]

once for each side of the band. A band of constant half-width covered 80 % of
all readings but under-covered the readings above 180 mg/dL and below 70 (on
bench/forecast_quality.py's realistic run, 0.76 and 0.71; the errors are not
symmetric and grow with the level). So the band has two sides, each calibrated
and tracked at a miss rate of alpha / 2 (the one-sided split-conformal
quantiles of the signed errors, as in the asymmetric variant of Romano,
Patterson & Candès, "Conformalized quantile regression", NeurIPS 2019):

- below: ``lower`` mg/dL under the forecast;
- above: ``upper`` percent of the forecast over it, a locally adaptive
  (normalised) score ``(y - yhat) / yhat`` (Lei et al., "Distribution-free
  predictive inference for regression", JASA 2018, section 5.2), known at
  forecast time. Scaling the lower side as well narrowed it exactly where the
  lows are, and under-covered them more (0.61 on the same run).

With both, the same run covered 0.72 below 70 and 0.81 above 180: the lows
still under-cover, as coverage given the reading's range is not what a
conformal band promises. The state per model version and horizon, each side's
width and step, is what the database keeps (``private.band_state``). For any
sequence of outcomes, drifting or not, each side's miss rate over T outcomes
is at most alpha / 2 + (limit + eta) / (eta T) (Angelopoulos et al.,
Proposition 1; a side held at 0, because a band holds its forecast, misses
less): a side that misses too often widens until it does not.
Each side starts from its split-conformal quantile and its step is a fixed
fraction of it, so a horizon's step follows the size of its errors.

Outcomes arrive late: the outcome of a forecast ``h`` minutes ahead is known
``h`` minutes after it was made. ``adaptive_bands`` replays exactly that on
held-out windows, so that what evaluation scores is what serving does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from glucokit.forecast.series import FloatArray, IntArray
from glucokit.units import SENSOR_RANGE_MG_DL

SENSOR_LOW, SENSOR_HIGH = (float(bound) for bound in SENSOR_RANGE_MG_DL)
# No side needs to reach further than the whole range a sensor reads: 360 mg/dL below, and above, 900 %
# of the lowest forecast (40 mg/dL).
MAX_HALF_WIDTH: Final = SENSOR_HIGH - SENSOR_LOW
MAX_UPPER_PERCENT: Final = 100 * MAX_HALF_WIDTH / SENSOR_LOW
# eta as a fraction of the starting width: a miss widens a side of an 80 % band by 9 % of it, a hit narrows
# it by 1 %. Larger steps follow drift faster and wobble more; 0.1 held every horizon within 0.79-0.80 on
# the widening stream of tests/test_bands.py and, as the mean over persons, on bench/forecast_quality.py's
# two runs.
STEP_FRACTION: Final = 0.1
# A starting width of 0 (a flat calibration) still needs a step to grow by (mg/dL, or percent above).
MIN_STEP: Final = 0.5


def clamp(values: FloatArray) -> FloatArray:
    """Glucose values held inside the sensor's range; a value that is not a number is refused."""
    array = np.asarray(values, dtype=np.float64)
    if np.isnan(array).any():
        raise ValueError("a forecast value is not a number")
    return np.clip(array, SENSOR_LOW, SENSOR_HIGH)


def band(prediction: FloatArray, lower: FloatArray, upper: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(low, high): the clamped prediction less ``lower`` mg/dL and plus ``upper`` % of it (per horizon), clamped.

    low <= clamp(prediction) <= high always: the widths must be >= 0 (an
    infinite one reaches the end of the sensor range).
    """
    value = clamp(prediction)
    below, above = (np.asarray(width, dtype=np.float64) for width in (lower, upper))
    if np.isnan(below).any() or np.isnan(above).any() or (below < 0).any() or (above < 0).any():
        raise ValueError("a band width must be a number >= 0")
    return (
        clamp(value - np.minimum(below, MAX_HALF_WIDTH)),
        clamp(value + value * np.minimum(above, MAX_UPPER_PERCENT) / 100),
    )


Widths = tuple[tuple[float, ...], tuple[float, ...]]  # (lower mg/dL, upper %) per horizon


def calibrate(prediction: FloatArray, target: FloatArray, coverage: float) -> Widths:
    """Split-conformal (lower mg/dL, upper %) per horizon from calibration predictions and their targets.

    Each side is the ceil((n+1)(1+coverage)/2)-th smallest of its signed
    scores (Lei et al. 2018): it misses a new outcome with probability at
    most (1-coverage)/2, so the band misses with at most 1-coverage.
    Infinite when n is too small; 0 when the errors all fell on the other side.
    """
    value, target = clamp(prediction), np.asarray(target, dtype=np.float64)
    below = _quantiles(value - target, coverage)
    above = _quantiles(100 * (target - value) / value, coverage)
    return below, above


def _quantiles(scores: FloatArray, coverage: float) -> tuple[float, ...]:
    ordered = np.sort(scores, axis=0)  # (n, horizons)
    rank = math.ceil((len(ordered) + 1) * (1 + coverage) / 2)
    horizons = int(ordered.shape[1])
    if rank > len(ordered):
        return (math.inf,) * horizons
    return tuple(max(float(ordered[rank - 1, h]), 0.0) for h in range(horizons))


@dataclass(frozen=True)
class Side:
    """One side's tracked width: mg/dL below the forecast, or percent of it above."""

    width: float
    step: float


def start(calibrated: float, limit: float) -> Side:
    """A side's tracked width and its step, from its calibrated (split-conformal) width."""
    initial = min(calibrated, limit)  # infinite: too few calibration errors, so start with the whole range
    return Side(initial, STEP_FRACTION * max(initial, MIN_STEP / STEP_FRACTION))


def update(side: Side, coverage: float, missed: bool, limit: float) -> Side:
    """One ACI step on a side after one outcome: wider after a miss on that side, narrower otherwise."""
    return Side(float(_moved(side.width, side.step, coverage, float(missed), limit)), side.step)


def _moved(width: Any, step: Any, coverage: float, missed: Any, limit: Any) -> Any:
    """``update``'s width, for one side (floats) or many at once (arrays), with the same arithmetic."""
    return np.minimum(np.maximum(width + step * (missed - (1 - coverage) / 2), 0.0), limit)


def track(side: Side, coverage: float, misses: Sequence[bool], limit: float) -> Side:
    """A side after a sequence of outcomes, oldest first (True: the reading fell outside on that side)."""
    for missed in misses:
        side = update(side, coverage, missed, limit)
    return side


@dataclass(frozen=True)
class AdaptiveRun:
    """Bands served while replaying windows in time order, and the state they leave, per horizon."""

    low: FloatArray  # (n, horizons) mg/dL
    high: FloatArray
    lower: tuple[Side, ...]  # mg/dL below the forecast, after every outcome of the windows
    upper: tuple[Side, ...]  # percent of the forecast above it


def adaptive_bands(
    prediction: FloatArray,
    target: FloatArray,
    end: IntArray,
    initial: Widths,
    coverage: float,
) -> AdaptiveRun:
    """Serve (n, horizons) predictions in the order of their origins, learning from each outcome once it is known.

    ``initial`` is ``calibrate``'s (lower, upper). ``end`` is each window's
    origin on the 5-minute grid, ascending; the outcome at horizon ``h``
    (0-based) lands on grid index ``end + h + 1``, and only outcomes that
    landed at or before an origin shape its band.
    """
    (run,) = adaptive_runs([prediction], target, end, [initial], coverage)
    return run


def adaptive_runs(
    predictions: Sequence[FloatArray],
    target: FloatArray,
    end: IntArray,
    initials: Sequence[Widths],
    coverage: float,
) -> list[AdaptiveRun]:
    """``adaptive_bands`` of several forecasters' predictions of the same windows, replayed side by side.

    Each (forecaster, horizon, side) is its own sequence of ``update`` steps,
    in the order ``adaptive_bands`` defines; they are independent, so each
    step of the replay moves all of them at once (numpy, elementwise: the
    same arithmetic as ``update`` and ``band``, so the same bits).
    """
    goal = np.asarray(target, dtype=np.float64)
    order = np.asarray(end, dtype=np.int64)
    if len(order) > 1 and (np.diff(order) < 0).any():
        raise ValueError("windows must be in the order of their origins")
    count, horizons = goal.shape
    if len(initials) != len(predictions):
        raise ValueError(f"{len(predictions)} forecasters' predictions but {len(initials)} band widths")
    if any(len(side) != horizons for initial in initials for side in initial):
        raise ValueError(f"band widths must be given for each of the {horizons} horizons")
    forecasters = len(predictions)
    value = np.concatenate([clamp(p) for p in predictions], axis=1) if forecasters else np.empty((count, 0))
    goal = np.tile(goal, (1, forecasters))
    lanes = np.arange(value.shape[1])
    lower = [start(width, MAX_HALF_WIDTH) for initial in initials for width in initial[0]]
    upper = [start(width, MAX_UPPER_PERCENT) for initial in initials for width in initial[1]]
    lower_width, upper_width = (np.array([s.width for s in sides], dtype=np.float64) for sides in (lower, upper))
    lower_step, upper_step = (np.array([s.step for s in sides], dtype=np.float64) for sides in (lower, upper))
    # Per window and lane, how many windows' outcomes at that lane's horizon had landed by the window's origin:
    # those with end + h + 1 <= its end, all earlier windows (ends ascend).
    landed = np.searchsorted(order, order[:, None] - (lanes % horizons + 1), side="right")
    low, high = np.empty_like(value), np.empty_like(value)
    # Whether the reading fell below or above the band (1.0), per window and lane; one row more, which lanes that
    # have learned every window read and do not use.
    under = np.zeros((count + 1, len(lanes)), dtype=np.float64)
    over = np.zeros_like(under)
    learned = np.zeros(len(lanes), dtype=np.int64)

    def learn(upto: IntArray) -> None:
        """Steps every lane through the outcomes of its windows [learned, upto), oldest first."""
        nonlocal lower_width, upper_width, learned
        while (pending := learned < upto).any():
            below = _moved(lower_width, lower_step, coverage, under[learned, lanes], MAX_HALF_WIDTH)
            above = _moved(upper_width, upper_step, coverage, over[learned, lanes], MAX_UPPER_PERCENT)
            if pending.all():
                lower_width, upper_width = below, above
            else:
                lower_width = np.where(pending, below, lower_width)
                upper_width = np.where(pending, above, upper_width)
            learned = learned + pending

    for i in range(count):
        learn(landed[i])
        # As ``band`` does, on the clamped prediction.
        low[i] = np.maximum(SENSOR_LOW, value[i] - lower_width)
        high[i] = np.minimum(SENSOR_HIGH, value[i] + value[i] * upper_width / 100)
        under[i], over[i] = goal[i] < low[i], goal[i] > high[i]
    learn(np.full(len(lanes), count))
    return [
        AdaptiveRun(
            low[:, part].copy(),
            high[:, part].copy(),
            tuple(Side(float(w), s.step) for w, s in zip(lower_width[part], lower[part], strict=True)),
            tuple(Side(float(w), s.step) for w, s in zip(upper_width[part], upper[part], strict=True)),
        )
        for part in (slice(k * horizons, (k + 1) * horizons) for k in range(forecasters))
    ]
