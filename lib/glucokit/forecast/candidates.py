"""The forecasters a person's champion is picked from, behind one small interface.

Each forecaster predicts the readings 5..60 minutes after the latest one, in
mg/dL, and exports what it learned as a ``ModelState``: a JSON-able config and
named tensors (safetensors-ready), from which ``restore`` rebuilds it to
predict identically. The network lives in model.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import torch

from glucokit.forecast.features import FeatureSpec, standardizer
from glucokit.forecast.series import FloatArray
from glucokit.forecast.windows import HORIZONS, Inputs, Windows

# Nightscout's AR2 forecast (cgm-remote-monitor, lib/plugins/ar2.js): an AR(2)
# model of y = ln(BG / 140) per 5-minute step, predictions clamped to 36-400
# mg/dL. The clamp is kept: a CGM reports nothing outside 40-400 (LOW/HIGH), so
# a forecast beyond it cannot be checked against a reading.
AR2_COEFFICIENTS: Final = (-0.723, 1.716)  # (y[t-1], y[t])
AR2_REFERENCE_MG_DL: Final = 140.0
AR2_CLAMP_MG_DL: Final = (36.0, 400.0)
# Ridge penalties to try, per training window (the penalty is lambda * n on
# standardized features, so a choice means the same for 500 or 5,000 windows).
RIDGE_LAMBDAS: Final = tuple(float(10.0**exponent) for exponent in np.arange(-5.0, 1.5, 0.5))


@dataclass(frozen=True)
class ModelState:
    """A trained model as data: ``family`` picks the class, ``config`` is JSON-able, ``tensors`` hold parameters."""

    family: str
    config: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


class Forecaster(Protocol):
    name: str

    def fit(self, train: Windows, validation: Windows) -> str:
        """Learn from train, choose what needs choosing on validation; returns one line for the training log."""

    def predict(self, inputs: Inputs) -> FloatArray:
        """(n, HORIZONS) mg/dL at +5..+60 min."""

    def export(self) -> ModelState: ...

    def feature_blocks(self) -> list[str]:
        """What it reads, in words."""


def rmse(prediction: FloatArray, target: FloatArray) -> FloatArray:
    """(HORIZONS,) root mean squared error per horizon."""
    return np.asarray(np.sqrt(np.mean((prediction - target) ** 2, axis=0)))


class Persistence:
    """Glucose stays where it is: the floor any forecaster has to beat."""

    name = "persistence"

    def fit(self, train: Windows, validation: Windows) -> str:
        return "persistence: nothing to fit"

    def predict(self, inputs: Inputs) -> FloatArray:
        return np.repeat(inputs.last[:, None], HORIZONS, axis=1)

    def export(self) -> ModelState:
        return ModelState("persistence")

    def feature_blocks(self) -> list[str]:
        return ["glucose: the latest reading"]


class AR2:
    """Nightscout's AR2 forecast from the last two readings, iterated one 5-minute step at a time."""

    name = "ar2"

    def fit(self, train: Windows, validation: Windows) -> str:
        return "ar2: published Nightscout coefficients, nothing to fit"

    def predict(self, inputs: Inputs) -> FloatArray:
        previous = np.log(inputs.glucose[:, -2] / AR2_REFERENCE_MG_DL)  # (n,)
        current = np.log(inputs.glucose[:, -1] / AR2_REFERENCE_MG_DL)  # (n,)
        steps = []
        for _ in range(HORIZONS):
            previous, current = current, AR2_COEFFICIENTS[0] * previous + AR2_COEFFICIENTS[1] * current
            steps.append(AR2_REFERENCE_MG_DL * np.exp(current))
        return np.clip(np.stack(steps, axis=1), *AR2_CLAMP_MG_DL)

    def export(self) -> ModelState:
        return ModelState("ar2")

    def feature_blocks(self) -> list[str]:
        return ["glucose: the last two readings"]


class Ridge:
    """Ridge regression per horizon of the change from the latest reading, closed form.

    Predicting the change makes the penalty shrink towards persistence, not
    towards zero glucose. The penalty is chosen on validation (mean RMSE over
    horizons); the weights are those fitted on train alone, so validation
    residuals stay honest for the conformal bands.
    """

    def __init__(self, name: str, spec: FeatureSpec, lambdas: tuple[float, ...] = RIDGE_LAMBDAS) -> None:
        self.name = name
        self.spec = spec
        self.lambdas = lambdas
        self.penalty = math.nan
        self.mean = self.scale = self.weight = self.bias = np.zeros(0)

    def fit(self, train: Windows, validation: Windows) -> str:
        features = self.spec.matrix(train.inputs)  # (n, d)
        self.mean, self.scale = standardizer(features)
        z = (features - self.mean) / self.scale  # (n, d)
        change = train.target - train.inputs.last[:, None]  # (n, HORIZONS)
        self.bias = change.mean(axis=0)
        gram, moment = z.T @ z, z.T @ (change - self.bias)  # (d, d), (d, HORIZONS)
        z_validation = self._standardized(validation.inputs)  # the same for every penalty
        best = math.inf
        for penalty in self.lambdas:
            weight = np.asarray(np.linalg.solve(gram + penalty * len(z) * np.eye(len(gram)), moment), dtype=np.float64)
            score = float(rmse(self._predict(validation.inputs, z_validation, weight), validation.target).mean())
            if score < best:
                best, self.penalty, self.weight = score, penalty, weight
        return f"{self.name}: lambda {self.penalty:.0e} chosen on validation (mean RMSE {best:.2f} mg/dL)"

    def predict(self, inputs: Inputs) -> FloatArray:
        return self._predict(inputs, self._standardized(inputs), self.weight)

    def _standardized(self, inputs: Inputs) -> FloatArray:
        """(n, d) the inputs' features, standardized with train's scaling."""
        return np.asarray((self.spec.matrix(inputs) - self.mean) / self.scale)

    def _predict(self, inputs: Inputs, z: FloatArray, weight: FloatArray) -> FloatArray:
        return np.asarray(inputs.last[:, None] + z @ weight + self.bias)

    def export(self) -> ModelState:
        arrays = {"mean": self.mean, "scale": self.scale, "weight": self.weight, "bias": self.bias}
        return ModelState(
            "ridge",
            {"name": self.name, "features": self.spec.config(), "lambda": self.penalty, "lambdas": list(self.lambdas)},
            {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in arrays.items()},
        )

    def feature_blocks(self) -> list[str]:
        return self.spec.blocks()

    @classmethod
    def from_state(cls, state: ModelState) -> Ridge:
        ridge = cls(
            state.config["name"], FeatureSpec.from_config(state.config["features"]), tuple(state.config["lambdas"])
        )
        ridge.penalty = float(state.config["lambda"])
        ridge.mean, ridge.scale, ridge.weight, ridge.bias = (
            state.tensors[key].numpy().astype(np.float64) for key in ("mean", "scale", "weight", "bias")
        )
        return ridge
