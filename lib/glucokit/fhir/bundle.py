"""A FHIR collection Bundle's CGM readings, carbohydrate intakes and insulin deliveries as a person's data for the
ML core (glucokit evaluate, the benchmarks): validated as ingest validates, without a database."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from glucokit.fhir.validation import WITHDRAWN, ObservationValidator, Problem, Reading
from glucokit.forecast.evaluation import PersonData
from glucokit.units import CARBOHYDRATE_CODE, CGM_CODES, INSULIN_CODE


def from_bundle(bundle: dict[str, Any]) -> PersonData:
    """The bundle's CGM readings (mg/dL), carbohydrate intakes and insulin deliveries, validated as ingest does.

    Entries ingest would reject, readings marked entered-in-error or cancelled,
    and observations of other kinds are left out, and counted per reason in
    ``PersonData.dropped``.
    """
    validator = ObservationValidator("R4B", datetime.now(UTC))
    data = PersonData()
    lists = {**dict.fromkeys(CGM_CODES, data.glucose), CARBOHYDRATE_CODE: data.carbs, INSULIN_CODE: data.insulin}
    for entry in bundle.get("entry", []):
        reading = validator.validate(entry.get("resource"))
        if not isinstance(reading, Reading):
            reason = _rejected(reading[0])
        elif reading.status in WITHDRAWN:
            reason = "withdrawn (entered-in-error or cancelled)"
        elif reading.code not in lists:
            reason = "not a CGM reading, carbohydrate intake or insulin delivery"
        else:
            lists[reading.code].append((reading.effective_at, float(reading.value)))
            continue
        data.dropped[reason] = data.dropped.get(reason, 0) + 1
    return data


def _rejected(problem: Problem) -> str:
    """The reason an entry ingest would reject is counted under: the common ones by name, the rest by field."""
    if problem.field == "valueQuantity.comparator":
        return "a bound such as <40 (LOW) or >400 (HIGH), not a reading"
    if "has no time zone" in problem.reason:
        return "a time without a time zone"
    if "outside the plausible range" in problem.reason:
        return "a value outside the plausible range"
    return f"rejected by validation: {problem.field}"


def read_bundle(path: Path) -> PersonData:
    """``from_bundle`` of a Bundle file, gzipped when its name ends in ``.gz``."""
    raw = path.read_bytes()
    return from_bundle(orjson.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw))
