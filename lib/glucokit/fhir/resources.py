"""FHIR vocabulary shared by ingest, export and the simulator, and how glucokit writes an Observation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal

from glucokit.units import UCUM, ObservationKind

FhirVersion = Literal["R4B", "R5"]
FHIR_VERSIONS: Final[tuple[FhirVersion, ...]] = ("R4B", "R5")

OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"


def instant(moment: datetime) -> str:
    """A FHIR instant in UTC with a ``Z`` (seconds, or microseconds when there are any)."""
    if moment.tzinfo is None:
        raise ValueError("a FHIR instant needs a time zone")
    text = moment.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def decimal_json(value: Decimal) -> int | float:
    """A decimal as the JSON number FHIR expects (integers stay integers)."""
    return int(value) if value == value.to_integral_value() else float(value)


def observation(
    kind: ObservationKind,
    value: Decimal,
    effective_at: datetime,
    *,
    source_system: str,
    source_id: str,
    unit: str | None = None,
    status: str = "final",
    category: str | None = None,
    device: str | None = None,
    issued_at: datetime | None = None,
    subject: str | None = None,
    comparator: str | None = None,
) -> dict[str, Any]:
    """One Observation as glucokit writes it: identifier, category, code, subject, time, quantity and device."""
    quantity_unit = unit or kind.received_unit
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": source_system, "value": source_id}],
        "status": status,
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category or kind.category}]}],
        "code": {"coding": [{"system": kind.system, "code": kind.code, "display": kind.display}]},
    }
    if subject is not None:
        resource["subject"] = {"reference": subject}
    resource["effectiveDateTime"] = instant(effective_at)
    if issued_at is not None:
        resource["issued"] = instant(issued_at)
    resource["valueQuantity"] = {
        # A bound such as "<40" (a sensor's LOW); glucokit's validation rejects it as a bound, not a reading.
        **({"comparator": comparator} if comparator is not None else {}),
        "value": decimal_json(value),
        "unit": quantity_unit,
        "system": UCUM,
        "code": quantity_unit,
    }
    if device is not None:
        resource["device"] = {"display": device}
    return resource
