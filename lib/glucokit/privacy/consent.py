"""Purpose-based consent: which purposes a person consents to, and asking whether they do.

The purposes are ``sessions.Purpose`` (the database's
``public.processing_purpose``, migration 20261122121200). Every worker
transaction that reaches a person's rows names one (``sessions.as_worker``);
the database checks the person's consent to it and writes the audit log.
Deleting data needs no consent.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, Purpose, as_worker

__all__ = ["CONSENT_PURPOSES", "Purpose", "in_force"]

# The purposes a person consents to (all but deletion).
CONSENT_PURPOSES: Final = tuple(purpose for purpose in Purpose if purpose is not Purpose.DELETION)


def in_force(conn: Connection, person_id: UUID, purpose: Purpose) -> bool:
    """Whether the person consents to ``purpose`` now (a worker asks, unscoped, before it scopes)."""
    with as_worker(conn, None):
        row = conn.execute(query("has_consent"), {"person_id": person_id, "purpose": str(purpose)}).fetchone()
    return bool(row and row[0])
