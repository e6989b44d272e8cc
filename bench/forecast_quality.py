"""Forecast quality on the reference protocol: per-person training on simulated patients, test metrics.

    .venv/bin/python bench/forecast_quality.py [--patients 10] [--days 14] [--seed 20261122] [--out FILE]

Simulates --patients virtual patients for --days with glucokit.tooling.simulate (a few
minutes on 2 cores; the bundles are cached under .glucokit/forecast-bench/, so
reruns start at once), takes each bundle's CGM readings, carbohydrate intakes
and insulin deliveries, and runs glucokit.forecast.train_person on each: days
1-8 train, 9-10 validation, 11-14 test. Prints a JSON summary (mean and sd over
patients of the test metrics per candidate and for each patient's champion)
and writes it to --out too when given; the recorded result is
bench/results/forecast_quality.json.

Reference numbers (same protocol, published for this simulator setup), test
RMSE at 30 / 60 min: persistence 19.80 / 30.17, AR2 17.71 / 27.69, ridge AR +
time of day 15.84 / 23.43, LSTM + time of day 16.04 / 21.91. Targets for the
champion: 30-min RMSE <= 15.0, 60-min <= 21.0, 80 % bands covering 78-82 %.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from glucokit.fhir.bundle import read_bundle
from glucokit.forecast.evaluation import evaluate_people
from glucokit.tooling.simulate import PATIENT_ORDER, simulate, write_bundles

CACHE = Path(".glucokit/forecast-bench")
REFERENCE = {
    "persistence": {"rmse_30": 19.80, "rmse_60": 30.17},
    "ar2": {"rmse_30": 17.71, "rmse_60": 27.69},
    "ridge": {"rmse_30": 15.84, "rmse_60": 23.43},
    "lstm_time_of_day": {"rmse_30": 16.04, "rmse_60": 21.91},
}
TARGET_RMSE = {"rmse_30": 15.0, "rmse_60": 21.0}
TARGET_COVERAGE = (0.78, 0.82)


def bundles(patients: int, days: float, seed: int) -> tuple[list[Path], dict[str, str]]:
    """The kept patients' bundle files (simulated once, then cached) and why the others were dropped."""
    folder = CACHE / f"sim-{patients}x{days:g}-seed{seed}"
    manifest = folder / "manifest.json"
    if not manifest.exists():
        results = simulate(patients, days, seed=seed)
        write_bundles(results, folder, compress=True)
        dropped = {result.name: result.dropped for result in results if result.dropped is not None}
        manifest.write_text(json.dumps({"patients": list(PATIENT_ORDER[:patients]), "dropped": dropped}, indent=2))
    recorded = json.loads(manifest.read_text())
    kept = [name for name in recorded["patients"] if name not in recorded["dropped"]]
    return [folder / f"{name.replace('#', '-')}.json.gz" for name in kept], recorded["dropped"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--days", type=float, default=14)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = parser.parse_args()

    began = time.perf_counter()
    files, dropped = bundles(args.patients, args.days, args.seed)
    simulated_s = time.perf_counter() - began

    people = {path.name.removesuffix(".json.gz"): read_bundle(path) for path in files}
    evaluation = evaluate_people(people)
    champion = evaluation["test"]["champion"]
    result = {
        "benchmark": "per-person forecasting on simulated patients: train days 1-8, validation 9-10, test 11-14",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "notes": [
            "persons are trained one after the other; the network trains on one thread (see model.py)",
            "seconds_per_person is train_person's own clock: resampling, split, all candidates, metrics;"
            " the first person also pays torch's warm-up",
            "the champion row is each patient's champion (chosen on validation) scored on test",
        ],
        "protocol": {"patients": args.patients, "days": args.days, "seed": args.seed, "coverage_nominal": 0.8},
        "dropped_by_simulator": dropped,
        "simulate_or_cache_s": round(simulated_s, 1),
        **evaluation,
        "reference": REFERENCE,
        "targets": {
            **{key: {"target": target, "met": champion[key]["mean"] <= target} for key, target in TARGET_RMSE.items()},
            "coverage_all_horizons": {
                "target": TARGET_COVERAGE,
                "met": TARGET_COVERAGE[0] <= champion["coverage_all_horizons"]["mean"] <= TARGET_COVERAGE[1],
            },
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
