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
"""

from __future__ import annotations

import itertools
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
MIN_DAYS: Final = 2.0
GLUCOSE_LOW, GLUCOSE_HIGH = (float(bound) for bound in GLUCOSE_RANGE_MG_DL)
_CARBS = KINDS[(LOINC, CARBOHYDRATE_CODE)]
_INSULIN = KINDS[(SNOMED, INSULIN_CODE)]

Reading = tuple[datetime, SupportsFloat]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


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
class Series:
    """One person's data on a 5-minute grid; index i is the time ``start + i * STEP``."""

    start: datetime  # UTC
    first_reading: datetime  # the earliest and latest reading kept, as given (UTC)
    last_reading: datetime
    glucose: FloatArray  # (T,) mg/dL, short gaps filled, NaN in long gaps
    observed: BoolArray  # (T,) True where a reading landed (not filled)
    carbs: FloatArray  # (T,) g per step
    insulin: FloatArray  # (T,) [iU] per step
    day_fraction: FloatArray  # (T,) local time of day in [0, 1)
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
    anchor: datetime | None = None,
) -> Series:
    """Put readings and events on a 5-minute grid (no volume check; see ``prepare``).

    ``anchor`` fixes the grid's phase (forecasting anchors at the latest
    reading); by default the readings' own phase. ``tz`` is the person's time
    zone, for the time of day.
    """
    times = np.array([_seconds(moment) for moment, _ in glucose], dtype=np.float64)
    values = np.array([_number(value) for _, value in glucose], dtype=np.float64)
    in_range = np.isfinite(values) & (values >= GLUCOSE_LOW) & (values <= GLUCOSE_HIGH)
    times, kept_values = times[in_range], values[in_range]
    if len(times) == 0:
        raise InsufficientData("no glucose readings within the physiological range")

    step = STEP.total_seconds()
    phase = _seconds(anchor) % step if anchor is not None else _circular_mean(times % step, step)
    origin = math.floor((times.min() - phase) / step + 0.5) * step + phase
    index = np.rint((times - origin) / step).astype(np.int64)
    length = int(index.max()) + 1

    # Nearest reading per grid point wins, first given on a tie: lexsort by (point, distance, input order).
    distance = np.abs(times - (origin + index * step))
    order = np.lexsort((np.arange(len(index)), distance, index))
    first = np.ones(len(order), dtype=bool)
    first[1:] = index[order][1:] != index[order][:-1]
    chosen = order[first]

    grid = np.full(length, np.nan)
    grid[index[chosen]] = kept_values[chosen]
    observed = np.isfinite(grid)
    filled, gaps = _fill_short_gaps(grid, int(MAX_FILLED_GAP / STEP) - 1)

    carb_grid, carbs_dropped = _events(carbs, origin, length, float(_CARBS.low), float(_CARBS.high))
    insulin_grid, insulin_dropped = _events(insulin, origin, length, float(_INSULIN.low), float(_INSULIN.high))
    start = datetime.fromtimestamp(origin, UTC)
    return Series(
        start=start,
        first_reading=datetime.fromtimestamp(float(times.min()), UTC),
        last_reading=datetime.fromtimestamp(float(times.max()), UTC),
        glucose=grid,
        observed=observed,
        carbs=carb_grid,
        insulin=insulin_grid,
        day_fraction=day_fractions(start, length, tz),
        report=SeriesReport(
            readings=len(values),
            out_of_range=int((~in_range).sum()),
            duplicates=len(index) - len(chosen),
            filled=filled,
            missing=int(np.isnan(grid).sum()),
            gaps=gaps,
            events_dropped=carbs_dropped + insulin_dropped,
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


def day_fractions(start: datetime, length: int, tz: tzinfo) -> FloatArray:
    """(length,) time of day in ``tz`` of each grid point, as a fraction of the day."""
    fractions = np.empty(length)
    for i in range(length):
        local = (start + i * STEP).astimezone(tz)
        fractions[i] = (local.hour * 3600 + local.minute * 60 + local.second) / 86400
    return fractions


def _seconds(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise GlucokitError(f"reading time {moment.isoformat()} has no time zone")
    return moment.timestamp()


def _number(value: SupportsFloat) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _circular_mean(offsets: FloatArray, period: float) -> float:
    """The mean phase of offsets on a circle, so that 4:59 and 0:01 average to 0:00 rather than 2:30."""
    angle = 2 * np.pi * offsets / period
    mean = math.atan2(float(np.sin(angle).mean()), float(np.cos(angle).mean()))
    return (mean / (2 * np.pi) * period) % period


def _fill_short_gaps(grid: FloatArray, max_missing: int) -> tuple[int, int]:
    """Interpolate NaN runs of at most ``max_missing`` points in place; (points filled, long gaps left)."""
    known = np.flatnonzero(np.isfinite(grid))
    filled = gaps = 0
    for left, right in itertools.pairwise(known):
        missing = int(right - left - 1)
        if missing == 0:
            continue
        if missing > max_missing:
            gaps += 1
            continue
        between = np.arange(left + 1, right)
        grid[between] = np.interp(between, [left, right], [grid[left], grid[right]])
        filled += missing
    return filled, gaps


def _events(events: Sequence[Reading], origin: float, length: int, low: float, high: float) -> tuple[FloatArray, int]:
    """(length,) amounts summed per grid point, and how many records were dropped as implausible."""
    grid = np.zeros(length)
    step = STEP.total_seconds()
    dropped = 0
    for moment, value in events:
        amount = _number(value)
        if not (math.isfinite(amount) and low <= amount <= high):
            dropped += 1
            continue
        point = round((_seconds(moment) - origin) / step)
        if 0 <= point < length:
            grid[point] += amount
    return grid, dropped
