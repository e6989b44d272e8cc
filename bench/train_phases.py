"""Where a person's training time goes outside the network stack: CPU seconds per person of each phase.

    .venv/bin/python bench/train_phases.py [--rounds 5]

Prepares the four simulated 14-day bundles of data/simulated/ as the retrain
job does (``prepare_training``), fits their networks as one stack
(``fit_networks``, not timed), then times ``prepare_training`` and
``finish_training`` of all four, --rounds times, and reports the round with
the least ``finish_training`` time: per person, the process's CPU seconds
(which a busy machine disturbs less than the wall clock) of each phase and,
inside ``finish_training``, of the candidates' predictions, their metrics
(``evaluate``), the test period's adaptive-band replay (``adaptive_runs``)
and the rest (fitting persistence, AR2 and ridge, calibrating, choosing).
Everything runs on one thread (``one_thread``), as in the retrain job's task.
Prints a JSON summary; the recorded result is bench/results/train_phases.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from glucokit.fhir.bundle import read_bundle
from glucokit.forecast import pipeline
from glucokit.forecast.model import one_thread
from glucokit.project import SIMULATED_DIR

# The parts of finish_training timed on their own, by the name pipeline calls them by.
PARTS = {"predict_windows": "predictions", "evaluate": "metrics", "adaptive_runs": "adaptive band replay"}


def timed(spent: dict[str, float], part: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        began = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[part] += time.process_time() - began

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with one_thread():
        _measure(args)


def _measure(args: argparse.Namespace) -> None:
    spent: dict[str, float] = dict.fromkeys(PARTS.values(), 0.0)
    for name, part in PARTS.items():
        setattr(pipeline, name, timed(spent, part, getattr(pipeline, name)))
    bundles = [read_bundle(path) for path in sorted(SIMULATED_DIR.glob("*.json.gz"))]
    trainings = [pipeline.prepare_training(data.glucose, data.carbs, data.insulin) for data in bundles]
    pipeline.fit_networks(trainings)
    load_before = os.getloadavg()[0]
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        began = time.process_time()
        for data in bundles:
            pipeline.prepare_training(data.glucose, data.carbs, data.insulin)
        prepare_s = time.process_time() - began
        spent.update(dict.fromkeys(spent, 0.0))
        began = time.process_time()
        for training in trainings:
            pipeline.finish_training(training)
        finish_s = time.process_time() - began
        parts = {part: spent[part] for part in PARTS.values()}
        row = {
            "prepare_training": prepare_s,
            "finish_training": finish_s,
            **parts,
            "rest of finish_training": finish_s - sum(parts.values()),
        }
        if not best or row["finish_training"] < best["finish_training"]:
            best = row
    print(
        json.dumps(
            {
                "benchmark": "CPU seconds per person of prepare_training and finish_training, and inside finish",
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
                "persons": len(bundles),
                "cpu_seconds_per_person": {key: round(value / len(bundles), 4) for key, value in best.items()},
                "command": "bench/train_phases.py " + " ".join(sys.argv[1:]),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
