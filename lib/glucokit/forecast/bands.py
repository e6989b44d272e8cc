"""Forecast bands whose coverage holds online, held inside what a sensor can read.

Split conformal (``metrics.conformal_quantile``) covers as promised only while
future errors look like the calibration errors; when a person's glucose drifts
away from the validation days, its band under-covers and stays so. Adaptive
conformal inference (Gibbs & Candès, "Adaptive conformal inference under
distribution shift", NeurIPS 2021) corrects the level after every outcome,
``alpha_{t+1} = alpha_t + gamma (alpha - err_t)``, with ``err_t = 1`` when the
outcome fell outside the band. glucokit applies the same update to the band's
half-width itself, the quantile form of ACI (Angelopoulos, Candès &
Tibshirani, "Conformal PID control for time series prediction", NeurIPS 2023,
quantile tracking)::

    q_{t+1} = q_t + eta (err_t - alpha),  kept within [0, the sensor's span]

so the state per model version and horizon is one number, mg/dL, that the
database can keep (``private.band_state``). For any sequence of outcomes, drifting
or not, the miss rate over T outcomes is alpha within (span + eta) / (eta T)
(ibid., Proposition 1): a band that misses too often widens until it does not.
It starts from the split-conformal half-width and its step is a fixed fraction
of it, so a horizon's step follows the size of its errors.

Outcomes arrive late: the outcome of a forecast ``h`` minutes ahead is known
``h`` minutes after it was made. ``adaptive_bands`` replays exactly that on
held-out windows, so that what evaluation scores is what serving does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np

from glucokit.forecast.series import FloatArray, IntArray
from glucokit.units import SENSOR_RANGE_MG_DL

SENSOR_LOW, SENSOR_HIGH = (float(bound) for bound in SENSOR_RANGE_MG_DL)
# No band needs to be wider than the whole range a sensor reads.
MAX_HALF_WIDTH: Final = SENSOR_HIGH - SENSOR_LOW
# eta as a fraction of the starting half-width: a miss widens an 80 % band by
# 8 % of it, a hit narrows it by 2 %. Larger steps follow drift faster and
# wobble more; 0.1 held every horizon within 0.79-0.80 on the drifting streams
# of tests/test_bands.py and, as the mean over persons, on the 9 simulated
# patients of bench/forecast_quality.py's 10 x 14-day cohort.
STEP_FRACTION: Final = 0.1
# A starting half-width of 0 (a flat calibration) still needs a step to grow by, mg/dL.
MIN_STEP: Final = 0.5


def clamp(values: FloatArray) -> FloatArray:
    """Glucose values held inside the sensor's range; a value that is not a number is refused."""
    array = np.asarray(values, dtype=np.float64)
    if np.isnan(array).any():
        raise ValueError("a forecast value is not a number")
    return np.clip(array, SENSOR_LOW, SENSOR_HIGH)


def band(prediction: FloatArray, half_width: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(low, high) = the clamped prediction -/+ the half-width (per horizon, broadcast), both clamped.

    low <= clamp(prediction) <= high always: the half-width must be >= 0 (an
    infinite one is the whole sensor range).
    """
    value = clamp(prediction)
    width = np.asarray(half_width, dtype=np.float64)
    if np.isnan(width).any() or (width < 0).any():
        raise ValueError("a band half-width must be a number >= 0")
    return clamp(value - np.minimum(width, MAX_HALF_WIDTH)), clamp(value + np.minimum(width, MAX_HALF_WIDTH))


def start(half_width: float) -> tuple[float, float]:
    """The tracked half-width and its step, from a calibrated (split-conformal) half-width."""
    initial = min(half_width, MAX_HALF_WIDTH)  # infinite: too few calibration errors, so start with the whole range
    return initial, STEP_FRACTION * max(initial, MIN_STEP / STEP_FRACTION)


def update(half_width: float, step: float, coverage: float, missed: bool) -> float:
    """One ACI step on the half-width after one outcome: wider after a miss, narrower after a hit."""
    moved = half_width + step * (float(missed) - (1 - coverage))
    return min(max(moved, 0.0), MAX_HALF_WIDTH)


def track(half_width: float, step: float, coverage: float, misses: Iterable[bool]) -> float:
    """The half-width after a sequence of outcomes, oldest first (True: the reading fell outside the band)."""
    for missed in misses:
        half_width = update(half_width, step, coverage, missed)
    return half_width


@dataclass(frozen=True)
class AdaptiveRun:
    """Bands served while replaying windows in time order, and the state they leave."""

    low: FloatArray  # (n, horizons) mg/dL
    high: FloatArray
    half_width: tuple[float, ...]  # per horizon after every outcome of the windows, mg/dL
    steps: tuple[float, ...]  # per horizon, mg/dL


def adaptive_bands(
    prediction: FloatArray, target: FloatArray, end: IntArray, initial: Iterable[float], coverage: float
) -> AdaptiveRun:
    """Serve (n, horizons) predictions in the order of their origins, learning from each outcome once it is known.

    ``end`` is each window's origin on the 5-minute grid, ascending; the
    outcome at horizon ``h`` (0-based) lands on grid index ``end + h + 1``, and
    only outcomes that landed at or before an origin shape its band.
    """
    value, target = clamp(prediction), np.asarray(target, dtype=np.float64)
    order = np.asarray(end, dtype=np.int64)
    if len(order) > 1 and (np.diff(order) < 0).any():
        raise ValueError("windows must be in the order of their origins")
    low, high = np.empty_like(value), np.empty_like(value)
    widths: list[float] = []
    steps: list[float] = []
    for h, calibrated in enumerate(initial):
        q, step = start(calibrated)
        arrival = order + h + 1
        missed = np.zeros(len(order), dtype=bool)
        known = 0  # outcomes of windows [0, known) are already learned from
        for i in range(len(order)):
            while known < i and arrival[known] <= order[i]:
                q = update(q, step, coverage, bool(missed[known]))
                known += 1
            # As ``band`` does, in scalars: this loop runs once per window and horizon.
            low[i, h], high[i, h] = max(SENSOR_LOW, value[i, h] - q), min(SENSOR_HIGH, value[i, h] + q)
            missed[i] = not low[i, h] <= target[i, h] <= high[i, h]
        widths.append(track(q, step, coverage, (bool(m) for m in missed[known:])))
        steps.append(step)
    return AdaptiveRun(low, high, tuple(widths), tuple(steps))
