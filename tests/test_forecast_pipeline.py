"""glucokit.forecast end to end: train_person, the saved state, forecast, the fallback.

A synthetic person (a daily sine, three meals a day with their boluses, AR(1)
sensor noise; seeded) trains in about a second; one slice of the checked-in
simulated fixture shows that real bundles go through too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch

from glucokit.fhir.bundle import read_bundle
from glucokit.forecast import (
    HORIZON_MINUTES,
    ForecastState,
    InsufficientData,
    PersonData,
    TrainingOutcome,
    fallback_state,
    forecast,
    restore,
    train_person,
)
from glucokit.forecast.evaluation import evaluate_people
from glucokit.forecast.features import FeatureSpec, standardizer
from glucokit.forecast.model import TrainConfig
from glucokit.forecast.pipeline import TrainingSettings, candidates, reads_events
from glucokit.forecast.series import prepare
from glucokit.forecast.windows import GLUCOSE_LOOKBACK, history, split

START = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
Point = tuple[datetime, float]
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "simulated" / "adult-001.json.gz"


@dataclass(frozen=True)
class Person:
    glucose: list[Point]
    carbs: list[Point]
    insulin: list[Point]


def synthetic_person(days: float, seed: int = 7) -> Person:
    """Glucose around 130 mg/dL with a daily swing, meals that raise it (peak after an hour) and sensor noise."""
    rng = np.random.default_rng(seed)
    count = int(days * 288) + 1
    minutes = np.arange(count) * 5.0
    glucose = 130 + 25 * np.sin(2 * np.pi * minutes / 1440)
    carbs: list[Point] = []
    insulin: list[Point] = [(START + i * STEP, 0.1) for i in range(count)]  # basal
    for day in range(math.ceil(days)):
        for hour, grams in ((7.5, 40.0), (12.5, 60.0), (19.0, 70.0)):
            at = round((day * 24 + hour + rng.normal(0, 0.5)) * 12)
            if not 0 <= at < count:
                continue
            amount = grams * rng.uniform(0.6, 1.4)
            carbs.append((START + at * STEP, amount))
            insulin.append((START + at * STEP, amount / 10))
            since = (minutes[at:] - minutes[at]) / 60  # hours
            glucose[at:] += 1.2 * amount * since * np.exp(1 - since)
    noise = np.zeros(count)
    for i in range(1, count):
        noise[i] = 0.8 * noise[i - 1] + rng.normal(0, 2.0)
    values = np.clip(glucose + noise, 40, 400)
    return Person([(START + i * STEP, float(v)) for i, v in enumerate(values)], carbs, insulin)


@pytest.fixture(scope="module")
def person() -> Person:
    return synthetic_person(14)


@pytest.fixture(scope="module")
def outcome(person: Person) -> TrainingOutcome:
    return train_person(person.glucose, person.carbs, person.insulin)


def saved(state: ForecastState) -> ForecastState:
    """The state after a trip through storage: config as JSON bytes, tensors copied (as safetensors would)."""
    for tensor in state.tensors.values():
        assert tensor.is_contiguous()
    pointers = [tensor.untyped_storage().data_ptr() for tensor in state.tensors.values()]
    assert len(set(pointers)) == len(pointers)  # safetensors refuses tensors sharing memory
    config = orjson.loads(orjson.dumps(state.config()))
    return ForecastState.from_saved(config, {key: tensor.clone() for key, tensor in state.tensors.items()})


def test_outcome_describes_the_training(outcome: TrainingOutcome) -> None:
    # 4,010 usable windows 8:2:4 by count, less the 23 before each boundary that would predict past it.
    assert outcome.windows == {"train": 2291 - 23, "validation": 2864 - 2291 - 23, "test": 4010 - 2864}
    assert set(outcome.test) == {"persistence", "ar2", "ridge", "ridge_events", "network"}
    assert set(outcome.validation) == set(outcome.test) == set(outcome.hyperparameters)
    assert outcome.champion in outcome.test
    assert outcome.family == outcome.state.model.family
    assert (outcome.first_reading, outcome.last_reading) == (START, START + 14 * 288 * STEP)
    assert len(outcome.lower) == len(outcome.upper) == len(HORIZON_MINUTES) == 12
    assert (outcome.state.lower, outcome.state.upper) == (outcome.lower, outcome.upper)
    assert outcome.coverage == 0.8
    assert any("carbohydrate" in feature for feature in outcome.features)
    assert outcome.hyperparameters["ridge"]["lambda"] in outcome.hyperparameters["ridge"]["lambdas"]
    assert any(line.startswith("champion: ") for line in outcome.log)
    orjson.dumps(outcome.summary())  # JSON-able as a whole


def test_champion_is_the_best_on_validation_and_beats_the_baselines(outcome: TrainingOutcome) -> None:
    scores = {name: np.mean(metrics.rmse) for name, metrics in outcome.validation.items()}
    assert outcome.champion == min(scores, key=lambda name: scores[name])
    champion = outcome.test[outcome.champion]
    for baseline in ("persistence", "ar2", "ridge"):  # meals are the signal the baselines lack
        assert champion.at(60)["rmse"] < 0.8 * outcome.test[baseline].at(60)["rmse"]
    assert champion.gain is not None
    assert champion.gain[5] > 0.2
    assert champion.at(30)["clarke"]["A"] > 0.9


def test_families_choose_the_candidates_and_the_references_are_always_scored(person: Person) -> None:
    ridge_only = train_person(
        person.glucose, person.carbs, person.insulin, settings=TrainingSettings(families=("ridge",))
    )
    assert ridge_only.champion in {"ridge", "ridge_events"}
    assert set(ridge_only.hyperparameters) == {"ridge", "ridge_events"}
    assert set(ridge_only.test) == set(ridge_only.validation) == {"persistence", "ar2", "ridge", "ridge_events"}
    assert "validation RMSE, mean over horizons: ridge " in "\n".join(ridge_only.log)
    baseline = train_person(person.glucose, settings=TrainingSettings(families=("ar2", "persistence")))
    assert baseline.family in {"ar2", "persistence"}
    assert set(baseline.test) == {"persistence", "ar2"}


@pytest.mark.parametrize("families", [(), ("ridge", "lstm")])
def test_unknown_or_no_families_are_refused(families: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="model families must be some of persistence, ar2, ridge, network"):
        TrainingSettings(families=families)


def test_bands_cover_about_nominally_on_a_stationary_person(outcome: TrainingOutcome) -> None:
    coverage = outcome.test[outcome.champion].coverage
    assert coverage is not None
    assert 0.74 <= float(np.mean(coverage)) <= 0.86
    # Further ahead, wider on both sides.
    assert outcome.lower[-1] > 2 * outcome.lower[0]
    assert outcome.upper[-1] > 2 * outcome.upper[0]


@pytest.mark.parametrize(("name", "scaling"), [("ridge_events", ("mean", "scale")), ("network", ("x_mean", "x_scale"))])
def test_scaling_is_fitted_on_train_only(person: Person, name: str, scaling: tuple[str, str]) -> None:
    later = START + 8 * 288 * STEP  # validation and test data shifted by 40 mg/dL: the scaling must not move
    changed = [(moment, value + 40 if moment >= later else value) for moment, value in person.glucose]
    settings = TrainingSettings(train=TrainConfig(max_epochs=1))
    found = []
    for glucose in (person.glucose, changed):
        series = prepare(glucose, person.carbs, person.insulin)
        parts = split(series)
        forecaster = next(f for f in candidates(series, parts.bounds[0], settings) if f.name == name)
        forecaster.fit(parts.train, parts.validation)
        found.append(forecaster.export().tensors)
    train_matrix = FeatureSpec(carbs=True, insulin=True).matrix(parts.train.inputs)
    mean, scale = standardizer(train_matrix)
    np.testing.assert_allclose(found[0][scaling[0]].double().numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(found[0][scaling[1]].double().numpy(), scale, rtol=1e-6)
    for key in scaling:
        assert torch.equal(found[0][key], found[1][key])


def test_same_input_same_outcome(person: Person, outcome: TrainingOutcome) -> None:
    again = train_person(person.glucose, person.carbs, person.insulin)
    assert again.champion == outcome.champion
    assert (again.lower, again.upper) == (outcome.lower, outcome.upper)
    assert again.test == outcome.test
    assert again.validation == outcome.validation
    assert again.state.config() == outcome.state.config()
    assert again.state.tensors.keys() == outcome.state.tensors.keys()
    for key, tensor in outcome.state.tensors.items():
        assert torch.equal(again.state.tensors[key], tensor)


@pytest.mark.parametrize("name", ["ridge", "ridge_events", "network"])
def test_state_round_trip_predicts_identically(person: Person, name: str) -> None:
    series = prepare(person.glucose, person.carbs, person.insulin)
    parts = split(series)
    forecaster = next(f for f in candidates(series, parts.bounds[0], TrainingSettings()) if f.name == name)
    forecaster.fit(parts.train, parts.validation)
    state = saved(ForecastState(forecaster.export(), (1.0,) * 12, (1.0,) * 12, 0.8, "UTC")).model
    np.testing.assert_array_equal(restore(state).predict(parts.test.inputs), forecaster.predict(parts.test.inputs))


def test_forecast_from_the_saved_state(person: Person, outcome: TrainingOutcome) -> None:
    state = saved(outcome.state)
    now = START + 14 * 288 * STEP + timedelta(minutes=3)
    recent = [(moment, value) for moment, value in person.glucose if moment > now - timedelta(hours=5)]
    points = forecast(state, recent, now, person.carbs, person.insulin)
    latest = START + 14 * 288 * STEP
    assert [point.minutes for point in points] == list(HORIZON_MINUTES)
    assert all(point.generated_at == latest for point in points)
    assert [point.target_at for point in points] == [latest + m * timedelta(minutes=1) for m in HORIZON_MINUTES]
    # The same numbers as the champion on the same last window of the whole series.
    series = prepare(person.glucose, person.carbs, person.insulin)
    expected = restore(outcome.state.model).predict(history(series, np.array([len(series) - 1])))[0]
    np.testing.assert_allclose([point.value for point in points], expected, rtol=0, atol=1e-9)
    for point, below, above in zip(points, outcome.lower, outcome.upper, strict=True):
        assert point.low == pytest.approx(max(point.value - below, 40.0))
        assert point.high == pytest.approx(min(point.value * (1 + above / 100), 400.0))
        assert 40 <= point.low <= point.value <= point.high <= 400
    # The state restores its forecaster once and serves every later forecast from it, with the same numbers.
    assert state.forecaster is state.forecaster
    again = forecast(state, recent, now, person.carbs, person.insulin)
    assert [point.value for point in again] == [point.value for point in points]


def test_a_version_1_state_still_loads_with_its_band_at_the_middle_of_the_range(outcome: TrainingOutcome) -> None:
    """Models saved before two-sided bands keep serving (their band state adapts from the first outcomes)."""
    config = {
        key: value for key, value in outcome.state.config().items() if key not in ("lower_mg_dl", "upper_percent")
    }
    config |= {"version": 1, "quantiles": [10.0 + k for k in range(12)]}
    state = ForecastState.from_saved(config, dict(outcome.state.tensors))
    assert state.lower == tuple(10.0 + k for k in range(12))
    for below, above in zip(state.lower, state.upper, strict=True):
        assert 125 * above / 100 == pytest.approx(below)  # 125 mg/dL: the middle of 70-180
    with pytest.raises(ValueError, match="forecast state version 3 is not 1 or 2"):
        ForecastState.from_saved({**config, "version": 3}, dict(outcome.state.tensors))


def test_forecast_from_the_last_hour_reads_four_hours_of_events(person: Person, outcome: TrainingOutcome) -> None:
    # Serving is given the glucose its inputs need and the events of their look-back: the model must
    # see what evaluation gave it, events older than the glucose included.
    assert reads_events(outcome.state) == (True, True)
    series = prepare(person.glucose, person.carbs, person.insulin)
    for end in (len(series) - 1, len(series) - 100):
        latest = series.time(end)
        hour = [(moment, value) for moment, value in person.glucose if latest - GLUCOSE_LOOKBACK < moment <= latest]
        assert len(hour) == 14
        points = forecast(outcome.state, hour, latest, person.carbs, person.insulin)
        expected = restore(outcome.state.model).predict(history(series, np.array([end])))
        np.testing.assert_allclose([point.value for point in points], expected[0], rtol=0, atol=1e-9)


def test_forecast_refuses_stale_or_gappy_readings(person: Person, outcome: TrainingOutcome) -> None:
    latest = START + 14 * 288 * STEP
    with pytest.raises(InsufficientData, match="older than"):
        forecast(outcome.state, person.glucose, latest + timedelta(minutes=20))
    gappy = [
        (m, v) for m, v in person.glucose if not latest - timedelta(minutes=40) <= m <= latest - timedelta(minutes=20)
    ]
    with pytest.raises(InsufficientData, match="gap"):
        forecast(outcome.state, gappy, latest)
    with pytest.raises(InsufficientData, match="no glucose reading"):
        forecast(outcome.state, person.glucose, START - STEP)


def test_too_little_data_raises_insufficient_data() -> None:
    short = synthetic_person(1.5)
    with pytest.raises(InsufficientData, match="at least 2 days") as raised:
        train_person(short.glucose, short.carbs, short.insulin)
    assert "1.50 days" in raised.value.reason


def test_too_many_gaps_raise_insufficient_data() -> None:
    # Three days of readings, but a 20-minute hole every hour: no two-hour window is whole.
    gappy = [(m, v) for i, (m, v) in enumerate(synthetic_person(4).glucose) if i % 12 not in (0, 1, 2)]
    with pytest.raises(InsufficientData, match="usable windows"):
        train_person(gappy)


def test_fallback_is_a_calibrated_baseline(person: Person) -> None:
    recent = person.glucose[: 6 * 12]  # six hours
    state = fallback_state(recent, person.carbs, person.insulin)
    assert state.fallback
    assert state.model.family in {"persistence", "ar2"}
    assert state.tensors == {}
    assert all(0 < q < math.inf for q in state.lower + state.upper)
    points = forecast(saved(state), recent, recent[-1][0])
    assert len(points) == 12
    with pytest.raises(InsufficientData, match="at least 30"):
        fallback_state(person.glucose[:40])


def test_a_slice_of_the_simulated_fixture_trains() -> None:
    data = read_bundle(FIXTURE)
    assert (len(data.glucose), len(data.carbs), len(data.insulin)) == (4033, 56, 4032)
    end = data.glucose[0][0] + timedelta(days=3)

    def until_end(points: list[Point]) -> list[Point]:
        return [(moment, value) for moment, value in points if moment < end]

    outcome = train_person(until_end(data.glucose), until_end(data.carbs), until_end(data.insulin))
    # 3 days: 864 readings, 841 usable windows; 8/14 of them, less the 23 before validation.
    assert outcome.windows["train"] == round(841 * 8 / 14) - 23
    assert outcome.test[outcome.champion].at(30)["rmse"] < outcome.test["persistence"].at(30)["rmse"]


def test_evaluate_people_summarizes_the_cohort(person: Person) -> None:
    short = synthetic_person(1)
    people = {"long": PersonData(person.glucose, person.carbs, person.insulin), "short": PersonData(short.glucose)}
    summary = evaluate_people(people)
    assert summary["persons"] == 1
    assert "at least 2 days" in summary["insufficient_data"]["short"]
    champion = summary["test"]["champion"]
    assert champion["persons"] == 1
    assert champion["rmse_30"]["sd"] == 0.0
    assert summary["per_person"]["long"]["rmse_30"] == round(champion["rmse_30"]["mean"], 3)
    orjson.dumps(summary)


@pytest.fixture(autouse=True)
def _torch_settings_untouched() -> Iterator[None]:
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, deterministic)
