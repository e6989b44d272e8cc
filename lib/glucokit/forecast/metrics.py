"""Forecast accuracy per horizon: RMSE, MAE, MARD, Clarke error grid zones, band coverage; conformal bands."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from glucokit.forecast.series import FloatArray
from glucokit.forecast.windows import HORIZON_MINUTES

CLARKE_ZONES: Final = ("A", "B", "C", "D", "E")


def clarke_zones(reference: FloatArray, prediction: FloatArray) -> npt.NDArray[np.int64]:
    """Clarke error grid zone of each (reference, prediction) pair in mg/dL: 0..4 for A..E.

    Boundaries of Clarke WL, Cox D, Gonder-Frederick LA, Carter W, Pohl SL,
    "Evaluating clinical accuracy of systems for self-monitoring of blood
    glucose", Diabetes Care 1987;10(5):622-628, in the usual reading of its
    figure (first match wins, in this order):
    A: both <= 70, or the prediction within 20 % of the reference;
    E: reference >= 180 and prediction <= 70, or reference <= 70 and prediction >= 180;
    C: 70 <= reference <= 290 and prediction >= reference + 110,
       or 130 <= reference <= 180 and prediction <= 7/5 reference - 182;
    D: reference >= 240 and 70 <= prediction <= 180,
       or reference <= 70 and 70 <= prediction <= 180 (the part zone A leaves);
    B: everything else.
    """
    x, y = np.asarray(reference, dtype=np.float64), np.asarray(prediction, dtype=np.float64)
    zone = np.full(np.broadcast(x, y).shape, 1, dtype=np.int64)  # B unless another zone claims it
    a = ((x <= 70) & (y <= 70)) | ((y >= 0.8 * x) & (y <= 1.2 * x))
    e = ((x >= 180) & (y <= 70)) | ((x <= 70) & (y >= 180))
    c = ((x >= 70) & (x <= 290) & (y >= x + 110)) | ((x >= 130) & (x <= 180) & (y <= 7 / 5 * x - 182))
    d = ((x >= 240) & (y >= 70) & (y <= 180)) | ((x <= 70) & (y >= 70) & (y <= 180))
    # Assigned in reverse order of precedence so that the first match wins.
    zone[d] = 3
    zone[c] = 2
    zone[e] = 4
    zone[a] = 0
    return zone


def conformal_quantile(residuals: FloatArray, coverage: float) -> float:
    """Split-conformal quantile of absolute residuals: the ceil((n+1) coverage)-th smallest.

    With n exchangeable calibration residuals, |error| <= q holds for a new
    point with probability >= coverage (Vovk et al. 2005; Lei et al. 2018,
    "Distribution-free predictive inference for regression", JASA 113:1094).
    Infinite when n is too small for that guarantee.
    """
    ordered = np.sort(np.abs(np.asarray(residuals, dtype=np.float64)))
    rank = math.ceil((len(ordered) + 1) * coverage)
    return float(ordered[rank - 1]) if rank <= len(ordered) else math.inf


def band(prediction: FloatArray, quantiles: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(low, high) = prediction -/+ the horizon's quantile, low clamped at 0 mg/dL."""
    return np.maximum(prediction - quantiles, 0.0), prediction + quantiles


@dataclass(frozen=True)
class Metrics:
    """One forecaster on one split, one value per horizon (5..60 min)."""

    windows: int
    rmse: tuple[float, ...]  # mg/dL
    mae: tuple[float, ...]  # mg/dL
    mard: tuple[float, ...]  # % of the reference
    clarke: tuple[tuple[float, ...], ...]  # per horizon, fractions in zones A..E
    coverage: tuple[float, ...] | None  # fraction of targets inside the band, when there are bands
    gain: tuple[float, ...] | None  # 1 - RMSE / persistence RMSE on the same windows

    def at(self, minutes: int) -> dict[str, Any]:
        """The metrics at one horizon, by name."""
        h = HORIZON_MINUTES.index(minutes)
        values: dict[str, Any] = {
            "rmse": self.rmse[h],
            "mae": self.mae[h],
            "mard": self.mard[h],
            "clarke": dict(zip(CLARKE_ZONES, self.clarke[h], strict=True)),
        }
        if self.coverage is not None:
            values["coverage"] = self.coverage[h]
        if self.gain is not None:
            values["gain"] = self.gain[h]
        return values

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, per horizon lists in HORIZON_MINUTES order."""
        return {
            "windows": self.windows,
            "horizon_minutes": list(HORIZON_MINUTES),
            "rmse": list(self.rmse),
            "mae": list(self.mae),
            "mard": list(self.mard),
            "clarke": [dict(zip(CLARKE_ZONES, zones, strict=True)) for zones in self.clarke],
            "coverage": None if self.coverage is None else list(self.coverage),
            "gain_over_persistence": None if self.gain is None else list(self.gain),
        }


def evaluate(
    prediction: FloatArray,
    target: FloatArray,
    *,
    quantiles: FloatArray | None = None,
    persistence_rmse: FloatArray | None = None,
) -> Metrics:
    """Metrics of (n, horizons) predictions against targets, with band coverage and gain when given."""
    error = prediction - target  # (n, horizons)
    rmse = np.sqrt(np.mean(error**2, axis=0))
    zones = clarke_zones(target, prediction)  # (n, horizons)
    clarke = np.stack([np.mean(zones == zone, axis=0) for zone in range(len(CLARKE_ZONES))], axis=1)
    coverage = None
    if quantiles is not None:
        low, high = band(prediction, quantiles)
        coverage = _floats(np.mean((target >= low) & (target <= high), axis=0))
    return Metrics(
        windows=len(target),
        rmse=_floats(rmse),
        mae=_floats(np.mean(np.abs(error), axis=0)),
        mard=_floats(100 * np.mean(np.abs(error) / target, axis=0)),
        clarke=tuple(_floats(row) for row in clarke),
        coverage=coverage,
        gain=None if persistence_rmse is None else _floats(1 - rmse / persistence_rmse),
    )


def _floats(values: FloatArray) -> tuple[float, ...]:
    return tuple(float(value) for value in values)
