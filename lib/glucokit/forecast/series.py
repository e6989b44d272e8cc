"""A person's readings on a 5-minute grid: validated, de-duplicated, gaps marked.

Choices, and why:

- The grid's phase is the readings' own (their circular mean offset within 5
  minutes), not the clock's: a sensor that reads at :02:30 would otherwise sit
  on the ±2.5 min snapping boundary, and jitter would turn neighbours into
  duplicates and leave holes.
- Each reading goes to its nearest grid point (so always within ±2.5 min). Two
  readings on one point (the same time, or jitter): the one nearer the grid
  point is kept, the first given on a tie.
- Gaps of up to 15 minutes between two readings (at most 2 missing points) are
  filled by linear interpolation, because a dropped packet or two says nothing
  about glucose; longer gaps stay NaN and no window crosses them. Filled points
  are marked: they may serve as inputs, never as targets to learn or score.
- Carbohydrate and insulin amounts are summed per grid point (nearest, like
  readings). No record means zero: a person who logs no carbohydrate at all
  simply does not get that input.

The grid serves the split, the targets and the training log. What a model
reads at an origin is cut from the records themselves (``Timeline``) by
windows.inputs_at, the same way in training, evaluation and serving.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final, SupportsFloat

import numpy as np
import numpy.typing as npt

from glucokit.errors import GlucokitError
from glucokit.units import CARBOHYDRATE_CODE, GLUCOSE_RANGE_MG_DL, INSULIN_CODE, KINDS, LOINC, SNOMED

STEP: Final = timedelta(minutes=5)
STEPS_PER_DAY: Final = 288
MAX_FILLED_GAP: Final = timedelta(minutes=15)
MAX_MISSING: Final = int(MAX_FILLED_GAP / STEP) - 1  # grid points a short gap leaves missing (2)
MIN_DAYS: Final = 2.0
GLUCOSE_LOW, GLUCOSE_HIGH = (float(bound) for bound in GLUCOSE_RANGE_MG_DL)
_CARBS = KINDS[(LOINC, CARBOHYDRATE_CODE)]
_INSULIN = KINDS[(SNOMED, INSULIN_CODE)]

Reading = tuple[datetime, SupportsFloat]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class InsufficientData(GlucokitError):
    """Too little data to train (or forecast) per person: the caller falls back to a baseline.

    ``reason`` is the one-line why, meant for the person and the training log.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SeriesReport:
    """What resampling did to the input, for the training log."""

    readings: int  # glucose readings given
    out_of_range: int  # dropped: outside GLUCOSE_RANGE_MG_DL or not a number
    duplicates: int  # dropped: a second reading on one grid point
    filled: int  # grid points filled across short gaps
    missing: int  # grid points left NaN (inside long gaps)
    gaps: int  # gaps longer than MAX_FILLED_GAP
    events_dropped: int  # carbohydrate/insulin records that are not a plausible amount

    def lines(self) -> list[str]:
        return [
            f"readings: {self.readings} given, {self.out_of_range} out of range, {self.duplicates} duplicates dropped",
            f"grid: {self.filled} points filled across short gaps, {self.missing} missing in {self.gaps} long gaps",
            f"events: {self.events_dropped} implausible carbohydrate/insulin records dropped",
        ]


@dataclass(frozen=True)
class Timeline:
    """A person's usable records, each kind oldest first, times in microseconds since the epoch (UTC).

    Glucose outside GLUCOSE_RANGE_MG_DL and implausible carbohydrate/insulin
    amounts are left out. Records at the same time keep the order they were
    given in. ``*_given`` is each record's position in the sequence it was
    given in, so that a forecast can name the records it read.
    """

    glucose_at: IntArray
    glucose: FloatArray  # mg/dL
    glucose_given: IntArray
    carbs_at: IntArray
    carbs: FloatArray  # g
    carbs_given: IntArray
    insulin_at: IntArray
    insulin: FloatArray  # [iU]
    insulin_given: IntArray
    out_of_range: int  # glucose readings left out
    events_dropped: int  # carbohydrate/insulin records left out


def timeline(glucose: Sequence[Reading], carbs: Sequence[Reading] = (), insulin: Sequence[Reading] = ()) -> Timeline:
    """The usable records of each kind, sorted by time (see ``Timeline``)."""
    glucose_at, glucose_values, glucose_given = _kept(glucose, GLUCOSE_LOW, GLUCOSE_HIGH)
    carbs_at, carb_values, carbs_given = _kept(carbs, float(_CARBS.low), float(_CARBS.high))
    insulin_at, insulin_values, insulin_given = _kept(insulin, float(_INSULIN.low), float(_INSULIN.high))
    return Timeline(
        glucose_at=glucose_at,
        glucose=glucose_values,
        glucose_given=glucose_given,
        carbs_at=carbs_at,
        carbs=carb_values,
        carbs_given=carbs_given,
        insulin_at=insulin_at,
        insulin=insulin_values,
        insulin_given=insulin_given,
        out_of_range=len(glucose) - len(glucose_at),
        events_dropped=len(carbs) + len(insulin) - len(carbs_at) - len(insulin_at),
    )


@dataclass(frozen=True)
class Series:
    """One person's data on a 5-minute grid; index i is the time ``start + i * STEP``."""

    start: datetime  # UTC
    first_reading: datetime  # the earliest and latest reading kept, as given (UTC)
    last_reading: datetime
    glucose: FloatArray  # (T,) mg/dL, short gaps filled, NaN in long gaps
    observed: BoolArray  # (T,) True where a reading landed (not filled)
    reading: IntArray  # (T,) the reading that landed there, by its index in ``records``; -1 where none
    carbs: FloatArray  # (T,) g per step
    insulin: FloatArray  # (T,) [iU] per step
    records: Timeline  # what the grid was made of: windows read their inputs from it
    tz: tzinfo  # the person's time zone, for the time of day
    report: SeriesReport

    def __len__(self) -> int:
        return len(self.glucose)

    def time(self, index: int) -> datetime:
        return self.start + index * STEP

    @property
    def targets(self) -> FloatArray:
        """(T,) glucose where it was read, NaN elsewhere: what may be learned and scored."""
        return np.where(self.observed, self.glucose, np.nan)


def resample(
    glucose: Sequence[Reading],
    carbs: Sequence[Reading] = (),
    insulin: Sequence[Reading] = (),
    *,
    tz: tzinfo = UTC,
) -> Series:
    """Put readings and events on a 5-minute grid (no volume check; see ``prepare``).

    ``tz`` is the person's time zone, for the time of day.
    """
    records = timeline(glucose, carbs, insulin)
    if len(records.glucose_at) == 0:
        raise InsufficientData("no glucose readings within the physiological range")
    times = records.glucose_at / 1e6

    step = STEP.total_seconds()
    phase = _circular_mean(times % step, step)
    origin = math.floor((times.min() - phase) / step + 0.5) * step + phase
    index = np.rint((times - origin) / step).astype(np.int64)
    length = int(index.max()) + 1

    # Nearest reading per grid point wins, first given on a tie: lexsort by (point, distance, input order).
    distance = np.abs(times - (origin + index * step))
    order = np.lexsort((records.glucose_given, distance, index))
    first = np.ones(len(order), dtype=bool)
    first[1:] = index[order][1:] != index[order][:-1]
    chosen = order[first]

    grid = np.full(length, np.nan)
    grid[index[chosen]] = records.glucose[chosen]
    reading = np.full(length, -1, dtype=np.int64)
    reading[index[chosen]] = chosen
    observed = np.isfinite(grid)
    filled, gaps = fill_short_gaps(grid[None])

    start = datetime.fromtimestamp(origin, UTC)
    return Series(
        start=start,
        first_reading=moment(int(records.glucose_at[0])),
        last_reading=moment(int(records.glucose_at[-1])),
        glucose=grid,
        observed=observed,
        reading=reading,
        carbs=_events(records.carbs_at, records.carbs, origin, length),
        insulin=_events(records.insulin_at, records.insulin, origin, length),
        records=records,
        tz=tz,
        report=SeriesReport(
            readings=len(glucose),
            out_of_range=records.out_of_range,
            duplicates=len(index) - len(chosen),
            filled=int(filled.sum()),
            missing=int(np.isnan(grid).sum()),
            gaps=gaps,
            events_dropped=records.events_dropped,
        ),
    )


def prepare(
    glucose: Sequence[Reading],
    carbs: Sequence[Reading] = (),
    insulin: Sequence[Reading] = (),
    *,
    tz: tzinfo = UTC,
    min_days: float = MIN_DAYS,
) -> Series:
    """``resample``, then insist on at least ``min_days`` of distinct readings (else ``InsufficientData``)."""
    if not glucose:
        raise InsufficientData("no glucose readings")
    series = resample(glucose, carbs, insulin, tz=tz)
    needed = math.ceil(min_days * STEPS_PER_DAY)
    have = int(series.observed.sum())
    if have < needed:
        raise InsufficientData(
            f"{have} valid readings ({have / STEPS_PER_DAY:.2f} days of 5-minute readings);"
            f" at least {min_days:g} days ({needed} readings) are needed"
        )
    return series


def fill_short_gaps(values: FloatArray) -> tuple[BoolArray, int]:
    """Interpolate, in place along the last axis of (n, L) ``values``, NaN runs of at most MAX_MISSING points.

    A run is filled only between two numbers of its row. Returns the mask of
    the points filled and how many runs were too long to fill.
    """
    length = values.shape[1]
    position = np.arange(length)
    known = np.isfinite(values)
    before = np.maximum.accumulate(np.where(known, position, -1), axis=1)
    after = np.flip(np.minimum.accumulate(np.flip(np.where(known, position, length), axis=1), axis=1), axis=1)
    inside = ~known & (before >= 0) & (after < length)
    run = after - before - 1
    filled = inside & (run <= MAX_MISSING)
    rows, points = np.nonzero(filled)
    left, right = before[rows, points], after[rows, points]
    values[rows, points] = values[rows, left] + (values[rows, right] - values[rows, left]) * (points - left) / (
        right - left
    )
    gaps = int((inside & (run > MAX_MISSING) & (position == before + 1)).sum())
    return filled, gaps


def micros(when: datetime) -> int:
    """A time as microseconds since the epoch, exactly (a float of seconds would round)."""
    if when.tzinfo is None:
        raise GlucokitError(f"reading time {when.isoformat()} has no time zone")
    return (when - _EPOCH) // timedelta(microseconds=1)


def moment(at: int) -> datetime:
    """The time (UTC) of microseconds since the epoch: ``micros`` undone."""
    return _EPOCH + timedelta(microseconds=at)


def _number(value: SupportsFloat) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _kept(readings: Sequence[Reading], low: float, high: float) -> tuple[IntArray, FloatArray, IntArray]:
    """The times, values and given positions of the readings with a value in [low, high], sorted by time (stable)."""
    times = np.array([micros(when) for when, _ in readings], dtype=np.int64)
    values = np.array([_number(value) for _, value in readings], dtype=np.float64)
    kept = np.flatnonzero(np.isfinite(values) & (values >= low) & (values <= high))
    kept = kept[np.argsort(times[kept], kind="stable")]
    return times[kept], values[kept], kept.astype(np.int64)


def _circular_mean(offsets: FloatArray, period: float) -> float:
    """The mean phase of offsets on a circle, so that 4:59 and 0:01 average to 0:00 rather than 2:30."""
    angle = 2 * np.pi * offsets / period
    mean = math.atan2(float(np.sin(angle).mean()), float(np.cos(angle).mean()))
    return (mean / (2 * np.pi) * period) % period


def _events(at: IntArray, amounts: FloatArray, origin: float, length: int) -> FloatArray:
    """(length,) amounts summed per grid point (the nearest)."""
    grid = np.zeros(length)
    point = np.rint((at / 1e6 - origin) / STEP.total_seconds()).astype(np.int64)
    inside = (point >= 0) & (point < length)
    np.add.at(grid, point[inside], amounts[inside])
    return grid
