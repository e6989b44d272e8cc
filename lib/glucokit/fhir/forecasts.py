"""Forecasts in FHIR: each point an Observation derived from the readings it used, each model version a Provenance.

A forecast is not a measurement, so it never carries a glucose LOINC code: it
is coded in glucokit's own code system (``urn:glucokit:fhir:forecast``) with
status ``preliminary``, so no consumer, glucokit's ingest included, can take
it for a reading. Its ``valueQuantity`` is the expected value at the target
time (``effectiveDateTime``), its components the band's bounds, ``derivedFrom``
the source observations, and a note carries the disclaimer it was shown with.
The Provenance of a model version targets the forecasts it made and names the
model (id, version, family) and the data window it learned from.

References use ``urn:uuid:`` ids: an observation's is its glucokit id (the
fullUrl export gives it), a forecast's its prediction id, a Provenance's its
model id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from glucokit.disclaimer import disclaimer_text
from glucokit.fhir import resources as fhir
from glucokit.units import MG_DL, UCUM

FORECAST_SYSTEM: Final = "urn:glucokit:fhir:forecast"
PREDICTION_IDENTIFIER: Final = "urn:glucokit:prediction"
MODEL_IDENTIFIER: Final = "urn:glucokit:ml-model"
DATA_OPERATION: Final = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


@dataclass(frozen=True)
class ForecastModel:
    """The model version a forecast came from, as its Provenance names it."""

    id: UUID
    version: str
    algorithm: str
    trained_at: datetime
    data_from: datetime
    data_to: datetime


def reference(resource_id: UUID) -> dict[str, str]:
    return {"reference": f"urn:uuid:{resource_id}"}


def _quantity(value: float) -> dict[str, Any]:
    return {"value": round(float(value), 1), "unit": MG_DL, "system": UCUM, "code": MG_DL}


def forecast_observation(
    *,
    prediction_id: UUID,
    generated_at: datetime,
    target_at: datetime,
    minutes: int,
    value: float,
    low: float,
    high: float,
    coverage: float,
    disclaimer_version: str,
    issued_at: datetime,
    sources: Sequence[UUID],
) -> dict[str, Any]:
    """One forecast point as an Observation (English text; the disclaimer of the version it was written with)."""
    band = f"{coverage:.0%} band"
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": PREDICTION_IDENTIFIER, "value": str(prediction_id)}],
        "status": "preliminary",
        "code": {
            "coding": [{"system": FORECAST_SYSTEM, "code": "glucose-forecast", "display": "Glucose forecast"}],
            "text": f"Glucose forecast {minutes} min after the reading of {fhir.instant(generated_at)}",
        },
        "effectiveDateTime": fhir.instant(target_at),
        "issued": fhir.instant(issued_at),
        "valueQuantity": _quantity(value),
        "note": [{"text": disclaimer_text(disclaimer_version, "en")}],
        "component": [
            {
                "code": {"coding": [{"system": FORECAST_SYSTEM, "code": code, "display": f"{band} {bound}"}]},
                "valueQuantity": _quantity(limit),
            }
            for code, bound, limit in (("band-lower", "lower bound", low), ("band-upper", "upper bound", high))
        ],
    }
    if sources:
        resource["derivedFrom"] = [reference(source) for source in sources]
    return resource


def model_provenance(model: ForecastModel, targets: Sequence[UUID]) -> dict[str, Any]:
    """The Provenance of the forecasts a model version made (``targets``: their prediction ids)."""
    return {
        "resourceType": "Provenance",
        "target": [reference(target) for target in targets],
        "recorded": fhir.instant(model.trained_at),
        "activity": {"coding": [{"system": DATA_OPERATION, "code": "CREATE", "display": "create"}]},
        "agent": [
            {
                "who": {
                    "identifier": {"system": MODEL_IDENTIFIER, "value": str(model.id)},
                    "display": (
                        f"glucokit glucose-forecast model {model.version} ({model.algorithm}), trained on data from"
                        f" {fhir.instant(model.data_from)} to {fhir.instant(model.data_to)}"
                    ),
                }
            }
        ],
    }
