"""Batched network training: persons' networks trained per hour one at a time and as stacks.

    .venv/bin/python bench/train_batched.py [--persons 256] [--alone 16] [--stacks 16 64 256] [--out FILE]

Makes --persons distinct persons from the four simulated 14-day bundles of
data/simulated/ (person i: bundle i mod 4, its readings from i div 4 hours
after the first to 5 i mod 23 hours before the last), splits each as
train_person does, and trains their networks only (the network candidate's
config, the default TrainConfig): (a) the first --alone persons one at a time
with train_network, the per-person path; (b) all of them with train_grouped,
in stacks of each --stacks size, on the CPU. Training runs on one torch thread
(see model.py). Reports persons per hour for each (wall clock, and the
process's CPU time, which a busy machine disturbs less), whether the stacked
results matched the one-at-a-time ones and each other (best epochs, epochs
run, max abs weight difference), the machine and its load. With a CUDA device
the stacks are timed there too and compared with the CPU's results. Prints a
JSON summary and writes it to --out too when given; the recorded result is
bench/results/train_batched.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import torch

from glucokit.fhir.bundle import read_bundle
from glucokit.forecast import PersonData
from glucokit.forecast.model import Network, NetworkConfig, NetworkForecaster, TrainConfig, train_grouped, train_network
from glucokit.forecast.pipeline import DEFAULT_SETTINGS, candidates
from glucokit.forecast.series import prepare
from glucokit.forecast.windows import Windows, split
from glucokit.project import SIMULATED_DIR

Person = tuple[NetworkConfig, Windows, Windows]
Trained = list[tuple[Network, int, int]]


def cut(data: PersonData, index: int) -> Person:
    """Person ``index``: a span of one bundle, split as train_person splits it, with the network's config."""
    first = data.glucose[0][0] + timedelta(hours=index // 4)
    last = data.glucose[-1][0] - timedelta(hours=5 * index % 23)

    def within(points: list[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
        return [(moment, value) for moment, value in points if first <= moment <= last]

    series = prepare(within(data.glucose), within(data.carbs), within(data.insulin))
    parts = split(series)
    network = next(f for f in candidates(series, parts.bounds[0], DEFAULT_SETTINGS) if isinstance(f, NetworkForecaster))
    return network.config, parts.train, parts.validation


def timed(train: Callable[[], Trained]) -> tuple[Trained, float, float]:
    """The results, wall seconds and this process's CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    results = train()
    return results, time.perf_counter() - wall, time.process_time() - cpu


def difference(found: Trained, expected: Trained) -> dict[str, Any]:
    """How far ``found`` is from ``expected``: epochs that differ, the largest weight difference."""
    largest = 0.0
    for (network, _, _), (reference, _, _) in zip(found, expected, strict=False):
        state = network.state_dict()
        for key, tensor in reference.state_dict().items():
            largest = max(largest, float((state[key] - tensor).abs().max()))
    epochs = sum(a[1:] != b[1:] for a, b in zip(found, expected, strict=False))
    return {"persons": min(len(found), len(expected)), "epochs_differ": epochs, "max_abs_weight_difference": largest}


def rate(persons: int, seconds: float) -> int:
    return round(persons / seconds * 3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=256)
    parser.add_argument("--alone", type=int, default=16, help="persons trained one at a time")
    parser.add_argument("--stacks", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = parser.parse_args()

    load_before = os.getloadavg()
    began = time.perf_counter()
    bundles = [read_bundle(path) for path in sorted(SIMULATED_DIR.glob("*.json.gz"))]
    persons = [cut(bundles[index % len(bundles)], index) for index in range(args.persons)]
    prepared_s = time.perf_counter() - began
    settings = TrainConfig()
    config, train, validation = persons[0]
    train_network(config, TrainConfig(max_epochs=1), train, validation)  # torch's warm-up

    alone, alone_s, alone_cpu = timed(
        lambda: [
            train_network(config, settings, train, validation) for config, train, validation in persons[: args.alone]
        ]
    )
    runs = []
    first: Trained = []
    for size in args.stacks:
        stacked, seconds, cpu = timed(partial(train_grouped, settings, persons, stack_size=size))
        first = first or stacked
        runs.append(
            {
                "stack_size": size,
                "seconds": round(seconds, 1),
                "cpu_seconds": round(cpu, 1),
                "persons_per_hour": rate(len(persons), seconds),
                "persons_per_cpu_hour": rate(len(persons), cpu),
                "versus_one_at_a_time": difference(stacked, alone),
                "versus_first_stack_size": difference(stacked, first),
            }
        )
    gpu: dict[str, Any]
    if torch.cuda.is_available():
        gpu = {"measured": True, "device": torch.cuda.get_device_name(), "runs": []}
        for size in args.stacks:
            stacked, seconds, _ = timed(partial(train_grouped, settings, persons, stack_size=size, device="cuda"))
            gpu["runs"].append(
                {
                    "stack_size": size,
                    "seconds": round(seconds, 1),
                    "persons_per_hour": rate(len(persons), seconds),
                    "versus_cpu": difference(stacked, first),
                }
            )
    else:
        gpu = {"measured": False, "reason": f"torch.cuda.is_available() is False (torch {torch.__version__})"}

    epochs = [epochs for _, _, epochs in first]
    result = {
        "benchmark": "networks trained per hour (network family only): one person at a time vs stacks of persons",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "torch_threads_training": 1,
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "persons": len(persons),
        "feature_widths": sorted({config.features.width for config, _, _ in persons}),
        "train_windows": {"min": min(len(p[1]) for p in persons), "max": max(len(p[1]) for p in persons)},
        "epochs_run": {"min": min(epochs), "max": max(epochs), "mean": round(sum(epochs) / len(epochs), 1)},
        "prepare_s": round(prepared_s, 1),
        "one_at_a_time": {
            "persons": len(alone),
            "seconds": round(alone_s, 1),
            "cpu_seconds": round(alone_cpu, 1),
            "persons_per_hour": rate(len(alone), alone_s),
            "persons_per_cpu_hour": rate(len(alone), alone_cpu),
        },
        "stacks_cpu": runs,
        "gpu": gpu,
        "notes": [
            "one_at_a_time is train_network, the path train_person takes; the stacks are train_grouped",
            "versus_one_at_a_time compares the persons trained both ways; 0.0 and 0 epochs differing is bit-exact",
            "one torch thread throughout: a second core serves a second process (the retrain job's tasks)",
        ],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
