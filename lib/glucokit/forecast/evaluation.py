"""Train every person of a cohort and summarize the test metrics: mean and sd over persons, per candidate."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from glucokit.forecast.metrics import Metrics
from glucokit.forecast.pipeline import DEFAULT_SETTINGS, TrainingOutcome, TrainingSettings, train_person
from glucokit.forecast.series import InsufficientData

Points = list[tuple[datetime, float]]


@dataclass(frozen=True)
class PersonData:
    glucose: Points = field(default_factory=list)  # mg/dL (CGM, LOINC 99504-3 or 105272-9)
    carbs: Points = field(default_factory=list)  # g (LOINC 9059-7)
    insulin: Points = field(default_factory=list)  # [iU] (SNOMED CT 67866001)


def evaluate_people(
    people: Mapping[str, PersonData], *, tz: str = "UTC", settings: TrainingSettings = DEFAULT_SETTINGS
) -> dict[str, Any]:
    """``train_person`` on each person, one after the other; a JSON-able summary of their test metrics.

    ``test`` has one row per candidate and one for each person's champion
    (chosen on validation, scored on test), each metric as mean and sd over
    persons. Persons with too little data are listed with the reason.
    """
    outcomes: dict[str, TrainingOutcome] = {}
    insufficient: dict[str, str] = {}
    for name, data in people.items():
        try:
            outcomes[name] = train_person(data.glucose, data.carbs, data.insulin, tz=tz, settings=settings)
        except InsufficientData as error:
            insufficient[name] = error.reason
    if not outcomes:
        return {"persons": 0, "insufficient_data": insufficient}
    seconds = [outcome.seconds for outcome in outcomes.values()]
    champions: dict[str, list[str]] = {}
    for name, outcome in outcomes.items():
        champions.setdefault(outcome.champion, []).append(name)
    return {
        "persons": len(outcomes),
        "insufficient_data": insufficient,
        "seconds_per_person": _mean_sd(seconds) | {"max": round(max(seconds), 3)},
        "champions": champions,
        "test": _summarize(outcomes),
        "per_person": {
            name: {"champion": outcome.champion, "seconds": round(outcome.seconds, 3)}
            | {key: round(value, 3) for key, value in headline(outcome.test[outcome.champion]).items()}
            for name, outcome in outcomes.items()
        },
    }


def headline(metrics: Metrics) -> dict[str, float]:
    """The numbers a summary reports: errors at 30 and 60 min, band coverage, Clarke zones, gain."""
    at_30, at_60 = metrics.at(30), metrics.at(60)
    row = {
        "rmse_30": at_30["rmse"],
        "rmse_60": at_60["rmse"],
        "mae_30": at_30["mae"],
        "mae_60": at_60["mae"],
        "mard_30": at_30["mard"],
        "clarke_a_30": at_30["clarke"]["A"],
        "clarke_ab_30": at_30["clarke"]["A"] + at_30["clarke"]["B"],
    }
    if metrics.coverage is not None:
        row |= {
            "coverage_30": at_30["coverage"],
            "coverage_60": at_60["coverage"],
            "coverage_all_horizons": statistics.fmean(metrics.coverage),
        }
    if metrics.gain is not None:
        row |= {"gain_30": at_30["gain"], "gain_60": at_60["gain"]}
    return row


def _summarize(outcomes: Mapping[str, TrainingOutcome]) -> dict[str, dict[str, Any]]:
    rows: dict[str, list[dict[str, float]]] = {}
    for outcome in outcomes.values():
        for name, metrics in outcome.test.items():
            rows.setdefault(name, []).append(headline(metrics))
        rows.setdefault("champion", []).append(headline(outcome.test[outcome.champion]))
    return {
        name: {key: _mean_sd([row[key] for row in found]) for key in found[0]} | {"persons": len(found)}
        for name, found in rows.items()
    }


def _mean_sd(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(values), 3),
        "sd": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0,
    }
