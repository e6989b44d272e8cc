"""A small network for per-person glucose forecasting: a linear path plus an MLP, trained in a plain loop.

The linear path is ridge's model (the change from the latest reading is
mostly linear in the trend and the recent carbohydrate and insulin); the MLP
adds what is not, such as a meal's effect depending on the glucose level. It
predicts the change from the latest reading at all 12 horizons at once.

Per person there are ~2,300 training windows, so the model stays small
(~8.5 k parameters) and trains on the CPU in about a second. An MLP rather than
an LSTM: on the reference protocol an LSTM over the same hour did no better
(published: LSTM 16.04 vs ridge 15.84 mg/dL at 30 min) and costs more.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from glucokit.forecast.candidates import ModelState, rmse
from glucokit.forecast.features import FeatureSpec, standardizer
from glucokit.forecast.series import FloatArray
from glucokit.forecast.windows import HORIZONS, Inputs, Windows


@dataclass(frozen=True)
class NetworkConfig:
    features: FeatureSpec = field(default_factory=FeatureSpec)
    hidden: int = 64
    dropout: float = 0.1
    horizons: int = HORIZONS


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 20  # epochs without a better validation score before stopping
    seed: int = 20261122


class Network(nn.Module):
    x_mean: torch.Tensor
    x_scale: torch.Tensor
    y_scale: torch.Tensor

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        width = config.features.width
        # Standardization fitted on train, kept in the model so its state is self-contained.
        self.register_buffer("x_mean", torch.zeros(width))
        self.register_buffer("x_scale", torch.ones(width))
        self.register_buffer("y_scale", torch.ones(1))
        self.linear = nn.Linear(width, config.horizons)
        self.mlp = nn.Sequential(
            nn.Linear(width, config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.horizons),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, width) raw features -> (B, horizons) change from the latest reading, mg/dL
        z = (x - self.x_mean) / self.x_scale  # (B, width)
        change: torch.Tensor = (self.linear(z) + self.mlp(z)) * self.y_scale  # (B, horizons)
        return change


class NetworkForecaster:
    """The network behind the common forecaster interface."""

    def __init__(self, name: str, config: NetworkConfig, train_config: TrainConfig = TrainConfig()) -> None:
        self.name = name
        self.config = config
        self.train_config = train_config
        self.network = Network(config).eval()  # untrained until fit() or from_state()
        self.best_epoch = 0

    def fit(self, train: Windows, validation: Windows) -> str:
        began = time.perf_counter()
        self.network, self.best_epoch, epochs = train_network(self.config, self.train_config, train, validation)
        return (
            f"{self.name}: best validation epoch {self.best_epoch} of {epochs} run, {time.perf_counter() - began:.2f} s"
        )

    def predict(self, inputs: Inputs) -> FloatArray:
        with torch.no_grad():
            change = self.network(_tensor(self.config.features, inputs))  # (n, horizons)
        return np.asarray(inputs.last[:, None] + change.double().numpy())

    def export(self) -> ModelState:
        config = {
            "name": self.name,
            "network": {**asdict(self.config), "features": self.config.features.config()},
            "train": asdict(self.train_config),
            "best_epoch": self.best_epoch,
        }
        return ModelState("network", config, _snapshot(self.network))

    def feature_blocks(self) -> list[str]:
        return self.config.features.blocks()

    @classmethod
    def from_state(cls, state: ModelState) -> NetworkForecaster:
        network = dict(state.config["network"])
        config = NetworkConfig(**{**network, "features": FeatureSpec.from_config(network["features"])})
        forecaster = cls(state.config["name"], config, TrainConfig(**state.config["train"]))
        forecaster.network.load_state_dict(state.tensors)
        forecaster.network.eval()
        forecaster.best_epoch = int(state.config["best_epoch"])
        return forecaster


def train_network(
    config: NetworkConfig, train_config: TrainConfig, train: Windows, validation: Windows
) -> tuple[Network, int, int]:
    """Mini-batch AdamW on squared error, early stopping on validation mean RMSE over horizons.

    Returns the network with its best epoch's weights, in eval mode, the best
    epoch and the epochs run. Seeded, deterministic algorithms, one thread: the
    same data train the same weights.
    """
    x_train = _tensor(config.features, train.inputs)  # (n, width)
    change = train.target - train.inputs.last[:, None]  # (n, horizons)
    y_train = torch.tensor(change, dtype=torch.float32)  # (n, horizons)
    x_validation = _tensor(config.features, validation.inputs)  # (m, width)
    mean, scale = standardizer(config.features.matrix(train.inputs))

    with _deterministic_single_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_config.seed)
        network = Network(config)
        network.x_mean.copy_(torch.tensor(mean))
        network.x_scale.copy_(torch.tensor(scale))
        network.y_scale.fill_(float(change.std()) or 1.0)
        order = torch.Generator().manual_seed(train_config.seed)
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=train_config.learning_rate, weight_decay=train_config.weight_decay
        )
        best_score, best_epoch, best_weights = math.inf, 0, _snapshot(network)
        epoch = 0
        for epoch in range(1, train_config.max_epochs + 1):
            network.train()
            shuffled = torch.randperm(len(x_train), generator=order)
            for start in range(0, len(shuffled), train_config.batch_size):
                batch = shuffled[start : start + train_config.batch_size]
                # The loss is on the standardized change: every horizon weighs alike.
                loss = torch.mean(((network(x_train[batch]) - y_train[batch]) / network.y_scale) ** 2)
                optimizer.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                optimizer.step()
            network.eval()
            with torch.no_grad():
                predicted = validation.inputs.last[:, None] + network(x_validation).double().numpy()
            score = float(rmse(predicted, validation.target).mean())
            if score < best_score:
                best_score, best_epoch, best_weights = score, epoch, _snapshot(network)
            elif epoch - best_epoch >= train_config.patience:
                break
    network.load_state_dict(best_weights)
    network.eval()
    return network, best_epoch, epoch


@contextlib.contextmanager
def _deterministic_single_thread() -> Iterator[None]:
    """Deterministic algorithms and one intra-op thread while training, as they were afterwards.

    Batches of 256 x 46 are far too small to gain from a second thread: it only
    adds a barrier per operation, and when the cores are busy with anything else
    that barrier waits for a descheduled thread (measured: 1-2 s per person
    became 20+ s on a loaded 2-core machine). One thread also makes the weights
    independent of the machine's core count. Persons train in parallel instead.
    """
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _snapshot(network: Network) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in network.state_dict().items()}


def _tensor(spec: FeatureSpec, inputs: Inputs) -> torch.Tensor:
    return torch.tensor(spec.matrix(inputs), dtype=torch.float32)
