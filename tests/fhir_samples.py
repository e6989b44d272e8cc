"""FHIR resources for the ingest and export tests, written the way sources send them."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from glucokit.fhir import resources as fhir
from glucokit.units import CARBOHYDRATE_CODE, CGM_CODE, INSULIN_CODE, KINDS, LOINC, SNOMED

SOURCE = "urn:example:cgm-cloud"
START = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


def cgm(n: int, value: float | int = 120, *, code: str = CGM_CODE, unit: str | None = None) -> dict[str, Any]:
    """The n-th CGM reading (5 minutes apart), identified as SOURCE|reading-n."""
    return fhir.observation(
        KINDS[(LOINC, code)],
        Decimal(repr(value)),
        START + timedelta(minutes=5 * n),
        source_system=SOURCE,
        source_id=f"reading-{n}",
        unit=unit,
        device="Example CGM",
        subject="Patient/example",
    )


def carbs(n: int, grams: float) -> dict[str, Any]:
    return fhir.observation(
        KINDS[(LOINC, CARBOHYDRATE_CODE)], Decimal(repr(grams)), START + timedelta(minutes=5 * n),
        source_system=SOURCE, source_id=f"meal-{n}",
    )  # fmt: skip


def insulin(n: int, units: float, *, unit: str = "[iU]") -> dict[str, Any]:
    return fhir.observation(
        KINDS[(SNOMED, INSULIN_CODE)], Decimal(repr(units)), START + timedelta(minutes=5 * n),
        source_system=SOURCE, source_id=f"dose-{n}", unit=unit, device="Example pump",
    )  # fmt: skip


def changed(resource: dict[str, Any], **elements: Any) -> dict[str, Any]:
    """A deep copy of ``resource`` with top-level elements replaced (None removes one)."""
    result = copy.deepcopy(resource)
    for name, value in elements.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def bundle(*resources: dict[str, Any], kind: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": resource} for resource in resources]}
