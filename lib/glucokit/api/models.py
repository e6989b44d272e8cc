"""The API's request and response bodies, with the examples the OpenAPI document shows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from glucokit.api.reads import Point, Run, Source
from glucokit.db.text import unstorable
from glucokit.disclaimer import DISCLAIMER, DISCLAIMER_VERSION, Language, disclaimer_text
from glucokit.fhir.summary import CgmSummary
from glucokit.modelops.patterns import SimilarDay
from glucokit.modelops.registry import ModelVersion

PERSON = "3f1e2d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"
POINT = "9b8a7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d"
MODEL = "c0ffee00-1234-4abc-8def-0123456789ab"
RUN = "4d3c2b1a-0f9e-4d8c-b7a6-5f4e3d2c1b0a"
OBSERVATION = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def _storable(text: str) -> str:
    reason = unstorable(text)
    if reason is not None:
        raise ValueError(reason)
    return text


# Every free text a client sends: checked for what the database's text cannot hold.
Text = Annotated[str, AfterValidator(_storable)]


class Disclaimer(BaseModel):
    version: str
    language: Language
    text: str

    @classmethod
    def of(cls, version: str, language: Language) -> Disclaimer:
        return cls(version=version, language=language, text=disclaimer_text(version, language))


DISCLAIMER_EXAMPLE: JsonDict = {"version": DISCLAIMER_VERSION, "language": "en", "text": DISCLAIMER["en"]}


class Provenance(BaseModel):
    """Which model made a forecast, from which training run and data, with which code."""

    model_id: UUID
    model_version: str
    training_run_id: UUID | None
    data_from: datetime
    data_to: datetime
    code_version: str

    @classmethod
    def of(cls, point: Point) -> Provenance:
        return cls(
            model_id=point.model_id, model_version=point.model_version, training_run_id=point.training_run_id,
            data_from=point.data_from, data_to=point.data_to, code_version=point.code_version,
        )  # fmt: skip


PROVENANCE_EXAMPLE: JsonDict = {
    "model_id": MODEL, "model_version": "1.2.0", "training_run_id": RUN,
    "data_from": "2026-11-01T00:00:00Z", "data_to": "2026-11-15T00:00:00Z", "code_version": "0.1.0",
}  # fmt: skip


class ForecastPoint(BaseModel):
    """One point of a forecast: the expected glucose ``minutes`` after the latest reading, with its band."""

    id: UUID
    generated_at: datetime = Field(description="The latest reading the forecast starts from.")
    target_at: datetime
    minutes: int = Field(description="Minutes after generated_at.")
    value_mg_dl: float
    lower_mg_dl: float
    upper_mg_dl: float
    coverage: float = Field(description="Nominal share of readings the band [lower, upper] is made to cover.")

    @classmethod
    def of(cls, point: Point) -> ForecastPoint:
        return cls(
            id=point.id, generated_at=point.generated_at, target_at=point.target_at, minutes=point.horizon_minutes,
            value_mg_dl=point.value_mg_dl, lower_mg_dl=point.lower_mg_dl, upper_mg_dl=point.upper_mg_dl,
            coverage=point.coverage,
        )  # fmt: skip


POINT_EXAMPLE: JsonDict = {
    "id": POINT, "generated_at": "2026-11-22T10:00:00Z", "target_at": "2026-11-22T10:30:00Z", "minutes": 30,
    "value_mg_dl": 142.5, "lower_mg_dl": 128.0, "upper_mg_dl": 157.0, "coverage": 0.8,
}  # fmt: skip


class LatestForecast(BaseModel):
    """A person's latest forecast curve, 5 to 60 minutes ahead."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "person_id": PERSON, "generated_at": "2026-11-22T10:00:00Z", "points": [POINT_EXAMPLE],
                    "provenance": PROVENANCE_EXAMPLE, "disclaimer": DISCLAIMER_EXAMPLE,
                }
            ]
        }
    )  # fmt: skip

    person_id: UUID
    generated_at: datetime
    points: list[ForecastPoint]
    provenance: Provenance
    disclaimer: Disclaimer


class ForecastPage(BaseModel):
    """Forecast points whose origin lies in a time range, oldest first; follow ``next_cursor`` for more."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "person_id": PERSON, "items": [{**POINT_EXAMPLE, "provenance": PROVENANCE_EXAMPLE}],
                    "next_cursor": "MjAyNi0xMS0yMlQxMDowMDowMCswMDowMHwzMHw5YjhhN2M2ZA",
                    "disclaimer": DISCLAIMER_EXAMPLE,
                }
            ]
        }
    )  # fmt: skip

    class Item(ForecastPoint):
        provenance: Provenance

    person_id: UUID
    items: list[Item]
    next_cursor: str | None
    disclaimer: Disclaimer


class SourceReference(BaseModel):
    """An observation the forecast was computed from, as a FHIR reference."""

    reference: str = Field(description="FHIR reference: Observation/{id}.")
    effective_at: datetime
    role: Literal["input_window", "covariate"]
    code: str = Field(description="LOINC or SNOMED CT code of the observation.")

    @classmethod
    def of(cls, source: Source) -> SourceReference:
        return cls.model_validate(
            {
                "reference": source.reference,
                "effective_at": source.effective_at,
                "role": source.role,
                "code": source.code,
            }
        )


class ForecastPointDetail(ForecastPoint):
    """One forecast point with its provenance and the observations it was computed from."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **POINT_EXAMPLE, "person_id": PERSON, "provenance": PROVENANCE_EXAMPLE,
                    "sources": [
                        {"reference": f"Observation/{OBSERVATION}", "effective_at": "2026-11-22T10:00:00Z",
                         "role": "input_window", "code": "99504-3"}
                    ],
                    "disclaimer": DISCLAIMER_EXAMPLE,
                }
            ]
        }
    )  # fmt: skip

    person_id: UUID
    provenance: Provenance
    sources: list[SourceReference]
    disclaimer: Disclaimer


class ModelsAndRuns(BaseModel):
    """A person's model versions (newest first) and latest training runs."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "person_id": PERSON,
                    "models": [
                        {"id": MODEL, "version": "1.2.0", "algorithm": "network", "stage": "active",
                         "stage_reason": "holdout RMSE 14.10 vs 14.90 mg/dL of active 1.1.0", "is_fallback": False,
                         "storage_path": f"{RUN}/{PERSON}/glucose-forecast/v1.2.0/",
                         "artifact_sha256": "9f86d0" * 10 + "8a3c",
                         "trained_at": "2026-11-15T02:10:00Z", "data_from": "2026-11-01T00:00:00Z",
                         "data_to": "2026-11-15T00:00:00Z", "features": ["glucose: last hour"],
                         "metrics": {"rmse_30": 12.4, "rmse_60": 18.1}, "training_run_id": RUN}
                    ],
                    "training_runs": [
                        {"id": RUN, "trigger": "new_data", "status": "succeeded", "attempt": 1,
                         "requested_at": "2026-11-15T02:09:00Z", "started_at": "2026-11-15T02:09:30Z",
                         "finished_at": "2026-11-15T02:10:00Z", "error": None}
                    ],
                }
            ]
        }
    )  # fmt: skip

    person_id: UUID
    models: list[ModelVersion]
    training_runs: list[Run]


class ModelCard(BaseModel):
    """A model version's card (docs/model-cards.md): its facts, and the same as Markdown in the language asked for,
    with the version's stage and the reason for it now."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "person_id": PERSON, "version": "1.2.0", "stage": "active",
                    "stage_reason": "holdout RMSE 14.10 vs 14.90 mg/dL of active 1.1.0", "language": "en",
                    "text": "# Model card: glucose forecast, version 1.2.0\n\n## Intended use\n\n...",
                    "card": {"format": "glucokit-model-card/1", "version": "1.2.0", "algorithm": "ridge",
                             "fallback": False, "recorded": True},
                }
            ]
        }
    )  # fmt: skip

    person_id: UUID
    version: str
    stage: str
    stage_reason: str | None
    language: Language
    text: str = Field(description="The card as a Markdown document in the language asked for.")
    card: dict[str, Any] = Field(description="The card's facts (format glucokit-model-card/1).")


class RetrainRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "I changed my sensor"}]})

    reason: Text | None = Field(default=None, max_length=500)


class RetrainQueued(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"person_id": PERSON, "request_id": RUN}]})

    person_id: UUID
    request_id: UUID


class FeedbackIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"rating": "up", "comment": "Matched my readings."}]})

    rating: Literal["up", "down"]
    comment: Text | None = Field(default=None, max_length=2000)


class Feedback(FeedbackIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"id": RUN, "prediction_id": POINT, "rating": "up", "comment": "Matched my readings.",
                 "created_at": "2026-11-22T10:40:00Z", "updated_at": "2026-11-22T10:40:00Z"}
            ]
        }
    )  # fmt: skip

    id: UUID
    prediction_id: UUID
    created_at: datetime
    updated_at: datetime


class Rejected(BaseModel):
    position: str
    problems: list[str]


class IngestResult(BaseModel):
    """What an upload stored; rejected entries are kept in the quarantine with their reasons."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "person_id": PERSON, "entries": 3, "stored": 2, "new": 2, "updated": 0, "unchanged": 0,
                    "rejected": 1,
                    "rejections": [{"position": "entry 2", "problems": ["valueQuantity.value: 5000 mg/dL is outside"
                                                                        " the physiological range 10-1000 mg/dL"]}],
                }
            ]
        }
    )  # fmt: skip

    person_id: UUID
    entries: int
    stored: int
    new: int
    updated: int
    unchanged: int
    rejected: int
    rejections: list[Rejected]


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok", "database": "ok"}]})

    status: Literal["ok"]
    database: Literal["ok"]


class SimilarDays(BaseModel):
    """The person's days whose glucose profiles (half-hour means, mg/dL) are nearest to one day's, nearest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "person_id": PERSON, "day": "2026-11-20",
                    "days": [
                        {"day": "2026-10-02", "rms_difference_mg_dl": 11.8, "readings": 286, "filled_slots": 0},
                        {"day": "2026-11-06", "rms_difference_mg_dl": 14.3, "readings": 251, "filled_slots": 2},
                    ],
                }
            ]
        }
    )  # fmt: skip

    person_id: UUID
    day: date = Field(description="The local day (in the person's time zone) the others are compared with.")
    days: list[SimilarDay] = Field(
        description="rms_difference_mg_dl: root mean square difference of the two profiles; readings: the CGM "
        "readings of the day; filled_slots: half-hours without readings, interpolated."
    )


class CgmSummaryReport(BaseModel):
    """The CGM summary of a person over a period (HL7 CGM Implementation Guide): times in ranges as percentages of
    the readings, mean glucose, GMI, coefficient of variation, days of wear and sensor active percentage."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "person_id": PERSON, "period_from": "2026-11-01T00:00:00Z", "period_to": "2026-11-15T00:00:00Z",
                    "readings": 3629, "reading_interval_seconds": 300.0, "expected_readings": 4032,
                    "sensor_active_percent": 90.0, "days_of_wear": 14, "mean_mg_dl": 154.2, "sd_mg_dl": 51.3,
                    "cv_percent": 33.3, "gmi_percent": 6.99, "very_low_percent": 0.8, "low_percent": 3.1,
                    "in_range_percent": 68.4, "high_percent": 21.0, "very_high_percent": 6.7, "sufficient": True,
                    "reason": "representative: 14.0 days with the sensor active 90.0 % of the time (at least 14"
                    " days and 70 % are recommended)",
                }
            ]
        }
    )  # fmt: skip

    person_id: UUID
    period_from: datetime
    period_to: datetime = Field(description="The end of the period, or the time of the request if that is earlier.")
    readings: int = Field(description="Valid CGM readings in the period.")
    reading_interval_seconds: float = Field(
        description="The sensor's interval: the median gap between readings (60 to 900 s; 300 without readings)."
    )
    expected_readings: int = Field(description="Readings the period holds at that interval.")
    sensor_active_percent: float = Field(description="readings / expected_readings, at most 100.")
    days_of_wear: int = Field(description="Local days (the person's time zone) with readings.")
    mean_mg_dl: float | None
    sd_mg_dl: float | None = Field(description="Sample standard deviation of the readings.")
    cv_percent: float | None = Field(description="Coefficient of variation: 100 x sd / mean.")
    gmi_percent: float | None = Field(
        description="Glucose management indicator, 3.31 + 0.02392 x mean in mg/dL (Bergenstal et al. 2018)."
    )
    very_low_percent: float | None = Field(description="Readings below 54 mg/dL, % of readings.")
    low_percent: float | None = Field(description="Readings from 54 to below 70 mg/dL.")
    in_range_percent: float | None = Field(description="Readings from 70 to 180 mg/dL.")
    high_percent: float | None = Field(description="Readings above 180 up to 250 mg/dL.")
    very_high_percent: float | None = Field(description="Readings above 250 mg/dL.")
    sufficient: bool = Field(
        description="Whether the period is representative: at least 14 days with the sensor active at least 70 %"
        " of the time (international consensus, Battelino et al. 2019)."
    )
    reason: str

    @classmethod
    def of(cls, person_id: UUID, summary: CgmSummary) -> CgmSummaryReport:
        return cls(person_id=person_id, **vars(summary))
