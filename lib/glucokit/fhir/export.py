"""FHIR out: a person's observations as a FHIR Bundle or NDJSON, read as the signed-in user.

Each observation is exported as the resource that was ingested: the one kept
in ``observation.resource``, or, where ingest stored none because the columns
give it back exactly, the one rebuilt from them (glucokit.fhir.stored.rebuilt,
the function ingest compared with; also for observations written without a
resource, in the unit they arrived in). So exporting and ingesting again
reproduces the same rows. Output streams from a server-side cursor: a
person's whole history never sits in memory.

With ``forecasts``, the bundle also holds the person's forecasts, each an
Observation derived from the readings it used, and a Provenance per model
version (see fhir_forecasts.py); ingesting such a bundle stores the readings
and rejects the forecasts, which are no readings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import IO, Any, Final, Literal
from uuid import UUID

import orjson
from psycopg.rows import class_row

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, as_user, require_person
from glucokit.errors import GlucokitError
from glucokit.fhir import resources as fhir
from glucokit.fhir.forecasts import ForecastModel, forecast_observation, model_provenance
from glucokit.fhir.stored import rebuilt
from glucokit.fhir.validation import Reading

ExportFormat = Literal["bundle", "ndjson"]
EXPORT_FORMATS: Final[tuple[ExportFormat, ...]] = ("bundle", "ndjson")
_FETCH: Final = 2000


def _resource(row: tuple[Any, ...]) -> dict[str, Any]:
    """The row's resource: the stored one, else the one its columns make (export_observations' columns)."""
    stored: dict[str, Any] | None = row[-1]
    return stored if stored is not None else rebuilt(Reading(*row[1:-1]))


def _rows(conn: Connection, user_id: UUID, person_id: UUID) -> Iterator[tuple[Any, ...]]:
    with as_user(conn, user_id):
        require_person(conn, person_id)
        with conn.cursor(name="glucokit_export") as cursor:
            cursor.itersize = _FETCH
            cursor.execute(query("export_observations"), {"person_id": person_id})
            yield from cursor


@dataclass(frozen=True)
class _ForecastRow:
    prediction_id: UUID
    generated_at: datetime
    target_at: datetime
    minutes: int
    value: float
    low: float
    high: float
    coverage: float
    disclaimer_version: str
    issued_at: datetime
    sources: list[UUID]
    model_id: UUID
    version: str
    algorithm: str
    trained_at: datetime
    data_from: datetime
    data_to: datetime

    def model(self) -> ForecastModel:
        return ForecastModel(self.model_id, self.version, self.algorithm, self.trained_at, self.data_from, self.data_to)

    def resource(self) -> dict[str, Any]:
        return forecast_observation(
            prediction_id=self.prediction_id, generated_at=self.generated_at, target_at=self.target_at,
            minutes=self.minutes, value=self.value, low=self.low, high=self.high, coverage=self.coverage,
            disclaimer_version=self.disclaimer_version, issued_at=self.issued_at, sources=self.sources,
        )  # fmt: skip


def _forecast_entries(conn: Connection, user_id: UUID, person_id: UUID) -> Iterator[dict[str, Any]]:
    """The person's forecast points as Observations, each model version's followed by its Provenance."""
    model: ForecastModel | None = None
    targets: list[UUID] = []
    with (
        as_user(conn, user_id),
        conn.cursor(name="glucokit_export_forecasts", row_factory=class_row(_ForecastRow)) as cursor,
    ):
        cursor.itersize = _FETCH
        cursor.execute(query("export_forecasts"), {"person_id": person_id})
        for row in cursor:
            if model is not None and model.id != row.model_id:
                yield {"fullUrl": f"urn:uuid:{model.id}", "resource": model_provenance(model, targets)}
                targets = []
            model = row.model()
            targets.append(row.prediction_id)
            yield {"fullUrl": f"urn:uuid:{row.prediction_id}", "resource": row.resource()}
    if model is not None:
        yield {"fullUrl": f"urn:uuid:{model.id}", "resource": model_provenance(model, targets)}


def export(
    conn: Connection,
    out: IO[bytes],
    *,
    user_id: UUID,
    person_id: UUID,
    form: ExportFormat = "bundle",
    forecasts: bool = False,
) -> int:
    """Writes the person's observations (and, in a bundle, their forecasts) to ``out``; returns the entries."""
    count = 0
    if form == "ndjson":
        if forecasts:
            raise GlucokitError("forecasts are exported in a bundle only (with the Provenance that ties them together)")
        for row in _rows(conn, user_id, person_id):
            out.write(orjson.dumps(_resource(row)) + b"\n")
            count += 1
        return count
    head = {"resourceType": "Bundle", "type": "collection", "timestamp": fhir.instant(datetime.now(UTC))}
    out.write(orjson.dumps(head)[:-1])  # the entries follow before the closing brace
    entries = ({"fullUrl": f"urn:uuid:{row[0]}", "resource": _resource(row)} for row in _rows(conn, user_id, person_id))
    for entry in chain(entries, _forecast_entries(conn, user_id, person_id) if forecasts else ()):
        out.write((b"," if count else b',"entry":[') + orjson.dumps(entry))
        count += 1
    # FHIR JSON never has an empty array: a person without observations gets a bundle without entries.
    out.write(b"]}" if count else b"}")
    return count
