"""The CGM summary of a person and a period, and its FHIR form: the CGM Summary Observation of the HL7 CGM
Implementation Guide (STU1, http://hl7.org/fhir/uv/cgm).

The figures come from the database (``public.cgm_summary``, migration 20261205120300), read in the caller's
transaction as the signed-in user, so row-level security decides which person and readings exist. Every figure
is defined there once; this module only reads them and writes them as FHIR.

The FHIR form follows the IG's profiles: a summary Observation (LOINC 107931-8) whose ``hasMember`` references
one Observation per figure: mean glucose (97507-8, mg/dL), times in ranges (the 106793-3 panel with five
components, %), GMI (97506-0, %), CV (104638-2, %), days of wear (104636-6, d) and sensor active % (104637-4, %),
each with the period as ``effectivePeriod``. The codes are those of the IG's published profiles
(``input/fsh/profiles.fsh`` of github.com/HL7/cgm, STU1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import NAMESPACE_URL, UUID, uuid5

from psycopg.rows import class_row

from glucokit.db.queries import query
from glucokit.db.sessions import Connection
from glucokit.errors import GlucokitError
from glucokit.fhir import resources as fhir
from glucokit.units import LOINC, MG_DL, UCUM

SUMMARY_CODE: Final = "107931-8"  # Continuous glucose monitoring summary panel - Reporting Period
TIMES_IN_RANGES_CODE: Final = "106793-3"  # Continuous glucose monitoring time in ranges panel
MEAN_CODE: Final = "97507-8"  # mean glucose, mass per volume
GMI_CODE: Final = "97506-0"  # glucose management indicator
CV_CODE: Final = "104638-2"  # coefficient of variation of glucose
DAYS_OF_WEAR_CODE: Final = "104636-6"  # CGM duration of use
SENSOR_ACTIVE_CODE: Final = "104637-4"  # CGM sensor wear time active
# The five ranges of the times-in-ranges panel (the IG's component slices), lowest first.
RANGE_CODES: Final = {
    "very_low_percent": ("104642-4", "Time below 54 mg/dL"),
    "low_percent": ("104641-6", "Time 54 to 69 mg/dL"),
    "in_range_percent": ("97510-2", "Time in range 70 to 180 mg/dL"),
    "high_percent": ("104640-8", "Time 181 to 250 mg/dL"),
    "very_high_percent": ("104639-0", "Time above 250 mg/dL"),
}
PERSON_IDENTIFIER: Final = "urn:glucokit:person"
PERCENT: Final = "%"
DAY: Final = "d"


@dataclass(frozen=True)
class CgmSummary:
    """A row of ``public.cgm_summary``: the figures are None when the period has too few readings for them."""

    period_from: datetime
    period_to: datetime  # the period's end, cut at the time of the request
    readings: int
    reading_interval_seconds: float
    expected_readings: int
    sensor_active_percent: float
    days_of_wear: int
    mean_mg_dl: float | None
    sd_mg_dl: float | None
    cv_percent: float | None
    gmi_percent: float | None
    very_low_percent: float | None
    low_percent: float | None
    in_range_percent: float | None
    high_percent: float | None
    very_high_percent: float | None
    sufficient: bool
    reason: str


def read(conn: Connection, person_id: UUID, start: datetime, end: datetime) -> CgmSummary:
    """The person's CGM summary over [start, end), in the caller's transaction (a user's, under RLS).

    The database refuses an unknown or someone else's person (NoDataFound) and a reversed, future or over-long
    period (a DataError that says which).
    """
    with conn.cursor(row_factory=class_row(CgmSummary)) as cursor:
        row = cursor.execute(query("cgm_summary"), {"person_id": person_id, "start": start, "end": end}).fetchone()
    assert row is not None  # the function returns one row or raises
    return row


def _percent(value: float) -> dict[str, Any]:
    # Two decimals: the IG asks for times in ranges "with at least two decimal places of precision".
    return {"value": round(value, 2), "unit": PERCENT, "system": UCUM, "code": PERCENT}


def _coded(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}


def bundle(summary: CgmSummary, person_id: UUID, issued: datetime) -> dict[str, Any]:
    """The summary as a FHIR collection Bundle: the CGM Summary Observation first, then its members."""
    mean, cv, gmi = summary.mean_mg_dl, summary.cv_percent, summary.gmi_percent
    if mean is None or cv is None or gmi is None or any(getattr(summary, field) is None for field in RANGE_CODES):
        raise GlucokitError(
            f"the period has {summary.readings} CGM reading(s): a FHIR CGM summary needs at least 2 "
            "(for the coefficient of variation)"
        )
    common = {
        "status": "final",
        "category": [{"coding": [{"system": fhir.OBSERVATION_CATEGORY, "code": "laboratory"}]}],
        "subject": {"identifier": {"system": PERSON_IDENTIFIER, "value": str(person_id)}},
        "effectivePeriod": {"start": fhir.instant(summary.period_from), "end": fhir.instant(summary.period_to)},
        "issued": fhir.instant(issued),
    }
    ranges = [
        {"code": _coded(code, display), "valueQuantity": _percent(getattr(summary, field))}
        for field, (code, display) in RANGE_CODES.items()
    ]
    members: list[tuple[str, dict[str, Any]]] = [
        (MEAN_CODE, {"code": _coded(MEAN_CODE, "Mean glucose"), "valueQuantity": {
            "value": round(mean, 1), "unit": MG_DL, "system": UCUM, "code": MG_DL}}),
        (TIMES_IN_RANGES_CODE, {"code": _coded(TIMES_IN_RANGES_CODE, "Times in ranges"), "component": ranges}),
        (GMI_CODE, {"code": _coded(GMI_CODE, "Glucose management indicator (GMI)"),
                    "valueQuantity": _percent(gmi)}),
        (CV_CODE, {"code": _coded(CV_CODE, "Coefficient of variation"), "valueQuantity": _percent(cv)}),
        (DAYS_OF_WEAR_CODE, {"code": _coded(DAYS_OF_WEAR_CODE, "Days of wear"), "valueQuantity": {
            "value": summary.days_of_wear, "unit": "days", "system": UCUM, "code": DAY}}),
        (SENSOR_ACTIVE_CODE, {"code": _coded(SENSOR_ACTIVE_CODE, "Sensor active percentage"),
                              "valueQuantity": _percent(summary.sensor_active_percent)}),
    ]  # fmt: skip
    # Stable ids: the same person and period always export the same references.
    key = f"glucokit:cgm-summary:{person_id}:{fhir.instant(summary.period_from)}:{fhir.instant(summary.period_to)}"
    member_ids = [uuid5(NAMESPACE_URL, f"{key}:{code}") for code, _ in members]
    panel_id = uuid5(NAMESPACE_URL, key)
    panel = {
        "resourceType": "Observation",
        **common,
        "code": _coded(SUMMARY_CODE, "CGM summary"),
        "hasMember": [{"reference": f"urn:uuid:{member}"} for member in member_ids],
        "note": [{"text": summary.reason}],
    }
    entries = [{"fullUrl": f"urn:uuid:{panel_id}", "resource": panel}]
    entries += [
        {"fullUrl": f"urn:uuid:{member}", "resource": {"resourceType": "Observation", **common, **body}}
        for member, (_, body) in zip(member_ids, members, strict=True)
    ]
    return {"resourceType": "Bundle", "type": "collection", "timestamp": fhir.instant(issued), "entry": entries}
