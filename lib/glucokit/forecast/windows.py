"""What a model reads at an origin, supervised windows cut from a Series, and the chronological split.

``inputs_at`` is the one definition of a model's input: training, evaluation
and serving all call it, so what is scored is what is served. At an origin
(a reading's time) it lays a 5-minute grid that ends there: each record
belongs to the step nearest to it (the older one at exactly half a step),
never to one after the origin. Its inputs are the 12 readings of the last
hour (gaps of up to 15 minutes filled as series.py fills them, from the
readings at most 15 minutes older), the local time of day at the origin and
the carbohydrate/insulin amounts summed per step over the last
``EVENT_STEPS`` steps; ``sources_at`` names the records it read.

A training window ends at a grid point where a reading landed (its origin:
a live forecast starts from a reading too); its targets are the readings at
the next 12 grid points (5..60 min). It is used only if every input is a
number, every target may be learned (``Series.targetable``: no filled point,
censored value or compression low) and none of its points is sensor warm-up.

The split is by usable windows, not by time: a person's usable windows, in
time order, go 8:2:4 by count to train, validation and test (the reference
protocol's days 1-8, 9-10 and 11-14 when nothing is missing), so a multi-day
gap shortens the splits it falls in instead of emptying one. The windows of a
split whose targets would reach into the next split's first window are left
out, so no reading is a target of two splits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from typing import Final

import numpy as np

from glucokit.forecast.series import (
    MAX_MISSING,
    STEP,
    BoolArray,
    FloatArray,
    IntArray,
    Series,
    Timeline,
    fill_short_gaps,
    moment,
)

INPUT_STEPS: Final = 12  # one hour of readings
HORIZONS: Final = 12  # 5, 10, ..., 60 minutes
HORIZON_MINUTES: Final = tuple(5 * (h + 1) for h in range(HORIZONS))
# Carbohydrate and insulin act for hours, longer than the input hour (rapid
# insulin for 4-5 h, a meal's carbohydrate for 2-4 h): windows carry the
# amounts of the last 4 hours. On the reference protocol 4 h did better on
# validation than 3 h and about as well as 6 h.
EVENT_STEPS: Final = 48
# The glucose steps an origin looks at: the input hour, and before it the
# readings a short gap at the hour's start is filled from.
GLUCOSE_STEPS: Final = INPUT_STEPS + MAX_MISSING
# How far back from an origin records are read: a record belongs to the step
# nearest it, so the oldest step reaches half a step further.
GLUCOSE_LOOKBACK: Final = (GLUCOSE_STEPS - 0.5) * STEP
EVENT_LOOKBACK: Final = (EVENT_STEPS - 0.5) * STEP
LOOKBACK: Final = max(GLUCOSE_LOOKBACK, EVENT_LOOKBACK)
# The reference protocol's proportions (days 1-8 train, 9-10 validation, 11-14 test), by count of usable windows.
SPLIT_FRACTIONS: Final = (8 / 14, 2 / 14, 4 / 14)
# Windows left out before a split boundary at most: a window's span less one.
PURGED: Final = INPUT_STEPS + HORIZONS - 1
SPLITS: Final = ("train", "validation", "test")
_STEP_US: Final = STEP // timedelta(microseconds=1)


@dataclass(frozen=True)
class Inputs:
    """What a forecaster may see for n windows (never the future)."""

    glucose: FloatArray  # (n, INPUT_STEPS) mg/dL, oldest first
    day_fraction: FloatArray  # (n,) local time of day at the last reading, in [0, 1)
    carbs: FloatArray  # (n, EVENT_STEPS) g per step, oldest first
    insulin: FloatArray  # (n, EVENT_STEPS) [iU] per step, oldest first

    def __len__(self) -> int:
        return len(self.glucose)

    @property
    def last(self) -> FloatArray:
        """(n,) the latest reading of each window."""
        return self.glucose[:, -1]

    def time_of_day(self) -> FloatArray:
        """(n, 2) sin and cos of the time of day: midnight sits next to 23:55."""
        angle = 2 * np.pi * self.day_fraction
        return np.stack([np.sin(angle), np.cos(angle)], axis=1)

    def where(self, rows: BoolArray) -> Inputs:
        """The inputs of the windows where ``rows`` is True."""
        return Inputs(self.glucose[rows], self.day_fraction[rows], self.carbs[rows], self.insulin[rows])

    @property
    def whole(self) -> BoolArray:
        """(n,) True where every glucose input is a number: only such windows can be forecast from."""
        return np.asarray(np.isfinite(self.glucose).all(axis=1))


@dataclass(frozen=True)
class Sources:
    """The records an origin's inputs were made of, by their positions in the sequences given to ``timeline``."""

    glucose: list[int]  # the hour's readings, and the older ones a short gap was filled from
    carbs: list[int]
    insulin: list[int]


def inputs_at(records: Timeline, origins: IntArray, tz: tzinfo) -> Inputs:
    """The inputs a model reads at each origin (microseconds since the epoch), from the records up to it.

    The one way inputs are made, for training, evaluation and serving alike
    (see the module docstring). An origin whose hour has a longer gap gets
    NaN glucose inputs (``Inputs.whole`` is False there).
    """
    glucose, _, _ = _glucose(records, origins)
    return Inputs(
        glucose=glucose[:, -INPUT_STEPS:],
        day_fraction=np.array([_day_fraction(int(origin), tz) for origin in origins], dtype=np.float64),
        carbs=_binned_events(records.carbs_at, records.carbs, origins),
        insulin=_binned_events(records.insulin_at, records.insulin, origins),
    )


def sources_at(records: Timeline, origin: int) -> Sources:
    """The records ``inputs_at`` reads at ``origin``: its window's readings and every event in its look-back."""
    _, chosen, filled = _glucose(records, np.array([origin], dtype=np.int64))
    window = slice(GLUCOSE_STEPS - INPUT_STEPS, GLUCOSE_STEPS)
    read = chosen[0] >= 0
    # A filled point is interpolated from the reading before its gap (the one after is in the window anyway).
    before = np.maximum.accumulate(np.where(read, np.arange(GLUCOSE_STEPS), -1))
    glucose = set(chosen[0, window][read[window]].tolist())
    glucose |= {int(chosen[0, before[point]]) for point in np.flatnonzero(filled[0]) if point >= window.start}
    return Sources(
        glucose=sorted(int(records.glucose_given[index]) for index in glucose),
        carbs=_reached(records.carbs_at, records.carbs_given, origin),
        insulin=_reached(records.insulin_at, records.insulin_given, origin),
    )


@dataclass(frozen=True)
class Windows:
    inputs: Inputs
    target: FloatArray  # (n, HORIZONS) mg/dL at +5..+60 min
    end: IntArray  # (n,) grid index of each window's last reading

    def __len__(self) -> int:
        return len(self.target)

    def within(self, start: int, stop: int) -> Windows:
        """The windows whose readings, inputs and targets, lie within grid indices [start, stop)."""
        rows = (self.end - INPUT_STEPS + 1 >= start) & (self.end + HORIZONS < stop)
        return Windows(inputs=self.inputs.where(rows), target=self.target[rows], end=self.end[rows])


@dataclass(frozen=True)
class Split:
    """Windows per split and the grid index ranges [start, stop) they were cut from."""

    train: Windows
    validation: Windows
    test: Windows
    bounds: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    usable: int  # the usable windows of the whole series the splits were cut from, the purged ones too

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def history(series: Series, end: IntArray) -> Inputs:
    """``inputs_at`` the readings that landed on grid indices ``end``.

    Inputs may reach back before a split's start: it is the past, as it
    would be when forecasting live, and never anything a target could leak into.
    """
    reading = series.reading[end]
    if (reading < 0).any():
        raise ValueError("a window ends at a reading: no reading landed on some of these grid points")
    return inputs_at(series.records, series.records.glucose_at[reading], series.tz)


def windows(series: Series, start: int, stop: int) -> Windows:
    """All usable windows whose readings, inputs and targets, lie within grid indices [start, stop)."""
    end = np.arange(start + INPUT_STEPS - 1, stop - HORIZONS, dtype=np.int64)
    end = end[series.observed[end]]
    inputs = history(series, end)
    target = series.targets[end[:, None] + np.arange(1, HORIZONS + 1)]
    usable = inputs.whole & np.isfinite(target).all(axis=1) & ~_touches(series.warmup, end)
    return Windows(inputs=inputs.where(usable), target=target[usable], end=end[usable])


def split(series: Series, fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> Split:
    """The person's usable windows, in time order, into train, validation and test by count (``fractions``).

    A split starts at its first window's first input; each split's windows lie
    wholly inside it, so no window straddles a boundary (the windows of the
    PURGED before a boundary that would predict past it are left out).
    """
    if len(fractions) != 3 or min(fractions) <= 0:
        raise ValueError(f"three positive split fractions are needed, not {fractions!r}")
    every = windows(series, 0, len(series))
    readings = np.flatnonzero(series.observed)
    first, last = int(readings[0]), int(readings[-1])
    total = sum(fractions)
    cuts = (round(len(every) * fractions[0] / total), round(len(every) * (fractions[0] + fractions[1]) / total))
    begins = [int(every.end[cut]) - INPUT_STEPS + 1 if cut < len(every) else last + 1 for cut in cuts]
    bounds = ((first, begins[0]), (begins[0], begins[1]), (begins[1], last + 1))
    train, validation, test = (every.within(start, stop) for start, stop in bounds)
    return Split(train=train, validation=validation, test=test, bounds=bounds, usable=len(every))


def needed_windows(fractions: tuple[float, float, float], minimum: tuple[int, int, int]) -> int:
    """The fewest usable windows that ``split`` turns into at least ``minimum`` windows per split, whatever the gaps.

    A cut rounds by at most half a window, and up to PURGED windows before each
    of the two boundaries are left out.
    """
    total = sum(fractions)
    losses = (PURGED + 0.5, PURGED + 1, 0.5)
    return max(
        math.ceil((least + loss) * total / share) for least, loss, share in zip(minimum, losses, fractions, strict=True)
    )


def unusable(series: Series) -> dict[str, int]:
    """How many readings start no usable window, by the first reason found (the one to fix first)."""
    points = np.flatnonzero(series.observed)
    inside = (points >= INPUT_STEPS - 1) & (points < len(series) - HORIZONS)
    end = points[inside]
    whole = history(series, end).whole
    warm = _touches(series.warmup, end)
    later = end[:, None] + np.arange(1, HORIZONS + 1)
    missed = (~series.observed[later] & ~series.targetable[later]).any(axis=1)
    masked = ~np.isfinite(series.targets[later]).all(axis=1)
    reasons = {
        "lie in the first or last hour of the recording": int((~inside).sum()),
        "have a gap longer than 15 minutes in the hour before them": int((~whole).sum()),
        "lie in or just after a sensor warm-up": int((whole & warm).sum()),
        "have a missed reading or a gap in the hour after them": int((whole & ~warm & missed).sum()),
        "have a value at the sensor's limits or a compression low in the hour after them": int(
            (whole & ~warm & ~missed & masked).sum()
        ),
    }
    return {reason: count for reason, count in reasons.items() if count}


def _touches(mask: BoolArray, end: IntArray) -> BoolArray:
    """(n,) True where a window ending at ``end`` has a point where ``mask`` is True, inputs or targets."""
    count = np.concatenate([[0], np.cumsum(mask)])
    stop = np.minimum(end + HORIZONS + 1, len(mask))
    touched: BoolArray = count[stop] - count[np.maximum(end - INPUT_STEPS + 1, 0)] > 0
    return touched


def _lag(origins: IntArray, at: IntArray) -> IntArray:
    """The step before the origin that records at ``at`` belong to: the nearest, the older one at exactly half."""
    lag: IntArray = (origins - at + _STEP_US // 2) // _STEP_US
    return lag


def _glucose(records: Timeline, origins: IntArray) -> tuple[FloatArray, IntArray, BoolArray]:
    """(n, GLUCOSE_STEPS) glucose per step up to each origin, oldest first, short gaps filled; the reading of each
    step (index in ``records``, -1 where none); the points filled.

    A step's reading is the one nearest its grid point among those that
    belong to it; of readings at the same time, the first given.
    """
    times = records.glucose_at
    steps = np.arange(GLUCOSE_STEPS - 1, -1, -1)
    point = origins[:, None] - steps * _STEP_US  # (n, GLUCOSE_STEPS)
    until = np.searchsorted(times, origins, side="right")[:, None]  # readings after the origin are never read
    later = np.searchsorted(times, point, side="left")  # the first reading at or after each point
    earlier = later - 1
    has_later, has_earlier = later < until, earlier >= 0
    # Of readings at the same time, the first given (a stable sort put it first).
    earlier = np.where(has_earlier, np.searchsorted(times, times[np.maximum(earlier, 0)], side="left"), -1)
    far = np.iinfo(np.int64).max
    to_later = np.where(has_later, times[np.minimum(later, len(times) - 1)] - point, far)
    to_earlier = np.where(has_earlier, point - times[np.maximum(earlier, 0)], far)
    chosen = np.where(to_later <= to_earlier, np.where(has_later, later, -1), earlier)
    belongs = (chosen >= 0) & (_lag(origins[:, None], times[np.maximum(chosen, 0)]) == steps)
    chosen = np.where(belongs, chosen, -1)
    glucose = np.where(belongs, records.glucose[np.maximum(chosen, 0)], np.nan)
    filled, _ = fill_short_gaps(glucose)
    return glucose, chosen, filled


def _reach(at: IntArray, origins: IntArray) -> tuple[IntArray, IntArray]:
    """Per origin, the [first, stop) indices of the records within its event look-back, up to the origin."""
    lookback = EVENT_LOOKBACK // timedelta(microseconds=1)
    first: IntArray = np.searchsorted(at, origins - lookback, side="right")
    stop: IntArray = np.searchsorted(at, origins, side="right")
    return first, stop


def _binned_events(at: IntArray, amounts: FloatArray, origins: IntArray) -> FloatArray:
    """(n, EVENT_STEPS) amounts summed per step up to each origin, oldest first."""
    first, stop = _reach(at, origins)
    counts = stop - first
    rows = np.repeat(np.arange(len(origins)), counts)
    index = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(first, counts)
    binned = np.zeros((len(origins), EVENT_STEPS))
    np.add.at(binned, (rows, EVENT_STEPS - 1 - _lag(origins[rows], at[index])), amounts[index])
    return binned


def _reached(at: IntArray, given: IntArray, origin: int) -> list[int]:
    """The given positions of the records within the event look-back of ``origin``."""
    first, stop = _reach(at, np.array([origin], dtype=np.int64))
    return sorted(given[int(first[0]) : int(stop[0])].tolist())


def _day_fraction(origin: int, tz: tzinfo) -> float:
    local = moment(origin).astimezone(tz)
    return (local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6) / 86400


def check_horizons(horizons: Sequence[int]) -> tuple[int, ...]:
    """The horizons to write, ascending; each must be one the models forecast (5..60 minutes in 5-minute steps)."""
    wanted = tuple(sorted(set(horizons)))
    unknown = [minutes for minutes in wanted if minutes not in HORIZON_MINUTES]
    if not wanted or unknown:
        raise ValueError(
            f"forecast horizons must be some of {', '.join(map(str, HORIZON_MINUTES))} minutes; got {list(horizons)}"
        )
    return wanted
