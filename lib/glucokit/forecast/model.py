"""A small network for per-person glucose forecasting: a linear path plus an MLP, trained many persons at a time.

The linear path is ridge's model (the change from the latest reading is
mostly linear in the trend and the recent carbohydrate and insulin); the MLP
adds what is not, such as a meal's effect depending on the glucose level. It
predicts the change from the latest reading at all 12 horizons at once.

Per person there are ~2,300 training windows, so the model stays small
(~8.5 k parameters) and trains on the CPU in about a second. An MLP rather than
an LSTM: on the reference protocol an LSTM over the same hour did no better
(published: LSTM 16.04 vs ridge 15.84 mg/dL at 30 min) and costs more.

Persons train side by side as one stacked model (``train_networks``): every
parameter gets a leading person axis and the layers multiply with
torch.baddbmm, so a batch step costs one set of operations for the whole
stack instead of one per person. One person alone (``train_network``) is the
same code with a stack of one, and on the CPU a person's weights are the same,
to the bit, in any stack. ``fit_stacked`` fits many persons' forecasters that
way (the retrain job's batches); ``NetworkForecaster.fit`` is it with one.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from glucokit.forecast.candidates import ModelState, rmse
from glucokit.forecast.features import FeatureSpec, standardizer
from glucokit.forecast.series import FloatArray
from glucokit.forecast.windows import HORIZONS, Inputs, Windows

# Every person's block of a stacked tensor starts on a 64-byte boundary, as it
# does for a person alone: the oneMKL developer guide ("Obtaining Numerically
# Reproducible Results") names the alignment of data arrays among what may
# change the order of its floating-point operations. Activations have a
# multiple of 16 rows per person (batches of 256 need no padding); in a
# person's row of stacked parameters each layer's weight and bias starts on a
# multiple of 16 floats.
ROW_MULTIPLE: Final = 16
PARAMETER_ALIGNMENT: Final = 16


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
        (line,) = fit_stacked([(self, train, validation)])
        return line

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
    same data train the same weights. It is ``train_networks`` with one person.
    """
    (trained,) = train_networks(config, train_config, [(train, validation)])
    return trained


def train_networks(
    config: NetworkConfig,
    train_config: TrainConfig,
    persons: Sequence[tuple[Windows, Windows]],
    device: torch.device | str | None = None,
) -> list[tuple[Network, int, int]]:
    """``train_network`` for each person's (train, validation) windows, all trained side by side as one stack.

    Every parameter gets a leading person axis, (P, in, out), and the layers
    multiply with torch.baddbmm. Each person trains as they would alone: the
    same initial weights (``Network(config)`` after seeding), their own
    standardization, their own order of windows (a generator seeded with the
    seed), the dropout masks of the same epoch and batch, their own loss, AdamW
    step count and early stopping. Persons that stop leave the stack with their
    best epoch's weights. On the CPU a person's weights do not depend on who
    else is in the stack, to the bit (tests/test_batched_training.py); on a GPU
    (``device="cuda"``) the matrix products may round differently with the
    stack's size. Returns, per person in order, the network (on the CPU, in eval
    mode), its best epoch and the epochs run.
    """
    if not persons:
        return []
    if min(min(len(train), len(validation)) for train, validation in persons) == 0:
        raise ValueError("every person needs at least one train and one validation window")
    device = torch.device("cpu" if device is None else device)
    settings = one_thread() if device.type == "cpu" else contextlib.nullcontext()
    with settings:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(train_config.seed)
            initial = Network(config)
        people = [_Person.of(config.features, train, validation) for train, validation in persons]
        best, best_epochs, epochs_run = _train_stack(train_config, initial, people, device)
    networks = []
    for person, row in zip(people, best.cpu(), strict=True):
        network = copy.deepcopy(initial)
        with torch.no_grad():
            for layer, (weight, bias) in zip(_layers(network), _unstack(row[None], network), strict=True):
                layer.weight.copy_(weight[0].T)
                layer.bias.copy_(bias[0, 0])
            network.x_mean.copy_(person.x_mean)
            network.x_scale.copy_(person.x_scale)
            network.y_scale.copy_(person.y_scale)
        networks.append(network.eval())
    return list(zip(networks, best_epochs, epochs_run, strict=True))


def train_grouped(
    train_config: TrainConfig,
    persons: Sequence[tuple[NetworkConfig, Windows, Windows]],
    *,
    stack_size: int = 256,
    device: torch.device | str | None = None,
) -> list[tuple[Network, int, int]]:
    """``train_networks`` for persons whose networks differ (feature width): those sharing a config train together.

    Each group trains as stacks of at most ``stack_size`` persons, in the order
    given; results come back in the order of ``persons``. On the CPU a person's
    result is the same in any group or stack.
    """
    groups: dict[NetworkConfig, list[int]] = {}
    for index, (config, _, _) in enumerate(persons):
        groups.setdefault(config, []).append(index)
    results: dict[int, tuple[Network, int, int]] = {}
    for config, members in groups.items():
        for start in range(0, len(members), stack_size):
            stack = members[start : start + stack_size]
            splits = [(persons[index][1], persons[index][2]) for index in stack]
            results.update(zip(stack, train_networks(config, train_config, splits, device), strict=True))
    return [results[index] for index in range(len(persons))]


def fit_stacked(
    fits: Sequence[tuple[NetworkForecaster, Windows, Windows]], device: torch.device | str | None = None
) -> list[str]:
    """``NetworkForecaster.fit`` of many forecasters at once, each on its (train, validation) windows.

    Their networks train side by side (``train_grouped``: those sharing a
    network and a train config in one stack); on the CPU each gets the weights
    it gets alone. Returns each fit's log line, in order.
    """
    began = time.perf_counter()
    groups: dict[TrainConfig, list[int]] = {}
    for index, (forecaster, _, _) in enumerate(fits):
        groups.setdefault(forecaster.train_config, []).append(index)
    epochs_run = [0] * len(fits)
    for train_config, members in groups.items():
        persons = [(fits[index][0].config, fits[index][1], fits[index][2]) for index in members]
        for index, (network, best_epoch, epochs) in zip(
            members, train_grouped(train_config, persons, device=device), strict=True
        ):
            fits[index][0].network, fits[index][0].best_epoch, epochs_run[index] = network, best_epoch, epochs
    seconds = time.perf_counter() - began
    stack = f" in a batch of {len(fits)}" if len(fits) > 1 else ""
    return [
        f"{forecaster.name}: best validation epoch {forecaster.best_epoch} of {epochs} run, {seconds:.2f} s{stack}"
        for (forecaster, _, _), epochs in zip(fits, epochs_run, strict=True)
    ]


class StackedAdamW:
    """torch.optim.AdamW's update for stacked parameters (P, size), with a step count per person.

    AdamW is Adam with the weight decay decoupled from the gradient
    (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019).
    As torch.optim.AdamW documents it, with gradient g at a person's step t:
    p *= 1 - lr * wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). The operations
    are those of torch's single-tensor implementation, with the bias
    corrections computed as it computes them (Python floats, used as float32)
    but per person, as a column: a person's update is the same as
    torch.optim.AdamW's, to the bit.
    """

    def __init__(
        self,
        persons: int,
        size: int,
        *,
        learning_rate: float,
        weight_decay: float,
        max_steps: int,
        device: torch.device | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.decay = 1 - learning_rate * weight_decay
        self.betas = betas
        self.eps = eps
        self.exp_avg = torch.zeros((persons, size), device=device)
        self.exp_avg_sq = torch.zeros((persons, size), device=device)
        self.steps = torch.zeros(persons, dtype=torch.int64, device=device)  # updates so far, per person
        # Per step count t = 1..max_steps: -lr / (1 - b1^t) and sqrt(1 - b2^t).
        counts = range(1, max_steps + 1)
        self.step_size = torch.tensor([-learning_rate / (1 - betas[0] ** t) for t in counts], device=device)
        self.correction2 = torch.tensor([(1 - betas[1] ** t) ** 0.5 for t in counts], device=device)

    def step(self, params: torch.Tensor, grad: torch.Tensor, idle: torch.Tensor) -> None:
        """Update ``params`` (P, size) in place, all rows but ``idle`` (persons without a batch this step).

        An idle person's parameters, moments and step count stay as they were.
        """
        kept = [tensor[idle] for tensor in (params, self.exp_avg, self.exp_avg_sq)]
        self.steps += 1
        self.steps[idle] -= 1
        at = self.steps - 1  # (P,) rows of the bias correction tables
        beta1, beta2 = self.betas
        params.mul_(self.decay)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denominator = (self.exp_avg_sq.sqrt() / self.correction2[at, None]).add_(self.eps)
        # addcdiv_'s value is one number; this is its arithmetic, p + (value * m) / denominator, per person.
        params.add_(self.exp_avg * self.step_size[at, None] / denominator)
        for tensor, rows in zip((params, self.exp_avg, self.exp_avg_sq), kept, strict=True):
            tensor[idle] = rows

    def keep(self, rows: torch.Tensor) -> None:
        """Only these rows go on (the persons still training), in this order."""
        self.exp_avg, self.exp_avg_sq, self.steps = self.exp_avg[rows], self.exp_avg_sq[rows], self.steps[rows]


@dataclass(frozen=True)
class _Person:
    """A person's windows as their network sees them: standardized with the scaling of their train split."""

    x_mean: torch.Tensor  # (width,)
    x_scale: torch.Tensor  # (width,)
    y_scale: torch.Tensor  # (1,) sd of the change from the latest reading, mg/dL
    z_train: torch.Tensor  # (n, width)
    y_train: torch.Tensor  # (n, horizons) change from the latest reading / y_scale
    z_validation: torch.Tensor  # (m, width)
    validation: Windows

    @classmethod
    def of(cls, spec: FeatureSpec, train: Windows, validation: Windows) -> _Person:
        matrix = spec.matrix(train.inputs)  # (n, width)
        mean, scale = standardizer(matrix)
        change = train.target - train.inputs.last[:, None]  # (n, horizons)
        x_mean, x_scale = torch.tensor(mean, dtype=torch.float32), torch.tensor(scale, dtype=torch.float32)
        y_scale = torch.tensor([float(change.std()) or 1.0])
        return cls(
            x_mean=x_mean,
            x_scale=x_scale,
            y_scale=y_scale,
            # The same float32 operations as Network.forward's standardization.
            z_train=(torch.tensor(matrix, dtype=torch.float32) - x_mean) / x_scale,
            y_train=torch.tensor(change, dtype=torch.float32) / y_scale,
            z_validation=(_tensor(spec, validation.inputs) - x_mean) / x_scale,
            validation=validation,
        )


def _train_stack(
    train_config: TrainConfig, initial: Network, people: list[_Person], device: torch.device
) -> tuple[torch.Tensor, list[int], list[int]]:
    """Epochs of a _Stack with early stopping per person: best weights as rows (P, size), best epochs, epochs run."""
    stack = _Stack(train_config, initial, people, device)
    best = stack.params.clone()
    best_score = [math.inf] * len(people)
    best_epochs = [0] * len(people)
    epochs_run = [train_config.max_epochs] * len(people)
    for epoch in range(1, train_config.max_epochs + 1):
        stack.train_epoch(epoch)
        predicted = stack.validate()  # (P, m, horizons)
        improved, going = [], np.ones(len(stack.slots), dtype=bool)
        for row, slot in enumerate(stack.slots):
            validation = people[slot].validation
            score = float(
                rmse(validation.inputs.last[:, None] + predicted[row, : len(validation)], validation.target).mean()
            )
            if score < best_score[slot]:
                best_score[slot], best_epochs[slot] = score, epoch
                improved.append(row)
            elif epoch - best_epochs[slot] >= train_config.patience:
                epochs_run[slot], going[row] = epoch, False
        rows = torch.tensor(improved, dtype=torch.int64, device=device)
        best[torch.from_numpy(stack.slots[improved]).to(device)] = stack.params[rows]
        if not going.any():
            break
        if not going.all():
            stack.keep(going)
    return best, best_epochs, epochs_run


class _Stack:
    """The persons still training, side by side: their windows, parameters (P, size) and optimizer state.

    Batches of ``batch_size`` windows are padded to ``rows`` rows that weigh
    nothing; a person whose windows ran out this epoch has only such rows and
    is not updated. A person's loss is the mean over their real rows and
    horizons, the stack's loss the sum over persons: gradients never mix.
    """

    def __init__(
        self, train_config: TrainConfig, initial: Network, people: list[_Person], device: torch.device
    ) -> None:
        self.train_config = train_config
        self.initial = initial  # its layers lay out the stacked parameters
        self.rows = -(-train_config.batch_size // ROW_MULTIPLE) * ROW_MULTIPLE
        self.counts = np.array([len(person.z_train) for person in people])  # train windows per person
        self.longest = int(self.counts.max())
        # Train windows (z, y) stay in their person's slot, (P * longest, ...); batches are picked by index.
        self.train = [
            _padded([person.z_train for person in people], self.longest).flatten(0, 1).to(device),
            _padded([person.y_train for person in people], self.longest).flatten(0, 1).to(device),
        ]
        # Validation in blocks of `rows` windows, (blocks, P, rows, width): a person's windows go
        # through products of the same shapes in any stack.
        blocks = -(-max(len(person.z_validation) for person in people) // self.rows)
        z_validation = _padded([person.z_validation for person in people], blocks * self.rows)
        self.z_validation = (
            z_validation.view(len(people), blocks, self.rows, -1).transpose(0, 1).contiguous().to(device)
        )
        self.y_scale = torch.stack([person.y_scale for person in people])[:, :, None].to(device)  # (P, 1, 1)
        self.params = _row(initial).to(device).repeat(len(people), 1)  # everyone starts alike
        self.optimizer = StackedAdamW(
            len(people),
            self.params.shape[1],
            learning_rate=train_config.learning_rate,
            weight_decay=train_config.weight_decay,
            max_steps=train_config.max_epochs * -(-self.longest // train_config.batch_size),
            device=device,
        )
        self.orders = [torch.Generator().manual_seed(train_config.seed) for _ in people]
        self.masks = torch.Generator()
        self.slots = np.arange(len(people))  # the person of each row of the stack
        self.device = device

    def train_epoch(self, epoch: int) -> None:
        counts = self.counts[self.slots]
        steps = -(-int(counts.max()) // self.train_config.batch_size)
        index, weight = self._batches(counts, steps)
        layers = [tensor for layer in _unstack(self.params, self.initial) for tensor in layer]
        grad = torch.zeros_like(self.params)
        grad_layers = [tensor for layer in _unstack(grad, self.initial) for tensor in layer]
        for step in range(steps):
            idle = torch.from_numpy(np.flatnonzero(counts <= step * self.train_config.batch_size)).to(self.device)
            z, y = (data.index_select(0, index[step]).view(len(self.slots), self.rows, -1) for data in self.train)
            leaves = [tensor.detach().requires_grad_() for tensor in layers]
            pairs = list(zip(leaves[::2], leaves[1::2], strict=True))
            out = _forward(pairs, z, self._dropout(epoch, step))  # (P, rows, horizons)
            loss = ((out - y).square() * weight[step]).sum()
            for target, found in zip(grad_layers, torch.autograd.grad(loss, leaves), strict=True):
                target.copy_(found)
            self.optimizer.step(self.params, grad, idle)

    def validate(self) -> FloatArray:
        """(P, m, horizons) the change predicted for the validation windows, mg/dL (m: the most windows)."""
        layers = _unstack(self.params, self.initial)
        with torch.no_grad():
            change = torch.cat([_forward(layers, block) for block in self.z_validation], dim=1) * self.y_scale
        return np.asarray(change.double().cpu().numpy())

    def keep(self, going: npt.NDArray[np.bool_]) -> None:
        """Only the rows ``going`` go on training; the others leave the stack."""
        rows = torch.from_numpy(np.flatnonzero(going)).to(self.device)
        self.params, self.z_validation, self.y_scale = self.params[rows], self.z_validation[:, rows], self.y_scale[rows]
        self.optimizer.keep(rows)
        self.slots = self.slots[going]

    def _batches(self, counts: npt.NDArray[np.int64], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's batches: per step, the windows' rows in the train data (steps, P * rows), their loss weights.

        Each person's windows come in the order of their own generator. The
        weights (steps, P, rows, 1) are 1 / (windows in the batch x horizons)
        on real rows and 0 on padding.
        """
        batch = self.train_config.batch_size
        order = torch.zeros((len(self.slots), steps * batch), dtype=torch.int64)
        for row, slot in enumerate(self.slots):
            order[row, : self.counts[slot]] = torch.randperm(int(self.counts[slot]), generator=self.orders[slot])
        padding = (0, self.rows - batch)
        index = (
            F.pad(order.view(-1, steps, batch), padding) + torch.from_numpy(self.slots)[:, None, None] * self.longest
        )
        real = F.pad((torch.arange(steps * batch) < torch.from_numpy(counts)[:, None]).view(-1, steps, batch), padding)
        weight = real / (real.sum(2, keepdim=True) * self.train[1].shape[1]).clamp(min=1)  # (P, steps, rows)
        return index.transpose(0, 1).flatten(1).to(self.device), weight.transpose(0, 1)[..., None].to(self.device)

    def _dropout(self, epoch: int, step: int) -> torch.Tensor:
        """(2, rows, hidden) inverted dropout multipliers, 0 or 1 / (1 - p), drawn from (seed, epoch, step) alone.

        Every person in a stack shares them, so a person sees the same masks in any stack.
        """
        entropy = (self.train_config.seed, epoch, step)
        self.masks.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]))
        config = self.initial.config
        keep = torch.rand((2, self.rows, config.hidden), generator=self.masks) >= config.dropout
        return (keep / (1 - config.dropout)).to(self.device)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Deterministic algorithms and one intra-op thread while training (or a whole retrain), as they were afterwards.

    Batches of 256 x 46 are far too small to gain from a second thread: it only
    adds a barrier per operation, and when the cores are busy with anything else
    that barrier waits for a descheduled thread (measured: 1-2 s per person
    became 20+ s on a loaded 2-core machine). One thread also makes the weights
    independent of the machine's core count. Persons train in parallel instead.
    The retrain job's task holds it for all its work (predictions too): an idle
    second thread also spins for a while after every multithreaded operation,
    CPU the other task and the database would have used.

    The flag is set as ``torch.use_deterministic_algorithms`` sets it, but
    without the import of torch._inductor that function makes to pass the flag
    on to ``torch.compile`` (not used here): about 0.8 s of CPU in every task
    process.
    """
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    torch._C._set_deterministic_algorithms(True, warn_only=False)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch._C._set_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])


def _layers(network: Network) -> list[nn.Linear]:
    """The linear path, then the MLP's layers: the order of a person's row of stacked parameters."""
    return [network.linear, *(module for module in network.mlp if isinstance(module, nn.Linear))]


def _unstack(params: torch.Tensor, network: Network) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer of ``network``, views of its weight (P, in, out) and bias (P, 1, out) in stacked ``params`` (P, size).

    A weight is stored transposed, (in, out), to multiply a batch from the
    right. Each piece starts on a 64-byte boundary of a person's row.
    """
    views, offset = [], 0
    for layer in _layers(network):
        weight = params[:, offset : offset + layer.in_features * layer.out_features]
        offset += _aligned(layer.in_features * layer.out_features)
        bias = params[:, offset : offset + layer.out_features]
        offset += _aligned(layer.out_features)
        views.append((weight.view(-1, layer.in_features, layer.out_features), bias[:, None]))
    return views


def _row(network: Network) -> torch.Tensor:
    """(1, size) the network's parameters as a row of stacked parameters, padding zero."""
    layers = _layers(network)
    size = sum(_aligned(layer.in_features * layer.out_features) + _aligned(layer.out_features) for layer in layers)
    row = torch.zeros((1, size))
    for layer, (weight, bias) in zip(layers, _unstack(row, network), strict=True):
        weight[0] = layer.weight.detach().T
        bias[0, 0] = layer.bias.detach()
    return row


def _aligned(count: int) -> int:
    return -(-count // PARAMETER_ALIGNMENT) * PARAMETER_ALIGNMENT


def _forward(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]], z: torch.Tensor, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """(P, rows, horizons) the stacked networks' standardized change, from z (P, rows, width) standardized inputs.

    ``keep`` (2, rows, hidden): the multipliers of the MLP's two dropout layers while training.
    """
    (linear_weight, linear_bias), *mlp = layers
    hidden = z
    for index, (weight, bias) in enumerate(mlp[:-1]):
        hidden = F.gelu(torch.baddbmm(bias, hidden, weight))  # (P, rows, hidden)
        if keep is not None:
            hidden = hidden * keep[index]
    weight, bias = mlp[-1]
    return torch.baddbmm(linear_bias, z, linear_weight) + torch.baddbmm(bias, hidden, weight)


def _padded(tensors: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    """(P, length, ...) the tensors side by side, each zero-padded after its own rows."""
    stacked = tensors[0].new_zeros((len(tensors), length, *tensors[0].shape[1:]))
    for row, tensor in zip(stacked, tensors, strict=True):
        row[: len(tensor)] = tensor
    return stacked


def _snapshot(network: Network) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in network.state_dict().items()}


def _tensor(spec: FeatureSpec, inputs: Inputs) -> torch.Tensor:
    return torch.tensor(spec.matrix(inputs), dtype=torch.float32)
