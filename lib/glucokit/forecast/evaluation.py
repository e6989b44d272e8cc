"""Train every person of a cohort and summarize the test metrics: mean and sd over persons, per candidate."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from glucokit.forecast.metrics import RANGES, Metrics
from glucokit.forecast.pipeline import DEFAULT_SETTINGS, TrainingOutcome, TrainingSettings, train_person
from glucokit.forecast.series import InsufficientData
from glucokit.forecast.windows import HORIZON_MINUTES

Points = list[tuple[datetime, float]]


@dataclass(frozen=True)
class PersonData:
    glucose: Points = field(default_factory=list)  # mg/dL (CGM, LOINC 99504-3 or 105272-9)
    carbs: Points = field(default_factory=list)  # g (LOINC 9059-7)
    insulin: Points = field(default_factory=list)  # [iU] (SNOMED CT 67866001)
    dropped: dict[str, int] = field(default_factory=dict)  # entries left out before training, per reason


def evaluate_people(
    people: Mapping[str, PersonData], *, tz: str = "UTC", settings: TrainingSettings = DEFAULT_SETTINGS
) -> dict[str, Any]:
    """``train_person`` on each person, one after the other; a JSON-able summary of their test metrics.

    ``test`` has one row per candidate and one for each person's champion
    (chosen on validation, scored on test), each metric as mean and sd over
    persons. Persons with too little data are listed with the reason.
    ``dropped_readings`` counts, per person and reason, what was left out:
    entries before training (``PersonData.dropped``) and readings training
    did not use as exact (``TrainingOutcome.dropped``).
    """
    outcomes: dict[str, TrainingOutcome] = {}
    insufficient: dict[str, str] = {}
    for name, data in people.items():
        try:
            outcomes[name] = train_person(data.glucose, data.carbs, data.insulin, tz=tz, settings=settings)
        except InsufficientData as error:
            insufficient[name] = error.reason
    dropped = {
        name: data.dropped | (outcomes[name].dropped if name in outcomes else {}) for name, data in people.items()
    }
    if not outcomes:
        return {"persons": 0, "insufficient_data": insufficient, "dropped_readings": dropped}
    seconds = [outcome.seconds for outcome in outcomes.values()]
    champions: dict[str, list[str]] = {}
    for name, outcome in outcomes.items():
        champions.setdefault(outcome.champion, []).append(name)
    return {
        "persons": len(outcomes),
        "insufficient_data": insufficient,
        "dropped_readings": dropped,
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
    """The numbers a summary reports: errors at 30 and 60 min, Clarke and Parkes zones, time lag, detection of
    lows and highs, band coverage per horizon and per glucose range, gain; without the ones there was nothing
    to measure on (no lows, say)."""
    at_30, at_60 = metrics.at(30), metrics.at(60)
    row: dict[str, float | None] = {
        "rmse_30": at_30["rmse"],
        "rmse_60": at_60["rmse"],
        "mae_30": at_30["mae"],
        "mae_60": at_60["mae"],
        "mard_30": at_30["mard"],
        "grmse_30": at_30["grmse"],
        "grmse_60": at_60["grmse"],
        "clarke_a_30": at_30["clarke"]["A"],
        "clarke_ab_30": at_30["clarke"]["A"] + at_30["clarke"]["B"],
        **{
            f"parkes_type{t}_{zones}_30": sum(at_30[f"parkes_type{t}"][zone] for zone in zones.upper())
            for t in metrics.parkes
            for zones in ("a", "ab")
        },
        "lag_minutes_30": at_30.get("lag_minutes"),
        "lag_minutes_60": at_60.get("lag_minutes"),
        **{
            f"{kind}_{measure}_30": at_30[kind][measure]
            for kind in ("lows", "highs")
            for measure in ("sensitivity", "precision")
        },
    }
    if metrics.coverage is not None:
        row |= {
            **{f"coverage_{minutes}": metrics.at(minutes)["coverage"] for minutes in HORIZON_MINUTES},
            "coverage_all_horizons": statistics.fmean(metrics.coverage),
            **{f"coverage_{name}": metrics.range_coverage(name) for name in RANGES},
        }
    if metrics.gain is not None:
        row |= {"gain_30": at_30["gain"], "gain_60": at_60["gain"]}
    return {key: value for key, value in row.items() if value is not None}


def _summarize(outcomes: Mapping[str, TrainingOutcome]) -> dict[str, dict[str, Any]]:
    rows: dict[str, list[dict[str, float]]] = {}
    for outcome in outcomes.values():
        for name, metrics in outcome.test.items():
            rows.setdefault(name, []).append(headline(metrics))
        rows.setdefault("champion", []).append(headline(outcome.test[outcome.champion]))
    return {
        # A key missing from some persons' rows (no lows to detect, say) is summarized over the others.
        name: {
            key: _mean_sd([row[key] for row in found if key in row])
            for key in dict.fromkeys(k for r in found for k in r)
        }
        | {"persons": len(found)}
        for name, found in rows.items()
    }


def _mean_sd(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(values), 3),
        "sd": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0,
    }
