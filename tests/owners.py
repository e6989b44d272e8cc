"""Users who own one person each, and helpers to ingest for them and read back what they see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from glucokit.db.sessions import Connection, as_user
from glucokit.fhir.ingest import Ingest, IngestReport


@dataclass(frozen=True)
class Owner:
    user: UUID
    person: UUID


def ingest(conn: Connection, owner: Owner, document: Any, **options: Any) -> IngestReport:
    return Ingest([conn], user_id=owner.user, person_id=owner.person, **options).document(
        orjson.dumps(document), source="request.json"
    )


def rows(conn: Connection, owner: Owner, columns: str = "source_id, value, unit, status") -> list[tuple[Any, ...]]:
    with as_user(conn, owner.user):
        return conn.execute(
            f"select {columns} from public.observation where person_id = %s order by effective_at, source_id",
            (owner.person,),
        ).fetchall()


def quarantined(conn: Connection, owner: Owner) -> list[tuple[Any, ...]]:
    with as_user(conn, owner.user):
        return conn.execute(
            "select entry_index, errors, payload from public.quarantined_entry where person_id = %s "
            "order by received_at, entry_index",
            (owner.person,),
        ).fetchall()
