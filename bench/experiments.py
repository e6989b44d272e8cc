"""The A/B decision rule simulated: its false-positive rate under continuous monitoring, its power and sample size.

Each simulated experiment has persons arriving in batches of 10, each assigned
to variant a or b with probability 1/2 (what the hash assignment does), each
bringing one per-person 30-minute MAE. After every batch the rule of
``glucokit.modelops.experiments`` looks (the mixture SPRT at alpha 0.05, mixture sd
2 mg/dL, at least 10 persons per variant) and the experiment stops at the
first look where it rejects, or at 1,000 persons.

Per-person MAEs are log-normal with mean 12 mg/dL: with sd 3 mg/dL, about the
spread of ridge's 30-minute MAE across the ten simulated persons of
bench/forecast_quality.py (12.1 +- 2.5), and with sd 6 mg/dL, a skewed,
heavier-tailed population. In A/A experiments both variants draw from the same
population: every stop is a false positive. Alongside, the naive rule (a
two-sided z-test at 0.05 at every look) shows what peeking costs without the
mixture. In A/B experiments variant b's MAEs are lower by 1, 2 or 3 mg/dL.

Run: .venv/bin/python bench/experiments.py   (writes bench/results/experiments.json)
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from glucokit.modelops import experiments
from glucokit.modelops.experiments import FloatArray, Rule

SEED: Final = 20261122
RULE: Final = Rule()
BATCH: Final = 10
MAX_PERSONS: Final = 1000
MEAN_MAE: Final = 12.0
CHUNK: Final = 1000  # experiments simulated at once
NAIVE_Z: Final = 1.959963984540054  # two-sided 5 %
RESULT: Final = Path(__file__).parent / "results" / "experiments.json"


def _lognormal(rng: np.random.Generator, sd: float, shape: tuple[int, int]) -> FloatArray:
    sigma2 = math.log(1 + (sd / MEAN_MAE) ** 2)
    return rng.lognormal(math.log(MEAN_MAE) - sigma2 / 2, math.sqrt(sigma2), shape)


def _arm_stats(
    values: FloatArray, member: npt.NDArray[np.bool_], looks: npt.NDArray[np.intp]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Count, mean and sample variance of one variant's values at each look (persons up to look index)."""
    n = np.cumsum(member, axis=1)[:, looks].astype(np.float64)
    s1 = np.cumsum(values * member, axis=1)[:, looks]
    s2 = np.cumsum(values * values * member, axis=1)[:, looks]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        variance = (s2 - n * mean * mean) / (n - 1)
    return n, mean, variance


def simulate(rng: np.random.Generator, experiments_run: int, sd: float, effect: float) -> dict[str, Any]:
    """``experiments_run`` experiments where variant b's MAE is lower by ``effect``; stops and where they happened."""
    looks = np.arange(BATCH, MAX_PERSONS + 1, BATCH) - 1
    threshold = math.log(1 / RULE.alpha)
    rejected = right = naive_rejected = 0
    stopped_at: list[int] = []
    for start in range(0, experiments_run, CHUNK):
        shape = (min(CHUNK, experiments_run - start), MAX_PERSONS)
        in_b = rng.random(shape) < 0.5
        values = _lognormal(rng, sd, shape) - effect * in_b
        n_a, mean_a, var_a = _arm_stats(values, ~in_b, looks)
        n_b, mean_b, var_b = _arm_stats(values, in_b, looks)
        ready = np.minimum(n_a, n_b) >= RULE.min_persons_per_variant
        difference = mean_b - mean_a
        variance = np.where(ready, var_a / np.where(ready, n_a, 1) + var_b / np.where(ready, n_b, 1), 1.0)
        log_lr = experiments.mixture_log_likelihood_ratio(difference, variance, RULE.mixture_sd**2)
        crossed = ready & (log_lr >= threshold)
        stops = crossed.any(axis=1)
        first = np.argmax(crossed, axis=1)
        rejected += int(stops.sum())
        right += int((stops & (difference[np.arange(len(first)), first] < 0)).sum())
        stopped_at += np.where(stops, looks[first] + 1, MAX_PERSONS).tolist()
        naive_rejected += int((ready & (np.abs(difference) >= NAIVE_Z * np.sqrt(variance))).any(axis=1).sum())
    rate = rejected / experiments_run
    return {
        "experiments": experiments_run,
        "per_person_mae_sd": sd,
        "effect_mg_dl": effect,
        "rejected": rate,
        "rejected_mc_se": round(math.sqrt(rate * (1 - rate) / experiments_run), 5),
        "rejected_for_b": right / experiments_run,
        "persons_at_stop_mean": round(float(np.mean(stopped_at)), 1),
        "persons_at_stop_median_when_rejected": (
            float(np.median([n for n in stopped_at if n < MAX_PERSONS])) if rejected else None
        ),
        "naive_peeking_rejected": naive_rejected / experiments_run,
    }


def main() -> None:
    rng = np.random.default_rng(SEED)
    started = time.perf_counter()
    aa = [simulate(rng, 20000, sd, 0.0) for sd in (3.0, 6.0)]
    ab = [simulate(rng, 4000, 3.0, effect) for effect in (1.0, 2.0, 3.0)]
    result = {
        "benchmark": "A/B decision rule (mixture SPRT on per-person MAE): A/A false positives and A/B power "
        "under a look after every batch of persons",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "protocol": {
            "seed": SEED,
            "alpha": RULE.alpha,
            "mixture_sd_mg_dl": RULE.mixture_sd,
            "min_persons_per_variant": RULE.min_persons_per_variant,
            "persons_per_look": BATCH,
            "max_persons": MAX_PERSONS,
            "mean_per_person_mae_mg_dl": MEAN_MAE,
        },
        "a_a": aa,
        "a_b": ab,
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
