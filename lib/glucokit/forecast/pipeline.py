"""Train a person's forecaster and forecast from its saved state.

``train_person`` fits the candidates of the chosen model families (all four by
default) on the first 8/14 of the person's usable windows, picks the champion on
the next 2/14 (see below), calibrates 80 % bands on the validation residuals
(split conformal, per horizon and side: bands.py) and scores every candidate, and persistence and
AR2 as references, on the last 4/14 (the split: windows.py), where the bands
adapt to each outcome once it is known, as they do when served (adaptive
conformal inference, bands.py); the champion's band widths at the end of the
test period are the ones it starts serving with. Too little data
raises ``InsufficientData`` naming the cause (too few readings, or too few usable
windows and what broke the others); the
caller then falls back to ``fallback_state``: persistence or AR2, whichever
did better on the data there is, with bands calibrated on it, marked fallback.

The champion: validation is short (2/14 of a recording, often a day or two),
and the candidate with the lowest validation RMSE may owe its lead to noise.
So the champion is the simplest candidate (FAMILIES order) whose validation
error the best candidate (lowest RMSE averaged over the 12 horizons) does not
beat significantly: a one-sided Diebold-Mariano test (Diebold & Mariano, "Comparing
predictive accuracy", J Bus Econ Stat 1995) on the per-window squared errors
averaged over horizons, at level SIGNIFICANCE, with the variance taken from the
means of consecutive blocks of BLOCK windows, because overlapping windows'
errors are correlated. Fewer than two blocks: no evidence, the simplest wins.

``train_person`` is a batch of one of the two-phase path the retrain job
takes for many persons at once: ``prepare_training`` per person,
``fit_networks`` for all of them (their networks trained as one stack), then
``finish_training`` per person (docs/training.md, "Training in batches").

Every prediction and band, in evaluation and in ``forecast``, is clamped to
what a sensor reads (40-400 mg/dL), so what is scored is what is served.
Informational trend forecasts only: not for dosing or diagnosis.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from statistics import NormalDist
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import torch

from glucokit.forecast.bands import Widths, adaptive_runs, band, calibrate, clamp
from glucokit.forecast.candidates import AR2, Forecaster, ModelState, Persistence, Ridge, rmse
from glucokit.forecast.features import FeatureSpec
from glucokit.forecast.metrics import Metrics, evaluate
from glucokit.forecast.model import NetworkConfig, NetworkForecaster, TrainConfig, fit_stacked
from glucokit.forecast.series import (
    MAX_FILLED_GAP,
    MIN_DAYS,
    STEP,
    FloatArray,
    InsufficientData,
    IntArray,
    Reading,
    Series,
    Timeline,
    micros,
    moment,
    prepare,
    resample,
    timeline,
)
from glucokit.forecast.windows import (
    HORIZON_MINUTES,
    SPLIT_FRACTIONS,
    SPLITS,
    Split,
    Windows,
    inputs_at,
    needed_windows,
    split,
    unusable,
    windows,
)
from glucokit.units import TARGET_RANGE_MG_DL

STATE_VERSION: Final = 2  # 2: bands with a lower and an upper side
COVERAGE: Final = 0.8
# Fewer windows than this in a split and its numbers mean little (30 windows
# are 2.5 hours; 100 training windows about 9 hours).
MIN_WINDOWS: Final = {"train": 100, "validation": 30, "test": 30}
MIN_FALLBACK_WINDOWS: Final = 30
# The champion test. Blocks of an hour of windows: long enough that most of
# the correlation of overlapping windows stays inside a block, short enough
# that the ~8 hours of validation of a 3-day recording give 8 blocks. A
# one-sided 10 % level: on the simulated fixture's first 3 days, meal-aware
# ridge halves persistence's validation RMSE at z 1.6 only, so a stricter level
# would throw away real gains on short recordings.
BLOCK: Final = 12
SIGNIFICANCE: Final = 0.10
# The model families, simplest first: the champion is picked among the ones a setting names.
FAMILIES: Final = ("persistence", "ar2", "ridge", "network")
GAPPY: Final = "the last hour of readings has a gap longer than 15 minutes"


@dataclass(frozen=True)
class TrainingSettings:
    min_days: float = MIN_DAYS
    fractions: tuple[float, float, float] = SPLIT_FRACTIONS
    coverage: float = COVERAGE
    network: NetworkConfig = field(default_factory=NetworkConfig)  # its features are set per person
    train: TrainConfig = field(default_factory=TrainConfig)
    families: tuple[str, ...] = FAMILIES  # the families to train; persistence is scored as the reference anyway

    def __post_init__(self) -> None:
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown or not self.families:
            raise ValueError(
                f"model families must be some of {', '.join(FAMILIES)}; got {', '.join(self.families) or 'none'}"
            )


DEFAULT_SETTINGS: Final = TrainingSettings()


@dataclass(frozen=True)
class ForecastState:
    """What ``forecast`` needs: the model as data, the band widths, and the person's time zone.

    Save ``config()`` as JSON and ``tensors`` with safetensors; ``from_saved``
    rebuilds the same state.
    """

    model: ModelState
    # Band widths per horizon (5..60 min) to start serving with: mg/dL below the forecast, % of it above.
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    coverage: float  # nominal coverage of the bands
    tz: str  # IANA time zone of the time-of-day feature
    fallback: bool = False  # a baseline standing in for a trained model

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        return self.model.tensors

    @cached_property
    def forecaster(self) -> Forecaster:
        """The model restored (``restore``) once per state, so a loaded version serves every forecast from it."""
        return restore(self.model)

    def config(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "family": self.model.family,
            "model": self.model.config,
            "horizon_minutes": list(HORIZON_MINUTES),
            "lower_mg_dl": list(self.lower),
            "upper_percent": list(self.upper),
            "coverage": self.coverage,
            "tz": self.tz,
            "fallback": self.fallback,
        }

    @classmethod
    def from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> ForecastState:
        version = config.get("version")
        if version == 1:
            # Version 1 (models trained before two-sided bands) kept one symmetric half-width in mg/dL. It stays the
            # lower side; the upper side becomes that width as a share of the middle of the target range, where
            # the two forms agree. The served band's state then adapts from the first outcomes, as any band does.
            middle = float(sum(TARGET_RANGE_MG_DL)) / 2
            half_widths = tuple(float(q) for q in config["quantiles"])
            lower, upper = half_widths, tuple(100 * q / middle for q in half_widths)
        elif version == STATE_VERSION:
            lower = tuple(float(q) for q in config["lower_mg_dl"])
            upper = tuple(float(q) for q in config["upper_percent"])
        else:
            raise ValueError(f"forecast state version {version!r} is not 1 or {STATE_VERSION}")
        return cls(
            model=ModelState(config["family"], config["model"], tensors),
            lower=lower,
            upper=upper,
            coverage=float(config["coverage"]),
            tz=str(config["tz"]),
            fallback=bool(config["fallback"]),
        )


@dataclass(frozen=True)
class TrainingOutcome:
    champion: str  # the candidate's name
    reason: str  # why it won (the selection rule's verdict, see choose)
    family: str  # its model family: persistence, ar2, ridge or network
    state: ForecastState  # the champion with its bands, ready to save
    validation: dict[str, Metrics]  # per candidate
    test: dict[str, Metrics]  # per candidate; bands and gain over persistence included
    # The champion's band widths per horizon after the test period: mg/dL below the forecast, % of it above.
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    coverage: float
    first_reading: datetime
    last_reading: datetime
    features: tuple[str, ...]  # the champion's inputs
    hyperparameters: dict[str, dict[str, Any]]  # per candidate, as exported
    windows: dict[str, int]  # per split
    seconds: float
    log: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # readings not used as exact readings, per reason

    def summary(self) -> dict[str, Any]:
        """JSON-able: everything but the state's tensors."""
        return {
            "champion": self.champion,
            "champion_reason": self.reason,
            "family": self.family,
            "state": self.state.config(),
            "validation": {name: metrics.as_dict() for name, metrics in self.validation.items()},
            "test": {name: metrics.as_dict() for name, metrics in self.test.items()},
            "lower_mg_dl": list(self.lower),
            "upper_percent": list(self.upper),
            "coverage": self.coverage,
            "first_reading": self.first_reading.isoformat(),
            "last_reading": self.last_reading.isoformat(),
            "features": list(self.features),
            "hyperparameters": self.hyperparameters,
            "windows": self.windows,
            "seconds": self.seconds,
            "log": self.log,
            "dropped": self.dropped,
        }


@dataclass(frozen=True)
class ForecastPoint:
    generated_at: datetime  # the latest reading the forecast starts from
    target_at: datetime  # generated_at + minutes
    minutes: int
    value: float  # mg/dL
    low: float  # band, mg/dL
    high: float


def candidates(series: Series, train: tuple[int, int], settings: TrainingSettings) -> list[Forecaster]:
    """The candidates of the settings' families for a person, simplest first (a tie in validation goes to the simpler).

    Carbohydrate and insulin are inputs when the training period records any.
    """
    start, stop = train
    events = FeatureSpec(carbs=bool(series.carbs[start:stop].any()), insulin=bool(series.insulin[start:stop].any()))
    network = dataclasses.replace(settings.network, features=events)
    found: dict[str, list[Forecaster]] = {
        "persistence": [Persistence()],
        "ar2": [AR2()],
        "ridge": [
            Ridge("ridge", FeatureSpec()),
            *([Ridge("ridge_events", events)] if events.carbs or events.insulin else []),
        ],
        "network": [NetworkForecaster("network", network, settings.train)],
    }
    return [forecaster for family in settings.families for forecaster in found[family]]


def reads_events(state: ForecastState) -> tuple[bool, bool]:
    """Whether a saved model reads carbohydrate and insulin records (ridge and the network may; baselines never)."""
    if state.model.family == "ridge":
        spec = FeatureSpec.from_config(state.model.config["features"])
    elif state.model.family == "network":
        spec = FeatureSpec.from_config(state.model.config["network"]["features"])
    else:
        return False, False
    return spec.carbs, spec.insulin


def restore(state: ModelState) -> Forecaster:
    """The forecaster a ModelState was exported from, predicting as it did."""
    builders: dict[str, Callable[[ModelState], Forecaster]] = {
        "persistence": lambda _: Persistence(),
        "ar2": lambda _: AR2(),
        "ridge": Ridge.from_state,
        "network": NetworkForecaster.from_state,
    }
    if state.family not in builders:
        raise ValueError(f"unknown model family {state.family!r}")
    return builders[state.family](state)


@dataclass
class Training:
    """A person's training between its phases: the split data and the candidates, some of them fitted already.

    ``prepare_training`` makes it, ``fit_networks`` fits the network candidates of
    many persons' trainings as stacks, ``finish_training`` fits what is left,
    scores and chooses. On the CPU a person's outcome is the same in any stack.
    """

    series: Series
    parts: Split
    contenders: list[Forecaster]  # the settings' candidates, simplest first
    forecasters: list[Forecaster]  # the contenders and the reference baselines, in the order they are scored
    settings: TrainingSettings
    tz: str
    log: list[str]
    seconds: float  # spent so far: on this person, and the whole time of the stacks they trained in
    fitted: dict[str, str] = field(default_factory=dict)  # candidate name -> its fit's log line, once fitted

    @property
    def networks(self) -> list[NetworkForecaster]:
        """The network candidates not fitted yet."""
        return [f for f in self.forecasters if isinstance(f, NetworkForecaster) and f.name not in self.fitted]


def train_person(
    glucose: Sequence[Reading],
    carbs: Sequence[Reading] = (),
    insulin: Sequence[Reading] = (),
    *,
    tz: str = "UTC",
    settings: TrainingSettings = DEFAULT_SETTINGS,
) -> TrainingOutcome:
    """Train, choose and calibrate a person's forecaster; raises InsufficientData when there is too little data.

    A batch of one: ``prepare_training``, ``fit_networks`` of that one, ``finish_training``.
    """
    training = prepare_training(glucose, carbs, insulin, tz=tz, settings=settings)
    fit_networks([training])
    return finish_training(training)


def prepare_training(
    glucose: Sequence[Reading],
    carbs: Sequence[Reading] = (),
    insulin: Sequence[Reading] = (),
    *,
    tz: str = "UTC",
    settings: TrainingSettings = DEFAULT_SETTINGS,
) -> Training:
    """A person's data split and candidates, nothing fitted; raises InsufficientData when there is too little data."""
    began = time.perf_counter()
    series = prepare(glucose, carbs, insulin, tz=ZoneInfo(tz), min_days=settings.min_days)
    parts = split(series, settings.fractions)
    counts = parts.counts()
    # Enough usable windows give every split its MIN_WINDOWS (needed_windows), whatever the gaps.
    needed = needed_windows(settings.fractions, (MIN_WINDOWS["train"], MIN_WINDOWS["validation"], MIN_WINDOWS["test"]))
    if parts.usable < needed:
        raise InsufficientData(_too_few_windows(series, parts.usable, needed))
    log = [
        *series.report.lines(),
        f"data: {series.first_reading.isoformat()} to {series.last_reading.isoformat()}, time zone {tz}",
        "windows: " + ", ".join(f"{name} {count}" for name, count in counts.items()) + _bounds(series, parts),
    ]
    contenders = candidates(series, parts.bounds[0], settings)
    names = {forecaster.name for forecaster in contenders}
    # Persistence and AR2 are always scored: the references every champion is reported against.
    forecasters = [baseline for baseline in (Persistence(), AR2()) if baseline.name not in names] + contenders
    return Training(series, parts, contenders, forecasters, settings, tz, log, time.perf_counter() - began)


def fit_networks(trainings: Sequence[Training], device: torch.device | str | None = None) -> None:
    """Fits the network candidates of all these persons' trainings at once, as stacks (``fit_stacked``).

    ``device``: where the stacks train (``train_networks``); the CPU by default.
    """
    began = time.perf_counter()
    fits = [(training, network) for training in trainings for network in training.networks]
    lines = fit_stacked([(network, t.parts.train, t.parts.validation) for t, network in fits], device)
    for (training, network), line in zip(fits, lines, strict=True):
        training.fitted[network.name] = line
    for training in trainings:
        training.seconds += time.perf_counter() - began


def finish_training(training: Training) -> TrainingOutcome:
    """Fits the candidates not fitted yet, scores every one, chooses the champion and calibrates its bands."""
    began = time.perf_counter()
    series, parts, settings, log = training.series, training.parts, training.settings, list(training.log)
    contenders = training.contenders
    validation: dict[str, Metrics] = {}
    test: dict[str, Metrics] = {}
    widths: dict[str, Widths] = {}  # after the test period
    losses: dict[str, FloatArray] = {}  # per validation window, squared error averaged over horizons
    persistence_rmse = {
        name: rmse(Persistence().predict(part.inputs), part.target)
        for name, part in (("validation", parts.validation), ("test", parts.test))
    }
    calibrated: dict[str, Widths] = {}  # on validation
    for forecaster in training.forecasters:
        fitted = training.fitted.get(forecaster.name)
        log.append(fitted if fitted is not None else forecaster.fit(parts.train, parts.validation))
        predicted = predict_windows(forecaster, parts.validation)
        losses[forecaster.name] = np.mean((predicted - parts.validation.target) ** 2, axis=1)
        calibrated[forecaster.name] = lower, upper = calibrate(predicted, parts.validation.target, settings.coverage)
        validation[forecaster.name] = evaluate(
            predicted,
            parts.validation.target,
            bands=band(predicted, np.asarray(lower), np.asarray(upper)),
            origin=parts.validation.inputs.last,
            persistence_rmse=persistence_rmse["validation"],
        )
    # Every forecaster's bands replayed over the test windows in one pass (bands.adaptive_runs).
    predictions = [predict_windows(forecaster, parts.test) for forecaster in training.forecasters]
    runs = adaptive_runs(predictions, parts.test.target, parts.test.end, list(calibrated.values()), settings.coverage)
    for forecaster, predicted, served in zip(training.forecasters, predictions, runs, strict=True):
        widths[forecaster.name] = tuple(s.width for s in served.lower), tuple(s.width for s in served.upper)
        test[forecaster.name] = evaluate(
            predicted,
            parts.test.target,
            bands=(served.low, served.high),
            origin=parts.test.inputs.last,
            persistence_rmse=persistence_rmse["test"],
        )

    scores = {f.name: float(np.mean(validation[f.name].rmse)) for f in contenders}
    champion, why = choose(contenders, scores, losses)
    log.append("validation RMSE, mean over horizons: " + ", ".join(f"{n} {s:.2f}" for n, s in scores.items()))
    log.append(f"champion: {champion.name} ({why})")
    lower, upper = widths[champion.name]
    log.append(
        f"{settings.coverage:.0%} band widths at 30 and 60 min after the test period:"
        f" {lower[5]:.1f}, {lower[11]:.1f} mg/dL below, {upper[5]:.1f}, {upper[11]:.1f} % above;"
        f" test coverage {_at(test[champion.name].coverage, 5):.1%}, {_at(test[champion.name].coverage, 11):.1%}"
    )
    log.append(
        f"test RMSE at 30 and 60 min: {test[champion.name].rmse[5]:.2f}, {test[champion.name].rmse[11]:.2f} mg/dL"
        f" (persistence {test['persistence'].rmse[5]:.2f}, {test['persistence'].rmse[11]:.2f})"
    )
    model = champion.export()
    hyperparameters = {forecaster.name: forecaster.export().config for forecaster in contenders}
    return TrainingOutcome(
        champion=champion.name,
        reason=why,
        family=model.family,
        state=ForecastState(model, lower, upper, settings.coverage, training.tz),
        validation=validation,
        test=test,
        lower=lower,
        upper=upper,
        coverage=settings.coverage,
        first_reading=series.first_reading,
        last_reading=series.last_reading,
        features=tuple(champion.feature_blocks()),
        hyperparameters=hyperparameters,
        windows=parts.counts(),
        seconds=training.seconds + time.perf_counter() - began,
        log=log,
        dropped=series.report.dropped(),
    )


def choose(
    contenders: Sequence[Forecaster], scores: dict[str, float], losses: dict[str, FloatArray]
) -> tuple[Forecaster, str]:
    """The champion and why, in words: the simplest contender the best does not beat significantly (module docstring).

    ``contenders`` simplest first; ``scores`` their validation RMSE averaged over
    horizons; ``losses`` their per-window squared errors (time order).
    """
    best = next(f for f in contenders if scores[f.name] == min(scores.values()))
    for simpler in contenders[: list(contenders).index(best)]:
        z = gain_z(losses[simpler.name] - losses[best.name])
        if z < NormalDist().inv_cdf(1 - SIGNIFICANCE):
            return simpler, (
                f"the simplest candidate that {best.name}, the lowest on validation, does not beat significantly:"
                f" z {z:.2f}, one-sided {SIGNIFICANCE:.0%}"
            )
    simplest = best is contenders[0]
    return best, "the lowest validation RMSE averaged over 5..60 min" + (
        ", and the simplest candidate" if simplest else ", significantly below every simpler candidate"
    )


def gain_z(difference: FloatArray) -> float:
    """The Diebold-Mariano statistic of per-window loss differences: mean over its standard error from block means.

    Positive when the second model's errors are smaller; 0 with fewer than two
    blocks of BLOCK windows (no evidence); infinite when every block gains alike.
    """
    blocks = len(difference) // BLOCK
    if blocks < 2:
        return 0.0
    means = np.array([part.mean() for part in np.array_split(difference, blocks)])
    mean, error = float(means.mean()), float(means.std(ddof=1)) / math.sqrt(blocks)
    if error == 0:
        return math.copysign(math.inf, mean) if mean else 0.0
    return mean / error


def fallback_state(
    glucose: Sequence[Reading],
    carbs: Sequence[Reading] = (),
    insulin: Sequence[Reading] = (),
    *,
    tz: str = "UTC",
    coverage: float = COVERAGE,
) -> ForecastState:
    """The baseline for a person without enough data to train: persistence or AR2, with calibrated bands.

    Neither learns anything, so every usable window of the data there is
    serves to choose between them (mean RMSE over horizons) and to calibrate
    the bands; with so few windows the bands' coverage is rougher than a
    trained model's. Raises InsufficientData below MIN_FALLBACK_WINDOWS
    windows (about 3.5 hours of readings).
    """
    if not glucose:
        raise InsufficientData("no glucose readings")
    series = resample(glucose, carbs, insulin, tz=ZoneInfo(tz))
    usable = windows(series, 0, len(series))
    if len(usable) < MIN_FALLBACK_WINDOWS:
        raise InsufficientData(
            f"{len(usable)} usable windows of 2 hours without a gap over 15 minutes;"
            f" at least {MIN_FALLBACK_WINDOWS} are needed even for a baseline forecast"
        )
    baselines: list[Forecaster] = [Persistence(), AR2()]
    predictions = [predict_windows(baseline, usable) for baseline in baselines]
    scores = [float(np.mean(evaluate(predicted, usable.target).rmse)) for predicted in predictions]
    best = scores.index(min(scores))
    lower, upper = calibrate(predictions[best], usable.target, coverage)
    return ForecastState(baselines[best].export(), lower, upper, coverage, tz, fallback=True)


def forecast(
    state: ForecastState,
    glucose: Sequence[Reading],
    now: datetime,
    carbs: Sequence[Reading] = (),
    insulin: Sequence[Reading] = (),
    *,
    max_age: timedelta = MAX_FILLED_GAP,
) -> list[ForecastPoint]:
    """The 12 forecast points (5..60 min after the latest reading at or before ``now``) with their bands.

    Needs the last hour of readings without a gap over 15 minutes, the latest
    no older than ``max_age``; models that read carbohydrate and insulin look
    at the last 4 hours of them (none given counts as none taken). Raises
    InsufficientData otherwise.
    """
    records = timeline(glucose, carbs, insulin)
    past = records.glucose_at[records.glucose_at <= micros(now)]
    if len(past) == 0:
        raise InsufficientData(f"no glucose reading at or before {now.isoformat()}")
    latest = moment(int(past[-1]))
    if now - latest > max_age:
        raise InsufficientData(f"the latest reading, {latest.isoformat()}, is older than {max_age} before now")
    (curve,) = forecast_from(state, records, past[-1:])
    if curve is None:
        raise InsufficientData(GAPPY)
    return curve


def forecast_from(state: ForecastState, records: Timeline, origins: IntArray) -> list[list[ForecastPoint] | None]:
    """The forecast points from each origin (a reading's time, microseconds since the epoch) with their bands.

    The inputs are ``inputs_at`` the origins, as in training and evaluation.
    None for an origin whose last hour has a gap over 15 minutes (``GAPPY``).
    """
    inputs = inputs_at(records, origins, ZoneInfo(state.tz))
    whole = inputs.whole
    prediction = (
        clamp(state.forecaster.predict(inputs.where(whole))) if whole.any() else np.empty((0, len(HORIZON_MINUTES)))
    )
    low, high = band(prediction, np.asarray(state.lower), np.asarray(state.upper))
    curves: list[list[ForecastPoint] | None] = [None] * len(origins)
    for row, index in enumerate(np.flatnonzero(whole)):
        origin = moment(int(origins[index]))
        curves[index] = [
            ForecastPoint(
                generated_at=origin,
                target_at=origin + minutes // 5 * STEP,
                minutes=minutes,
                value=float(prediction[row, h]),
                low=float(low[row, h]),
                high=float(high[row, h]),
            )
            for h, minutes in enumerate(HORIZON_MINUTES)
        ]
    return curves


def holdout_rmse(
    state: ForecastState,
    glucose: Sequence[Reading],
    carbs: Sequence[Reading] = (),
    insulin: Sequence[Reading] = (),
    *,
    settings: TrainingSettings = DEFAULT_SETTINGS,
    training: Training | None = None,
) -> float:
    """A saved model's test RMSE (mean over horizons) on the test split ``train_person`` makes of these readings.

    This is the champion/challenger holdout: the active version and a newly
    trained one are compared on the same recent windows, scored the same way.
    ``training``: the new version's training (``prepare_training``) of these
    same readings; when it split them as the state would (same time zone and
    settings), its test windows are the holdout, not made a second time.
    """
    if training is not None and training.tz == state.tz and training.settings == settings:
        test = training.parts.test
    else:
        series = prepare(glucose, carbs, insulin, tz=ZoneInfo(state.tz), min_days=settings.min_days)
        test = split(series, settings.fractions).test
    return float(np.mean(rmse(predict_windows(state.forecaster, test), test.target)))


def predict_windows(forecaster: Forecaster, windows: Windows) -> FloatArray:
    """(n, HORIZONS) the forecasts evaluation scores, clamped as ``forecast_from`` clamps what is served."""
    return clamp(forecaster.predict(windows.inputs))


def _too_few_windows(series: Series, usable: int, needed: int) -> str:
    """Why a person has too few usable windows: how many readings start none, by reason."""
    readings = int(series.observed.sum())
    reasons = ", ".join(f"{count:,} ({count / readings:.0%}) {reason}" for reason, count in unusable(series).items())
    return (
        f"{usable:,} usable windows (2 hours of readings without a gap over 15 minutes),"
        f" at least {needed:,} are needed: of {readings:,} readings, {reasons}"
    )


def _bounds(series: Series, parts: Split) -> str:
    names = (
        f"{name} from {series.time(start).isoformat()}" for name, (start, _) in zip(SPLITS, parts.bounds, strict=True)
    )
    return "; " + ", ".join(names)


def _at(values: tuple[float, ...] | None, h: int) -> float:
    return float("nan") if values is None else values[h]
