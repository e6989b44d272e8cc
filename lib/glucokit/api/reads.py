"""What a signed-in user reads about their persons' forecasts, inside their own transaction (``sessions.as_role``).

Every function runs in the caller's transaction as ``authenticated`` with the
request's claims, so row-level security decides what exists: another user's
person or forecast reads exactly as a missing one (None, or an empty list).
The API routes, ``glucokit chart`` and the demo read through these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.rows import class_row, dict_row

from glucokit.api.chart import HISTORY_SPAN, ChartData, ChartForecast, ChartPoint
from glucokit.db.queries import query
from glucokit.db.sessions import Connection
from glucokit.disclaimer import DISCLAIMER_VERSION, Language
from glucokit.fhir.validation import cgm_filter
from glucokit.modelops.model_card import facts
from glucokit.modelops.registry import ModelVersion


@dataclass(frozen=True)
class Point:
    """One stored forecast point (a row of public.prediction) with its forecast's provenance (public.forecast)."""

    id: UUID
    person_id: UUID
    generated_at: datetime
    target_at: datetime
    horizon_minutes: int
    value_mg_dl: float
    lower_mg_dl: float
    upper_mg_dl: float
    coverage: float
    disclaimer_version: str
    model_id: UUID
    model_version: str
    training_run_id: UUID | None
    data_from: datetime
    data_to: datetime
    code_version: str


@dataclass(frozen=True)
class Source:
    """An observation a forecast point was computed from."""

    observation_id: UUID
    effective_at: datetime
    role: str  # input_window or covariate
    code: str

    @property
    def reference(self) -> str:
        return f"Observation/{self.observation_id}"


@dataclass(frozen=True)
class Run:
    id: UUID
    trigger: str
    status: str
    attempt: int
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


def person_visible(conn: Connection, person_id: UUID) -> bool:
    row = conn.execute(query("person_visible"), {"person_id": person_id}).fetchone()
    return bool(row and row[0])


def latest_curve(conn: Connection, person_id: UUID) -> list[Point]:
    """The person's latest forecast curve (the newest origin, newest model), by horizon; [] when there is none."""
    with conn.cursor(row_factory=class_row(Point)) as cursor:
        return cursor.execute(query("read_latest_curve"), {"person_id": person_id}).fetchall()


def points_between(
    conn: Connection, person_id: UUID, start: datetime, end: datetime, *, after: tuple[datetime, int, UUID] | None,
    limit: int,
) -> list[Point]:  # fmt: skip
    """Points whose origin is in [start, end), in (origin, horizon, id) order, after the keyset ``after``."""
    at, horizon, point = after if after is not None else (None, None, None)
    with conn.cursor(row_factory=class_row(Point)) as cursor:
        return cursor.execute(
            query("read_points_between"),
            {
                "person_id": person_id, "start": start, "end": end, "limit": limit,
                "after_at": at, "after_horizon": horizon, "after_id": point,
            },
        ).fetchall()  # fmt: skip


def point(conn: Connection, prediction_id: UUID) -> tuple[Point, list[Source]] | None:
    """One forecast point and the observations its forecast was computed from (input window first, then
    covariates, by time); None when it is not the caller's."""
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(query("read_point"), {"prediction_id": prediction_id}).fetchone()
    if row is None:
        return None
    anchors = row.pop("sources")
    return Point(**row), [
        Source(
            observation_id=UUID(anchor["observation_id"]),
            effective_at=datetime.fromisoformat(anchor["effective_at"]),
            role=anchor["role"],
            code=anchor["code"],
        )
        for anchor in anchors
    ]


def models(conn: Connection, person_id: UUID) -> list[ModelVersion]:
    """The person's model versions, newest first."""
    return [model for model, _card in _models(conn, person_id)]


def model_card(conn: Connection, person_id: UUID, version: str) -> tuple[ModelVersion, dict[str, Any]] | None:
    """A model version and its card's facts: as registered, or built from the version's row for one registered
    before model cards (``model_card.facts`` without the training summary)."""
    model, card = next(((m, c) for m, c in _models(conn, person_id) if m.version == version), (None, None))
    if model is None:
        return None
    return model, card if isinstance(card, dict) else facts(model.version, model, None)


def _models(conn: Connection, person_id: UUID) -> list[tuple[ModelVersion, Any]]:
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(query("read_models"), {"person_id": person_id}).fetchall()
    return [(ModelVersion(**{k: v for k, v in row.items() if k != "card"}), row["card"]) for row in rows]


def runs(conn: Connection, person_id: UUID, limit: int = 50) -> list[Run]:
    """The person's latest training runs, newest first."""
    with conn.cursor(row_factory=class_row(Run)) as cursor:
        return cursor.execute(query("read_runs"), {"person_id": person_id, "limit": limit}).fetchall()


def glucose_history(
    conn: Connection, person_id: UUID, until: datetime, span: timedelta
) -> list[tuple[datetime, float]]:
    """The person's valid CGM readings in (until - span, until], mg/dL, oldest first."""
    rows = conn.execute(
        query("read_glucose_history"),
        {
            "person_id": person_id, **cgm_filter(),
            "since": until - span, "until": until,
        },
    )  # fmt: skip
    history = []
    for effective_at, value in rows:
        assert isinstance(effective_at, datetime)
        history.append((effective_at, float(str(value))))
    return history


def chart_data(conn: Connection, person_id: UUID, language: Language) -> ChartData | None:
    """What the person's chart shows: the latest forecast and the readings before it (None: no such person, or
    nothing to chart yet)."""
    person = conn.execute(query("read_person"), {"person_id": person_id}).fetchone()
    if person is None:
        return None
    name, tz = person
    curve = latest_curve(conn, person_id)
    if curve:
        until: object = curve[0].generated_at
    else:  # no forecast yet: the readings up to the latest one
        latest = conn.execute(query("latest_reading"), {"person_id": person_id, "until": None, **cgm_filter()})
        until = next(iter(latest.fetchone() or ()), None)
    history = glucose_history(conn, person_id, until, HISTORY_SPAN) if isinstance(until, datetime) else []
    forecast = (
        ChartForecast(
            origin=curve[0].generated_at,
            coverage=curve[0].coverage,
            model_version=curve[0].model_version,
            points=[ChartPoint(p.target_at, p.value_mg_dl, p.lower_mg_dl, p.upper_mg_dl) for p in curve],
        )
        if curve
        else None
    )
    if not history and forecast is None:
        return None
    return ChartData(
        title=str(name or person_id),
        history=history,
        forecast=forecast,
        language=language,
        tz=str(tz),
        disclaimer_version=curve[0].disclaimer_version if curve else DISCLAIMER_VERSION,
    )
