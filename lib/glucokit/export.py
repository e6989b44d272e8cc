"""FHIR out: a person's observations as a FHIR Bundle or NDJSON, read as the signed-in user.

Each observation is exported as the resource that was ingested (kept verbatim
in ``observation.resource``), so exporting and ingesting again reproduces the
same rows. Observations written without a resource are exported as glucokit
writes an Observation, in the unit they arrived in. Output streams from a
server-side cursor: a person's whole history never sits in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any, Final, Literal
from uuid import UUID

import orjson

from glucokit import fhir
from glucokit.queries import query
from glucokit.sessions import Connection, as_user, require_person
from glucokit.units import KINDS

ExportFormat = Literal["bundle", "ndjson"]
EXPORT_FORMATS: Final[tuple[ExportFormat, ...]] = ("bundle", "ndjson")
_FETCH: Final = 2000


def _resource(row: tuple[Any, ...]) -> dict[str, Any]:
    (_id, status, category, system, code, value, unit, original_value, original_unit, effective_at, issued_at,
     device, source_system, source_id, resource) = row  # fmt: skip
    if resource is not None:
        stored: dict[str, Any] = resource
        return stored
    return fhir.observation(
        KINDS[(system, code)],
        original_value if original_value is not None else value,
        effective_at,
        source_system=source_system,
        source_id=source_id,
        unit=original_unit or unit,
        status=status,
        category=category,
        device=device,
        issued_at=issued_at,
    )


def _rows(conn: Connection, user_id: UUID, person_id: UUID) -> Iterator[tuple[Any, ...]]:
    with as_user(conn, user_id):
        require_person(conn, person_id)
        with conn.cursor(name="glucokit_export") as cursor:
            cursor.itersize = _FETCH
            cursor.execute(query("export_observations"), {"person_id": person_id})
            yield from cursor


def export(conn: Connection, out: IO[bytes], *, user_id: UUID, person_id: UUID, form: ExportFormat = "bundle") -> int:
    """Writes the person's observations to ``out``; returns how many."""
    count = 0
    if form == "ndjson":
        for row in _rows(conn, user_id, person_id):
            out.write(orjson.dumps(_resource(row)) + b"\n")
            count += 1
        return count
    head = {"resourceType": "Bundle", "type": "collection", "timestamp": fhir.instant(datetime.now(UTC))}
    out.write(orjson.dumps(head)[:-1])  # the entries follow before the closing brace
    for row in _rows(conn, user_id, person_id):
        entry = {"fullUrl": f"urn:uuid:{row[0]}", "resource": _resource(row)}
        out.write((b"," if count else b',"entry":[') + orjson.dumps(entry))
        count += 1
    # FHIR JSON never has an empty array: a person without observations gets a bundle without entries.
    out.write(b"]}" if count else b"}")
    return count
