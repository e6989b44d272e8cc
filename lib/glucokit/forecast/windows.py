"""Supervised windows cut from a Series, and the chronological train/validation/test split.

A window ending at grid index i has as inputs the 12 readings i-11..i (one
hour), the time of day at i and the carbohydrate/insulin amounts of the last
``EVENT_STEPS`` steps; its targets are the readings at i+1..i+12 (5..60 min).
It is used only if every input is a number and every target an observed
reading (see series.py for filled points).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from glucokit.forecast.series import FloatArray, Series

INPUT_STEPS: Final = 12  # one hour of readings
HORIZONS: Final = 12  # 5, 10, ..., 60 minutes
HORIZON_MINUTES: Final = tuple(5 * (h + 1) for h in range(HORIZONS))
# Carbohydrate and insulin act for hours, longer than the input hour (rapid
# insulin for 4-5 h, a meal's carbohydrate for 2-4 h): windows carry the
# amounts of the last 4 hours. On the reference protocol 4 h did better on
# validation than 3 h and about as well as 6 h.
EVENT_STEPS: Final = 48
# The reference protocol: days 1-8 train, 9-10 validation, 11-14 test.
SPLIT_FRACTIONS: Final = (8 / 14, 2 / 14, 4 / 14)
SPLITS: Final = ("train", "validation", "test")

IndexArray = npt.NDArray[np.int64]


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


@dataclass(frozen=True)
class Windows:
    inputs: Inputs
    target: FloatArray  # (n, HORIZONS) mg/dL at +5..+60 min
    end: IndexArray  # (n,) grid index of each window's last reading

    def __len__(self) -> int:
        return len(self.target)


@dataclass(frozen=True)
class Split:
    """Windows per split and the grid index ranges [start, stop) they were cut from."""

    train: Windows
    validation: Windows
    test: Windows
    bounds: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def history(series: Series, end: IndexArray) -> Inputs:
    """The inputs of windows ending at ``end``; event steps before the series' start count as none.

    Event history may reach back before a split's start: it is the past, as it
    would be when forecasting live, and never anything a target could leak into.
    """
    steps = np.arange(-INPUT_STEPS + 1, 1)
    events = end[:, None] + np.arange(-EVENT_STEPS + 1, 1)
    before = events < 0
    return Inputs(
        glucose=series.glucose[end[:, None] + steps],
        day_fraction=series.day_fraction[end],
        carbs=np.where(before, 0.0, series.carbs[np.maximum(events, 0)]),
        insulin=np.where(before, 0.0, series.insulin[np.maximum(events, 0)]),
    )


def windows(series: Series, start: int, stop: int) -> Windows:
    """All usable windows whose readings, inputs and targets, lie within grid indices [start, stop)."""
    end = np.arange(start + INPUT_STEPS - 1, stop - HORIZONS, dtype=np.int64)
    glucose = series.glucose[end[:, None] + np.arange(-INPUT_STEPS + 1, 1)]
    target = series.targets[end[:, None] + np.arange(1, HORIZONS + 1)]
    usable = np.isfinite(glucose).all(axis=1) & np.isfinite(target).all(axis=1)
    end = end[usable]
    return Windows(inputs=history(series, end), target=target[usable], end=end)


def split(series: Series, fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> Split:
    """Cut the span from the first to the last reading by time into train, validation and test.

    Each split's windows lie wholly inside it, so no window straddles a
    boundary (the last hour before a boundary is no split's target).
    """
    if len(fractions) != 3 or min(fractions) <= 0:
        raise ValueError(f"three positive split fractions are needed, not {fractions!r}")
    readings = np.flatnonzero(series.observed)
    first, last = int(readings[0]), int(readings[-1])
    total = sum(fractions)
    # 14 days of readings span 4032 steps: the cuts fall on midnight after day 8 and day 10.
    cut_1 = first + round((last - first) * fractions[0] / total)
    cut_2 = first + round((last - first) * (fractions[0] + fractions[1]) / total)
    bounds = ((first, cut_1), (cut_1, cut_2), (cut_2, last + 1))
    train, validation, test = (windows(series, start, stop) for start, stop in bounds)
    return Split(train=train, validation=validation, test=test, bounds=bounds)
