"""Training many persons' networks as one stack: each person gets what they would get alone, and so does each
person's whole training when their networks fit in a batch (the retrain job's path).

The persons are the checked-in simulated fixture (14 days each) and shorter
copies of them, so that window counts differ; a high learning rate and a
patience of 2 make persons stop early at different epochs within 10.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from glucokit.fhir.bundle import read_bundle
from glucokit.forecast import model as model_module
from glucokit.forecast import pipeline
from glucokit.forecast.candidates import rmse
from glucokit.forecast.features import FeatureSpec
from glucokit.forecast.model import (
    Network,
    NetworkConfig,
    NetworkForecaster,
    StackedAdamW,
    TrainConfig,
    one_thread,
    train_grouped,
    train_network,
    train_networks,
)
from glucokit.forecast.pipeline import (
    TrainingSettings,
    fallback_state,
    finish_training,
    fit_networks,
    holdout_rmse,
    prepare_training,
    train_person,
)
from glucokit.forecast.series import prepare
from glucokit.forecast.windows import Inputs, Windows, split
from glucokit.project import SIMULATED_DIR

EVENTS = NetworkConfig(features=FeatureSpec(carbs=True, insulin=True))
QUICK = TrainConfig(learning_rate=0.02, max_epochs=10, patience=2)
Person = tuple[Windows, Windows]


def head(windows: Windows, count: int) -> Windows:
    inputs = windows.inputs
    return Windows(
        Inputs(inputs.glucose[:count], inputs.day_fraction[:count], inputs.carbs[:count], inputs.insulin[:count]),
        windows.target[:count],
        windows.end[:count],
    )


@pytest.fixture(scope="module")
def fixture_persons() -> list[Person]:
    """The four fixture persons' train and validation windows (2,203-2,268 and 534-570)."""
    persons = []
    for path in sorted(SIMULATED_DIR.glob("*.json.gz")):
        data = read_bundle(path)
        parts = split(prepare(data.glucose, data.carbs, data.insulin))
        persons.append((parts.train, parts.validation))
    return persons


@pytest.fixture(scope="module")
def persons(fixture_persons: list[Person]) -> list[Person]:
    """The fixture persons, then shorter copies: 300 to 1,500 train windows, 100 to 250 validation windows."""
    shorter = [
        (head(train, 300 + 400 * k), head(validation, 100 + 50 * k))
        for k, (train, validation) in enumerate(fixture_persons)
    ]
    return fixture_persons + shorter


def assert_same(found: tuple[Network, int, int], expected: tuple[Network, int, int]) -> None:
    """The same best epoch, epochs run and weights, to the bit."""
    assert found[1:] == expected[1:]
    found_state, expected_state = found[0].state_dict(), expected[0].state_dict()
    assert found_state.keys() == expected_state.keys()
    for key, tensor in expected_state.items():
        assert torch.equal(found_state[key], tensor), key


def test_a_stack_trains_every_person_as_if_alone(persons: list[Person]) -> None:
    rng = torch.get_rng_state()
    stacked = train_networks(EVENTS, QUICK, persons)
    assert torch.equal(torch.get_rng_state(), rng)  # torch's global generator is left as it was
    # Different window counts (some persons run out of batches before others each
    # epoch) and different stopping epochs (persons leave the stack).
    assert len({len(train) for train, _ in persons}) > 1
    assert len({epochs for _, _, epochs in stacked}) > 1
    assert min(epochs for _, _, epochs in stacked) < QUICK.max_epochs
    # Exact: a person's rows of every stacked operation are computed as they are
    # for the person alone (bmm multiplies each person's matrices separately;
    # elementwise kernels, reductions within a person and AdamW's arithmetic do
    # not depend on the other rows), so nothing may differ, not even rounding.
    for person, found in zip(persons, stacked, strict=True):
        assert_same(found, train_network(EVENTS, QUICK, *person))
    others = list(range(len(persons)))[::-2]  # another stack, in another order
    for index, found in zip(others, train_networks(EVENTS, QUICK, [persons[i] for i in others]), strict=True):
        assert_same(found, stacked[index])


def test_trained_networks_are_ordinary_networks(persons: list[Person]) -> None:
    network, best_epoch, epochs = train_networks(EVENTS, dataclasses.replace(QUICK, max_epochs=2), persons[:2])[1]
    reference = Network(EVENTS).state_dict()
    assert {key: tensor.shape for key, tensor in network.state_dict().items()} == {
        key: tensor.shape for key, tensor in reference.items()
    }
    assert not network.training
    assert 1 <= best_epoch <= epochs == 2
    train, validation = persons[1]
    forecaster = NetworkForecaster("network", EVENTS, QUICK)
    forecaster.network, forecaster.best_epoch = network, best_epoch
    restored = NetworkForecaster.from_state(forecaster.export())
    np.testing.assert_array_equal(restored.predict(validation.inputs), forecaster.predict(validation.inputs))
    # Standardization is the person's own, fitted on their train split.
    mean = EVENTS.features.matrix(train.inputs).mean(axis=0)
    np.testing.assert_allclose(network.x_mean.double().numpy(), mean, rtol=1e-6)


def test_persons_are_grouped_by_network_config(persons: list[Person], monkeypatch: pytest.MonkeyPatch) -> None:
    plain, carbs = (NetworkConfig(features=features) for features in (FeatureSpec(), FeatureSpec(carbs=True)))
    entries = [
        (EVENTS, *persons[0]),
        (plain, *persons[1]),
        (EVENTS, *persons[4]),
        (carbs, *persons[5]),
        (EVENTS, *persons[6]),
    ]
    settings = dataclasses.replace(QUICK, max_epochs=3)
    stacks: list[tuple[int, int]] = []

    def recording(
        config: NetworkConfig, train_config: TrainConfig, group: list[Person], device: str | None = None
    ) -> list[tuple[Network, int, int]]:
        stacks.append((config.features.width, len(group)))
        return train_networks(config, train_config, group, device)

    monkeypatch.setattr(model_module, "train_networks", recording)
    found = train_grouped(settings, entries, stack_size=2)
    assert stacks == [(46, 2), (46, 1), (14, 1), (30, 1)]
    monkeypatch.undo()
    for (config, train, validation), result in zip(entries, found, strict=True):
        assert result[0].linear.weight.shape == (12, config.features.width)
        assert_same(result, train_network(config, settings, train, validation))


def test_stacked_adamw_is_torch_adamw_with_a_step_count_per_person() -> None:
    generator = torch.Generator().manual_seed(5)
    start = torch.randn(1000, generator=generator)
    # Gradients from 1e-6 to 10: the bias corrections and eps all matter.
    grads = [torch.randn(1000, generator=generator) * 10.0 ** (step % 8 - 6) for step in range(20)]
    idle_at = {2, 3, 7, 8, 9, 15}  # steps at which the second person has no batch

    stacked = start.repeat(2, 1)
    optimizer = StackedAdamW(2, 1000, learning_rate=3e-3, weight_decay=1e-4, max_steps=20)
    for step, grad in enumerate(grads):
        idle = torch.tensor([1] if step in idle_at else [], dtype=torch.int64)
        optimizer.step(stacked, grad.repeat(2, 1), idle)
    assert optimizer.steps.tolist() == [20, 20 - len(idle_at)]

    for person, steps in ((0, range(20)), (1, [step for step in range(20) if step not in idle_at])):
        parameter = start.clone().requires_grad_()
        reference = torch.optim.AdamW([parameter], lr=3e-3, weight_decay=1e-4)
        for step in steps:
            parameter.grad = grads[step].clone()
            reference.step()
        assert torch.equal(stacked[person], parameter.detach())


def test_a_person_who_stops_early_leaves_the_others_as_they_were(persons: list[Person]) -> None:
    early, late = persons[4], persons[5]
    (early_found, late_found) = train_networks(EVENTS, QUICK, [early, late])
    assert early_found[2] < late_found[2]  # the first stopped and left the stack while the other trained on
    assert_same(late_found, train_network(EVENTS, QUICK, *late))
    # What the early one keeps is its best epoch's weights: a run that ends at that epoch ends with them.
    best_epoch = early_found[1]
    assert best_epoch < early_found[2]
    until_best = train_network(EVENTS, dataclasses.replace(QUICK, max_epochs=best_epoch), *early)
    assert_same((early_found[0], best_epoch, best_epoch), until_best)


def test_a_person_without_windows_is_refused(persons: list[Person]) -> None:
    train, validation = persons[0]
    with pytest.raises(ValueError, match="at least one train and one validation window"):
        train_networks(EVENTS, QUICK, [(train, validation), (train, head(validation, 0))])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_stack_trains_on_the_gpu(persons: list[Person]) -> None:
    # Not to the bit: the GPU's matrix products round differently. As good on validation, though.
    settings = dataclasses.replace(QUICK, max_epochs=3)
    on_gpu = train_networks(EVENTS, settings, persons[:3], device="cuda")
    on_cpu = train_networks(EVENTS, settings, persons[:3])
    for (_, validation), (gpu, _, _), (cpu, _, _) in zip(persons[:3], on_gpu, on_cpu, strict=True):
        assert all(tensor.device.type == "cpu" for tensor in gpu.state_dict().values())
        assert not gpu.training
        x = torch.tensor(EVENTS.features.matrix(validation.inputs), dtype=torch.float32)
        with torch.no_grad():
            errors = [
                float(rmse(validation.inputs.last[:, None] + network(x).double().numpy(), validation.target).mean())
                for network in (gpu, cpu)
            ]
        assert errors[0] == pytest.approx(errors[1], rel=0.02)


@pytest.fixture(autouse=True)
def _torch_settings_untouched() -> Iterator[None]:
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, deterministic)


def test_persons_trained_as_a_batch_get_what_train_person_gives_them() -> None:
    """The two-phase pipeline: prepare each person, fit every network as one stack, finish each person."""
    settings = TrainingSettings(families=("ridge", "network"), train=QUICK)
    people = [read_bundle(path) for path in sorted(SIMULATED_DIR.glob("*.json.gz"))][:3]
    trainings = [prepare_training(p.glucose, p.carbs, p.insulin, settings=settings) for p in people]
    assert all(len(training.networks) == 1 for training in trainings)
    fit_networks(trainings)
    assert all(training.networks == [] for training in trainings)  # fitted, in a batch of 3
    for data, training in zip(people, trainings, strict=True):
        batched = finish_training(training)
        alone = train_person(data.glucose, data.carbs, data.insulin, settings=settings)
        assert (batched.champion, batched.hyperparameters, batched.lower, batched.upper) == (
            alone.champion,
            alone.hyperparameters,
            alone.lower,
            alone.upper,
        )
        for part in ("validation", "test"):
            found, expected = getattr(batched, part), getattr(alone, part)
            assert {name: metrics.as_dict() for name, metrics in found.items()} == {
                name: metrics.as_dict() for name, metrics in expected.items()
            }
        assert batched.state.tensors.keys() == alone.state.tensors.keys()
        for key, tensor in alone.state.tensors.items():
            assert torch.equal(batched.state.tensors[key], tensor), key
        assert any(line.endswith("in a batch of 3") for line in batched.log)


def test_one_thread_predicts_what_the_default_threads_predict(persons: list[Person]) -> None:
    """The retrain job's task works on one thread (``one_thread``); its networks' predictions, which score them,
    are the same bits as on the default thread count (the forecast job's), and the settings come back after."""
    for (train, validation), (network, best_epoch, _) in zip(
        persons, train_networks(EVENTS, QUICK, persons), strict=True
    ):
        forecaster = NetworkForecaster("network", EVENTS, QUICK)
        forecaster.network, forecaster.best_epoch = network, best_epoch
        for windows in (train, validation):
            default = forecaster.predict(windows.inputs)
            with one_thread():
                assert torch.get_num_threads() == 1
                np.testing.assert_array_equal(forecaster.predict(windows.inputs), default)


def test_the_holdout_takes_the_training_split_when_it_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Judging against the active version scores it on the test split the new version's training already made (same
    readings, time zone and settings): the same windows, so the same score to the bit, without splitting twice."""
    data = read_bundle(sorted(SIMULATED_DIR.glob("*.json.gz"))[0])
    readings = (data.glucose, data.carbs, data.insulin)
    state = fallback_state(*readings)  # an active version's state, in UTC
    training = prepare_training(*readings)
    elsewhere = prepare_training(*readings, tz="Europe/Berlin")
    other_settings = TrainingSettings(fractions=(0.5, 0.25, 0.25))
    fresh = holdout_rmse(state, *readings)
    assert holdout_rmse(state, *readings, training=elsewhere) == fresh  # split again, in the state's time zone
    assert holdout_rmse(state, *readings, settings=other_settings, training=training) == holdout_rmse(
        state, *readings, settings=other_settings
    )
    monkeypatch.setattr(pipeline, "prepare", None)  # the training's split serves: nothing is prepared again
    assert holdout_rmse(state, *readings, training=training) == fresh


def test_one_thread_sets_the_deterministic_flag_without_importing_the_compiler() -> None:
    """``one_thread`` sets torch's deterministic flag (and puts it back, warn-only mode included) without the import
    of torch._inductor that ``torch.use_deterministic_algorithms`` makes, which costs every job task ~0.8 s of CPU."""
    script = (
        "import sys, torch\n"
        "from glucokit.forecast.model import one_thread\n"
        "torch._C._set_deterministic_algorithms(True, warn_only=True)\n"
        "with one_thread():\n"
        "    assert torch.are_deterministic_algorithms_enabled()\n"
        "    assert not torch.is_deterministic_algorithms_warn_only_enabled()\n"
        "    assert torch.get_num_threads() == 1\n"
        "assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
        "assert 'torch._inductor' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
