"""Forecast accuracy per horizon: RMSE, MAE, MARD, gRMSE, Clarke and Parkes error grid zones, time lag,
low and high detection, band coverage (overall and per glucose range); the split-conformal quantile."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from glucokit.forecast.series import FloatArray
from glucokit.forecast.windows import HORIZON_MINUTES
from glucokit.units import TARGET_RANGE_MG_DL

CLARKE_ZONES: Final = ("A", "B", "C", "D", "E")
LOW, HIGH = (float(bound) for bound in TARGET_RANGE_MG_DL)
# Band coverage is reported separately for readings below, inside and above the target range.
RANGES: Final = ("below_70", "70_180", "above_180")


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


Polyline = tuple[tuple[float, float], ...]

# The Parkes (consensus) error grid: Parkes JL, Slatin SL, Pardo S, Ginsberg BH,
# "A new consensus error grid to evaluate the clinical significance of
# inaccuracies in the measurement of blood glucose", Diabetes Care
# 2000;23(8):1143-1148. Its boundaries as (reference, prediction) vertices in
# mg/dL, from Pfützner A, Klonoff DC, Pardo S, Parkes JL, "Technical aspects
# of the Parkes error grid", J Diabetes Sci Technol 2013;7(5):1275-1281,
# Table 1. Per zone B..E, the line above which (upper) and below which (lower)
# a point lies in that zone or a worse one; beyond the last vertex a line goes
# on with its last slope. A lower line holds from its first vertex's reference
# on (the table's vertical foot down to 0 mg/dL is left implicit). Type 1 has
# no lower zone E.
PARKES: Final[dict[int, dict[str, tuple[Polyline, Polyline | None]]]] = {
    1: {
        "B": (((0, 50), (30, 50), (140, 170), (280, 380), (430, 550)), ((50, 30), (170, 145), (385, 300), (550, 450))),
        "C": (((0, 60), (30, 60), (50, 80), (70, 110), (260, 550)), ((120, 30), (260, 130), (550, 250))),
        "D": (((0, 100), (25, 100), (50, 125), (80, 215), (125, 550)), ((250, 40), (550, 150))),
        "E": (((0, 150), (35, 155), (50, 550)), None),
    },
    2: {
        "B": (((0, 50), (30, 50), (230, 330), (440, 550)), ((50, 30), (90, 80), (330, 230), (550, 450))),
        "C": (((0, 60), (30, 60), (280, 550)), ((90, 0), (260, 130), (550, 250))),
        "D": (((0, 80), (25, 80), (35, 90), (125, 550)), ((250, 40), (410, 110), (550, 160))),
        "E": (((0, 200), (35, 200), (50, 550)), None),
    },
}
PARKES_ZONES: Final = ("A", "B", "C", "D", "E")

# gRMSE's penalty, from Del Favero S, Facchinetti A, Cobelli C, "A glucose-
# specific metric to assess predictors and identify models", IEEE Trans Biomed
# Eng 2012;59(5):1281-1290, with the parameters of its authors' AGATA toolbox:
# an over-estimate of more than 10 mg/dL counts up to 1 + 1.5 times when the
# reading is low (fully below 50, fading out by 80 mg/dL), an under-estimate of
# more than 20 mg/dL up to 1 + 1 times when it is high (from 250, fully above
# 350 mg/dL). public.model_daily_accuracy computes the same in SQL
# (private.grmse_penalty, migration 20261205120200; tests hold the two equal).
GRMSE_LOW: Final = {"weight": 1.5, "margin": 10.0, "reading": 80.0, "fade": 30.0}
GRMSE_HIGH: Final = {"weight": 1.0, "margin": 20.0, "reading": 250.0, "fade": 100.0}


def parkes_zones(reference: FloatArray, prediction: FloatArray, diabetes_type: int = 1) -> npt.NDArray[np.int64]:
    """Parkes error grid zone of each (reference, prediction) pair in mg/dL, 0..4 for A..E, for type 1 or 2.

    A point on a boundary stays in the milder zone.
    """
    if diabetes_type not in PARKES:
        raise ValueError(f"the Parkes error grid is for diabetes type 1 or 2, not {diabetes_type!r}")
    x, y = np.asarray(reference, dtype=np.float64), np.asarray(prediction, dtype=np.float64)
    zone = np.zeros(np.broadcast(x, y).shape, dtype=np.int64)
    # Milder zones first, so that a worse zone a point also lies in wins.
    for index, (upper, lower) in enumerate(PARKES[diabetes_type].values(), start=1):
        zone[y > _polyline(x, upper)] = index
        if lower is not None:
            zone[(x >= lower[0][0]) & (y < _polyline(x, lower))] = index
    return zone


def _polyline(x: FloatArray, vertices: Polyline) -> FloatArray:
    """The line through ``vertices`` at ``x``, level before the first vertex and with its last slope after the last."""
    xs, ys = (np.array(column, dtype=np.float64) for column in zip(*vertices, strict=True))
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return np.where(x > xs[-1], ys[-1] + slope * (x - xs[-1]), np.interp(x, xs, ys))


def _smooth_step(x: FloatArray) -> FloatArray:
    """0 for x <= -1, 1 for x >= 1, in between the quartic of Del Favero et al. 2012 (smooth at both ends)."""
    xi = np.clip(x, -1.0, 1.0)
    step = (xi >= 1).astype(np.float64)  # the ends, where the quartic is exactly 0 and 1
    inside = (xi > -1) & (xi < 1)
    xi = xi[inside]
    fourth, third = xi**4, 2 * xi**3
    step[inside] = np.where(xi <= 0, (-fourth - third + 2 * xi + 1) / 2, (fourth - third + 2 * xi + 1) / 2)
    return step


def grmse_penalty(reference: FloatArray, prediction: FloatArray) -> FloatArray:
    """gRMSE's weight of each squared error: 1, up to 2.5 for over-estimated lows and 2 for under-estimated highs."""
    g, p = np.asarray(reference, dtype=np.float64), np.asarray(prediction, dtype=np.float64)
    low, high = GRMSE_LOW, GRMSE_HIGH
    # A smooth indicator of "x <= a - d" (1) fading to "x >= a" (0), and of "x >= a + d" (1) from "x <= a" (0).
    over = _smooth_step(-2 / low["margin"] * (g - p + low["margin"] / 2))
    is_low = _smooth_step(-2 / low["fade"] * (g - low["reading"] + low["fade"] / 2))
    under = _smooth_step(2 / high["margin"] * (g - p - high["margin"] / 2))
    is_high = _smooth_step(2 / high["fade"] * (g - high["reading"] - high["fade"] / 2))
    return np.asarray(1 + low["weight"] * over * is_low + high["weight"] * under * is_high)


def grmse(reference: FloatArray, prediction: FloatArray) -> FloatArray:
    """Glucose-specific RMSE over the first axis (Del Favero et al. 2012), mg/dL."""
    g, p = np.asarray(reference, dtype=np.float64), np.asarray(prediction, dtype=np.float64)
    return np.asarray(np.sqrt(np.mean((p - g) ** 2 * grmse_penalty(g, p), axis=0)))


def time_lag(prediction: FloatArray, target: FloatArray, origin: FloatArray) -> tuple[float | None, ...]:
    """Per horizon, the delay in minutes (0..the horizon) by which the readings best match the forecasts.

    For horizon h, the forecasts of the windows are correlated with the
    readings taken 0, 5, ..., h minutes before their target time (the last
    being the reading forecast from, ``origin``); the shift of the highest
    correlation is the lag. A forecast that only repeats the latest reading
    lags by its whole horizon; a perfect one by 0. None where the forecasts
    or readings do not vary.
    """
    readings = np.column_stack([np.asarray(origin, dtype=np.float64), np.asarray(target, dtype=np.float64)])
    # Column h + 1 of ``readings`` is the target (shift 0), column 0 the origin (shift h + 1 steps).
    scores = _correlations(np.asarray(prediction, dtype=np.float64), readings)  # (horizons, horizons + 1)
    lags: list[float | None] = []
    for h in range(prediction.shape[1]):
        shifted = scores[h, h + 1 :: -1]  # by shift 0..h + 1
        best = int(np.argmax(shifted)) if np.isfinite(shifted).any() else None
        lags.append(None if best is None else float(HORIZON_MINUTES[0] * best))
    return tuple(lags)


def _correlations(a: FloatArray, b: FloatArray) -> FloatArray:
    """Pearson correlation of every column of ``a`` with every column of ``b``, as ``np.corrcoef`` computes it
    (to rounding); -inf where a column does not vary (or there are fewer than two rows)."""
    if len(a) < 2:
        return np.full((a.shape[1], b.shape[1]), -math.inf)
    # Each column as a contiguous row, so that its mean and sd are the sums ``np.corrcoef`` and ``np.std`` of
    # the column alone take: the same columns count as flat, and a flat one centres the same.
    rows_a, rows_b = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    flat = (np.std(rows_a, axis=1) == 0)[:, None] | (np.std(rows_b, axis=1) == 0)[None, :]
    centred_a, centred_b = (rows - np.mean(rows, axis=1)[:, None] for rows in (rows_a, rows_b))
    scale = 1 / (len(a) - 1)
    spread_a, spread_b = (np.sqrt(np.sum(rows * rows, axis=1) * scale) for rows in (centred_a, centred_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.clip((centred_a @ centred_b.T) * scale / spread_a[:, None] / spread_b[None, :], -1, 1)
    scores[flat] = -math.inf
    return np.asarray(scores)


@dataclass(frozen=True)
class Detection:
    """Lows (reading < 70 mg/dL) or highs (> 180) at one horizon: how many there were, were forecast, and both."""

    events: int  # readings in the range
    forecast: int  # forecasts in the range
    detected: int  # both

    @property
    def sensitivity(self) -> float | None:
        return self.detected / self.events if self.events else None

    @property
    def precision(self) -> float | None:
        return self.detected / self.forecast if self.forecast else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "forecast": self.forecast,
            "detected": self.detected,
            "sensitivity": self.sensitivity,
            "precision": self.precision,
        }


def detection(prediction: FloatArray, target: FloatArray) -> tuple[tuple[Detection, ...], tuple[Detection, ...]]:
    """Per horizon, the detection of lows (< 70 mg/dL) and of highs (> 180)."""
    lows: list[Detection] = []
    highs: list[Detection] = []
    for h in range(target.shape[1]):
        for found, event, forecast in (
            (lows, target[:, h] < LOW, prediction[:, h] < LOW),
            (highs, target[:, h] > HIGH, prediction[:, h] > HIGH),
        ):
            found.append(Detection(int(event.sum()), int(forecast.sum()), int((event & forecast).sum())))
    return tuple(lows), tuple(highs)


def ranges(target: FloatArray) -> dict[str, npt.NDArray[np.bool_]]:
    """Which targets lie below, inside and above the target range (``RANGES``)."""
    return dict(zip(RANGES, (target < LOW, (target >= LOW) & (target <= HIGH), target > HIGH), strict=True))


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
    grmse: tuple[float, ...]  # mg/dL, glucose-specific RMSE
    parkes: dict[int, tuple[tuple[float, ...], ...]]  # type -> per horizon A..E
    lows: tuple[Detection, ...]  # per horizon, readings < 70 mg/dL
    highs: tuple[Detection, ...]  # per horizon, readings > 180 mg/dL
    lag: tuple[float | None, ...] | None  # minutes per horizon, when the origins' readings were given
    # Per glucose range of the reading (RANGES): coverage per horizon (None: no reading there), and readings.
    coverage_by_range: dict[str, tuple[float | None, ...]] | None
    range_counts: dict[str, tuple[int, ...]] | None

    def range_coverage(self, name: str) -> float | None:
        """Band coverage of the readings in one glucose range (RANGES), all horizons pooled; None: no such reading."""
        if self.coverage_by_range is None or self.range_counts is None:
            return None
        pairs = [(c, n) for c, n in zip(self.coverage_by_range[name], self.range_counts[name], strict=True) if n]
        return sum(c * n for c, n in pairs if c is not None) / sum(n for _, n in pairs) if pairs else None

    def at(self, minutes: int) -> dict[str, Any]:
        """The metrics at one horizon, by name."""
        h = HORIZON_MINUTES.index(minutes)
        values: dict[str, Any] = {
            "rmse": self.rmse[h],
            "mae": self.mae[h],
            "mard": self.mard[h],
            "grmse": self.grmse[h],
            "clarke": dict(zip(CLARKE_ZONES, self.clarke[h], strict=True)),
            **{f"parkes_type{t}": dict(zip(PARKES_ZONES, zones[h], strict=True)) for t, zones in self.parkes.items()},
            "lows": self.lows[h].as_dict(),
            "highs": self.highs[h].as_dict(),
        }
        if self.lag is not None:
            values["lag_minutes"] = self.lag[h]
        if self.coverage is not None:
            values["coverage"] = self.coverage[h]
        if self.coverage_by_range is not None:
            values["coverage_by_range"] = {name: rows[h] for name, rows in self.coverage_by_range.items()}
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
            "grmse": list(self.grmse),
            "clarke": [dict(zip(CLARKE_ZONES, zones, strict=True)) for zones in self.clarke],
            **{
                f"parkes_type{t}": [dict(zip(PARKES_ZONES, row, strict=True)) for row in zones]
                for t, zones in self.parkes.items()
            },
            "lows": [found.as_dict() for found in self.lows],
            "highs": [found.as_dict() for found in self.highs],
            "lag_minutes": None if self.lag is None else list(self.lag),
            "coverage": None if self.coverage is None else list(self.coverage),
            "coverage_by_range": None
            if self.coverage_by_range is None
            else {name: list(rows) for name, rows in self.coverage_by_range.items()},
            "range_counts": None
            if self.range_counts is None
            else {name: list(counts) for name, counts in self.range_counts.items()},
            "gain_over_persistence": None if self.gain is None else list(self.gain),
        }


def evaluate(
    prediction: FloatArray,
    target: FloatArray,
    *,
    bands: tuple[FloatArray, FloatArray] | None = None,
    origin: FloatArray | None = None,
    persistence_rmse: FloatArray | None = None,
) -> Metrics:
    """Metrics of (n, horizons) predictions against targets.

    Band coverage when given the bands (``bands``: low and high per window
    and horizon); the time
    lag when given each window's latest reading (``origin``); the gain over
    persistence when given its RMSE.
    """
    error = prediction - target  # (n, horizons)
    rmse = np.sqrt(np.mean(error**2, axis=0))
    lows, highs = detection(prediction, target)
    coverage = by_range = counts = None
    if bands is not None:
        low, high = bands
        inside = (target >= low) & (target <= high)
        coverage = _floats(np.mean(inside, axis=0))
        found = ranges(target)
        by_range = {name: _share(inside, rows) for name, rows in found.items()}
        counts = {name: tuple(int(n) for n in rows.sum(axis=0)) for name, rows in found.items()}
    return Metrics(
        windows=len(target),
        rmse=_floats(rmse),
        mae=_floats(np.mean(np.abs(error), axis=0)),
        mard=_floats(100 * np.mean(np.abs(error) / target, axis=0)),
        clarke=_zone_shares(clarke_zones(target, prediction)),
        coverage=coverage,
        gain=None if persistence_rmse is None else _floats(1 - rmse / persistence_rmse),
        grmse=_floats(grmse(target, prediction)),
        parkes={t: _zone_shares(parkes_zones(target, prediction, t)) for t in PARKES},
        lows=lows,
        highs=highs,
        lag=None if origin is None else time_lag(prediction, target, origin),
        coverage_by_range=by_range,
        range_counts=counts,
    )


def _zone_shares(zones: npt.NDArray[np.int64]) -> tuple[tuple[float, ...], ...]:
    """Per horizon, the fraction of (n, horizons) zone indices in each of the five zones."""
    return tuple(_floats(row) for row in np.stack([np.mean(zones == zone, axis=0) for zone in range(5)], axis=1))


def _share(inside: npt.NDArray[np.bool_], rows: npt.NDArray[np.bool_]) -> tuple[float | None, ...]:
    """Per horizon, the fraction of ``rows`` that are ``inside``; None where there are no rows."""
    return tuple(float(inside[rows[:, h], h].mean()) if rows[:, h].any() else None for h in range(inside.shape[1]))


def _floats(values: FloatArray) -> tuple[float, ...]:
    return tuple(float(value) for value in values)
