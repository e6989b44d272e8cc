"""The feature matrix that ridge and the network read, and which blocks of it a model uses."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np

from glucokit.forecast.series import FloatArray
from glucokit.forecast.windows import EVENT_STEPS, INPUT_STEPS, Inputs

# Events are summed per 15 minutes: their timing within a quarter hour hardly
# matters for the next hour, and 16 sums per kind keep the models small.
EVENT_BIN_STEPS: Final = 3


@dataclass(frozen=True)
class FeatureSpec:
    """Which inputs a model reads; the latest hour of glucose always."""

    time_of_day: bool = True
    carbs: bool = False
    insulin: bool = False

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeatureSpec:
        return cls(**config)

    def config(self) -> dict[str, Any]:
        return asdict(self)

    def blocks(self) -> list[str]:
        """Human-readable names of the feature blocks, for the outcome and the log."""
        blocks = ["glucose: last reading and the 11 before it as differences to it (1 h)"]
        if self.time_of_day:
            blocks.append("time of day (sin, cos)")
        hours = EVENT_STEPS * 5 // 60
        if self.carbs:
            blocks.append(f"carbohydrate g per 15 min, last {hours} h")
        if self.insulin:
            blocks.append(f"insulin [iU] per 15 min, last {hours} h")
        return blocks

    @property
    def width(self) -> int:
        bins = EVENT_STEPS // EVENT_BIN_STEPS
        return INPUT_STEPS + 2 * self.time_of_day + bins * (self.carbs + self.insulin)

    def matrix(self, inputs: Inputs) -> FloatArray:
        """(n, width): differences to the latest reading carry the trend; the latest itself the level."""
        glucose = inputs.glucose  # (n, INPUT_STEPS), oldest first
        columns = [glucose[:, :-1] - glucose[:, -1:], glucose[:, -1:]]
        if self.time_of_day:
            columns.append(inputs.time_of_day())
        if self.carbs:
            columns.append(_binned(inputs.carbs))
        if self.insulin:
            columns.append(_binned(inputs.insulin))
        return np.concatenate(columns, axis=1)


def _binned(amounts: FloatArray) -> FloatArray:
    """(n, EVENT_STEPS) -> (n, EVENT_STEPS / EVENT_BIN_STEPS) sums, oldest first."""
    binned: FloatArray = amounts.reshape(len(amounts), -1, EVENT_BIN_STEPS).sum(axis=2)
    return binned


def standardizer(matrix: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Column mean and scale of a (training) matrix; a constant column gets scale 1 so it stays 0."""
    scale = matrix.std(axis=0)
    return matrix.mean(axis=0), np.where(scale > 0, scale, 1.0)
