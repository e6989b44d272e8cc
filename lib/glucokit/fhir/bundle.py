"""A FHIR collection Bundle's CGM readings, carbohydrate intakes and insulin deliveries as a person's data for the
ML core (glucokit evaluate, the benchmarks): validated as ingest validates, without a database."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from glucokit.fhir.validation import WITHDRAWN, ObservationValidator, Reading
from glucokit.forecast.evaluation import PersonData
from glucokit.units import CARBOHYDRATE_CODE, CGM_CODES, INSULIN_CODE


def from_bundle(bundle: dict[str, Any]) -> PersonData:
    """The bundle's CGM readings (mg/dL), carbohydrate intakes and insulin deliveries, validated as ingest does.

    Entries ingest would reject, and readings marked entered-in-error or cancelled, are left out.
    """
    validator = ObservationValidator("R4B", datetime.now(UTC))
    data = PersonData()
    lists = {**dict.fromkeys(CGM_CODES, data.glucose), CARBOHYDRATE_CODE: data.carbs, INSULIN_CODE: data.insulin}
    for entry in bundle.get("entry", []):
        reading = validator.validate(entry.get("resource"))
        if isinstance(reading, Reading) and reading.status not in WITHDRAWN and reading.code in lists:
            lists[reading.code].append((reading.effective_at, float(reading.value)))
    return data


def read_bundle(path: Path) -> PersonData:
    """``from_bundle`` of a Bundle file, gzipped when its name ends in ``.gz``."""
    raw = path.read_bytes()
    return from_bundle(orjson.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw))
