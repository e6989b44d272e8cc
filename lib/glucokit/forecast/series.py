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

Real sensors, and what is learned and scored (``Series.targetable``):

- Drifting clocks: a sensor reading every 4-6 minutes instead of 5 leaves an
  empty grid point now and then (or two readings on one). An empty point
  between two readings less than 1.5 steps apart is no missed reading, only
  the clock's drift: it is filled like a short gap and, unlike one, may be a
  target, so drift costs no windows. A real missed reading leaves 10 minutes.
- Sensor limits: a CGM shows readings outside SENSOR_RANGE_MG_DL as LOW or
  HIGH; a value at or beyond a limit (40 may be a LOW written as 40) is
  censored, not exact. It stays an input (it is what serving sees too, and
  "at most 40" is still the level), never a target.
- Compression lows (pressure on the sensor, often at night: Baysal et al.,
  "A novel method to detect pressure-induced sensor attenuations (PISA) in an
  artificial pancreas", J Diabetes Sci Technol 2014): a fall faster than
  COMPRESSION_FALL between two readings followed, within COMPRESSION_RECOVERY,
  by a return to within COMPRESSION_MARGIN of the level before it. The readings
  of the dip are not targets. They stay inputs: serving cannot tell a dip from
  a real fall until the recovery, so neither may training.
- Warm-up: the first WARMUP of readings after a gap of at least SENSOR_START_GAP
  (where a new sensor most likely started: Dexcom G6 alone warms up 2 h
  without readings) are less accurate; no window reads or predicts them. A
  reading carries no device or session here, so a gap is the only sign.
- Duplicated timestamps: the first given is kept, the rest counted.

``SeriesReport.dropped`` counts, per reason, the readings that are not used as
exact readings; training and ``glucokit evaluate`` report it.

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
from glucokit.units import (
    CARBOHYDRATE_CODE,
    GLUCOSE_RANGE_MG_DL,
    INSULIN_CODE,
    KINDS,
    LOINC,
    SENSOR_RANGE_MG_DL,
    SNOMED,
)

STEP: Final = timedelta(minutes=5)
STEPS_PER_DAY: Final = 288
MAX_FILLED_GAP: Final = timedelta(minutes=15)
MAX_MISSING: Final = int(MAX_FILLED_GAP / STEP) - 1  # grid points a short gap leaves missing (2)
MIN_DAYS: Final = 2.0
GLUCOSE_LOW, GLUCOSE_HIGH = (float(bound) for bound in GLUCOSE_RANGE_MG_DL)
SENSOR_LOW, SENSOR_HIGH = (float(bound) for bound in SENSOR_RANGE_MG_DL)
# Two readings closer than this missed none between them (a missed one leaves 10 minutes).
MAX_DRIFT: Final = 1.5 * STEP
# Physiological glucose rarely falls faster than 2-3 mg/dL/min; a sensor under
# pressure reads a drop of 15 mg/dL or more in one 5-minute step and recovers
# as soon as the pressure goes.
COMPRESSION_FALL: Final = 3.0  # mg/dL per minute
COMPRESSION_RECOVERY: Final = timedelta(minutes=30)
COMPRESSION_MARGIN: Final = 10.0  # mg/dL below the level before the fall
SENSOR_START_GAP: Final = timedelta(hours=2)
WARMUP: Final = timedelta(hours=1)
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
    """What resampling did to the input, for the training log and ``glucokit evaluate``."""

    readings: int  # glucose readings given
    out_of_range: int  # dropped: outside GLUCOSE_RANGE_MG_DL or not a number
    duplicates: int  # dropped: the same time as an earlier reading
    crowded: int  # dropped: a second reading nearest one grid point (jitter, a fast clock)
    censored: int  # kept as inputs, never targets: at or beyond SENSOR_RANGE_MG_DL
    compression: int  # kept as inputs, never targets: in a compression low
    warmup: int  # read by no window: sensor warm-up after a long gap
    filled: int  # grid points filled across short gaps
    drift: int  # of those, holes a drifting clock left (targets too)
    missing: int  # grid points left NaN (inside long gaps)
    gaps: int  # gaps longer than MAX_FILLED_GAP
    events_dropped: int  # carbohydrate/insulin records that are not a plausible amount

    def dropped(self) -> dict[str, int]:
        """Readings not used as exact readings, per reason (only reasons that occurred)."""
        reasons = {
            "outside 10-1000 mg/dL or not a number": self.out_of_range,
            "duplicate timestamp": self.duplicates,
            "a second reading on one 5-minute point": self.crowded,
            "at the sensor's limits (40/400 mg/dL): inputs only": self.censored,
            "in a compression low: inputs only": self.compression,
            "sensor warm-up after a gap of 2 hours or more": self.warmup,
        }
        return {reason: count for reason, count in reasons.items() if count}

    def lines(self) -> list[str]:
        dropped = self.dropped()
        return [
            f"readings: {self.readings} given; "
            + ("; ".join(f"{count} {reason}" for reason, count in dropped.items()) or "all used"),
            f"grid: {self.filled} points filled across short gaps ({self.drift} of them clock drift),"
            f" {self.missing} missing in {self.gaps} long gaps",
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
    targetable: BoolArray  # (T,) True where a value may be learned and scored (see the module docstring)
    warmup: BoolArray  # (T,) True in a sensor's warm-up: no window reads or predicts it
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
        """(T,) glucose where it may be learned and scored (``targetable``), NaN elsewhere."""
        return np.where(self.targetable, self.glucose, np.nan)


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
    drift = _drift_holes(observed, reading, records.glucose_at)
    censored = observed & ((grid <= SENSOR_LOW) | (grid >= SENSOR_HIGH))
    compression = observed & _compression_lows(grid)
    warmup = _warmup(observed, reading, records.glucose_at)
    duplicates = len(times) - len(np.unique(records.glucose_at))

    start = datetime.fromtimestamp(origin, UTC)
    return Series(
        start=start,
        first_reading=moment(int(records.glucose_at[0])),
        last_reading=moment(int(records.glucose_at[-1])),
        glucose=grid,
        observed=observed,
        targetable=(observed | drift) & ~censored & ~compression & ~warmup,
        warmup=warmup,
        reading=reading,
        carbs=_events(records.carbs_at, records.carbs, origin, length),
        insulin=_events(records.insulin_at, records.insulin, origin, length),
        records=records,
        tz=tz,
        report=SeriesReport(
            readings=len(glucose),
            out_of_range=records.out_of_range,
            duplicates=duplicates,
            crowded=len(index) - len(chosen) - duplicates,
            censored=int(censored.sum()),
            compression=int((compression & ~censored).sum()),
            warmup=int((warmup & observed & ~censored & ~compression).sum()),
            filled=int(filled.sum()),
            drift=int(drift.sum()),
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
        # Truncated, never rounded: 575 readings are 1.99 days, not the 2.00 that 2 days are refused for.
        days = math.floor(have / STEPS_PER_DAY * 100) / 100
        raise InsufficientData(
            f"{have} valid readings ({days:.2f} days of 5-minute readings);"
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


def _neighbours(observed: BoolArray) -> tuple[IntArray, IntArray]:
    """Per grid point, the index of the last observed point at or before it and the first at or after it.

    -1 and len(observed) where there is none.
    """
    length = len(observed)
    position = np.arange(length)
    before = np.maximum.accumulate(np.where(observed, position, -1))
    after = np.flip(np.minimum.accumulate(np.flip(np.where(observed, position, length))))
    return before, after


def _drift_holes(observed: BoolArray, reading: IntArray, at: IntArray) -> BoolArray:
    """(T,) empty grid points between two readings less than MAX_DRIFT apart: a drifting clock, no missed reading."""
    before, after = _neighbours(observed)
    inside = ~observed & (before >= 0) & (after < len(observed))
    apart = at[reading[np.where(inside, after, 0)]] - at[reading[np.where(inside, before, 0)]]
    hole: BoolArray = inside & (apart < MAX_DRIFT // timedelta(microseconds=1))
    return hole


def _compression_lows(grid: FloatArray) -> BoolArray:
    """(T,) the points of compression lows: a fall faster than COMPRESSION_FALL from one point to the next,
    then within COMPRESSION_RECOVERY a return to within COMPRESSION_MARGIN of the level before the fall.

    The dip is the points after the fall's start up to (not including) the first recovered point.
    """
    length = len(grid)
    ahead = int(COMPRESSION_RECOVERY / STEP)
    padded = np.concatenate([grid, np.full(ahead, np.nan)])
    # later[s, m]: the value m + 1 steps after s.
    later = np.lib.stride_tricks.sliding_window_view(padded[1:], ahead)[:length]
    with np.errstate(invalid="ignore"):
        fall = (grid - later[:, 0]) / (STEP.total_seconds() / 60) > COMPRESSION_FALL
        recovered = later >= (grid - COMPRESSION_MARGIN)[:, None]
    start = np.flatnonzero(fall & recovered.any(axis=1))
    stop = start + 1 + recovered[start].argmax(axis=1)  # the first recovered point
    depth = np.zeros(length + 1, dtype=np.int64)
    np.add.at(depth, start + 1, 1)
    np.add.at(depth, stop, -1)
    dip: BoolArray = np.cumsum(depth[:length]) > 0
    return dip


def _warmup(observed: BoolArray, reading: IntArray, at: IntArray) -> BoolArray:
    """(T,) the grid points within WARMUP of the first reading after a gap of at least SENSOR_START_GAP."""
    points = np.flatnonzero(observed)
    times = at[reading[points]]
    restart = points[1:][np.diff(times) >= SENSOR_START_GAP // timedelta(microseconds=1)]
    warm = np.zeros(len(observed) + 1, dtype=np.int64)
    np.add.at(warm, restart, 1)
    np.add.at(warm, np.minimum(restart + int(WARMUP / STEP), len(observed)), -1)
    during: BoolArray = np.cumsum(warm[:-1]) > 0
    return during


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
