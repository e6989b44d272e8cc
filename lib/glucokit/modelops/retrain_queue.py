"""The retrain queue: PGMQ queue ``glucokit_retrain`` and the requests it carries.

The SQL functions of migrations ``20261122120700_retrain_queue.sql`` and
``20261205120100_retrain_retry.sql`` do the work and hold the guarantees (one
queued and one running request per person, leases, de-duplication, retries
with backoff); this module is their typed face for the workers.

Every call runs in the caller's transaction and with the caller's role:
workers call ``read``/``peek``/``claim``/``extend``/``complete``/``retry``/``fail``/``metrics``
inside ``sessions.as_worker(conn, None)`` (unscoped), owners call
``request`` inside ``sessions.as_user(conn, user_id)``. A claim must be
committed before the training starts, and finished in a later transaction::

    with as_worker(conn, None):
        messages = retrain_queue.read(conn, vt_seconds=30, qty=1)
    for message in messages:
        with as_worker(conn, None):
            claim = retrain_queue.claim(conn, message.msg_id, lease_seconds=1800)
        if not claim.claimed:
            continue  # busy (retried when the other claim ends) or dropped
        ...  # train in transactions scoped to claim.person_id, extend() as a heartbeat
        with as_worker(conn, None):
            retrain_queue.complete(conn, claim, training_run_id=run_id)  # or retry(conn, claim, error)

A retrain that raised is handed to ``retry``: the request waits again and is
retried after a backoff (``private.retrain_config.retry_delay_seconds``,
doubled per attempt) until ``max_attempts`` claims; then it is failed for good
with the reason (the dead-letter state, counted by ``metrics``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

import psycopg

from glucokit.db.queries import query
from glucokit.db.sessions import Connection
from glucokit.errors import GlucokitError

# SQLSTATEs the queue functions raise.
RATE_LIMITED = "PT429"  # PostgREST answers it with HTTP 429
CLAIM_LOST = "55000"  # object_not_in_prerequisite_state


class Trigger(StrEnum):
    """Why a retrain is requested (public.training_trigger)."""

    INITIAL = "initial"
    SCHEDULED = "scheduled"
    NEW_DATA = "new_data"
    PERFORMANCE = "performance"
    USER_REQUEST = "user_request"


class Outcome(StrEnum):
    """What a claim attempt did."""

    CLAIMED = "claimed"  # the request runs under this claim until lease_expires_at
    BUSY = "busy"  # another live claim holds the person; the message waits for it
    DROPPED = "dropped"  # the message carried no live request: archived
    EXHAUSTED = "exhausted"  # claimed max_attempts times without finishing: failed, archived


class RetryOutcome(StrEnum):
    """What handing a failed retrain to ``retry`` did."""

    RETRYING = "retrying"  # it waits for another attempt, at Retry.at
    FAILED = "failed"  # that was the last attempt: failed for good, with the reason (dead letter)
    GONE = "gone"  # the person was deleted meanwhile


class RateLimited(GlucokitError):
    """The owner asked for a retrain of this person too recently.

    ``refusal`` is the database's error (SQLSTATE PT429): the API answers it as it answers every refusal of the
    database, in the database's words."""

    def __init__(self, refusal: psycopg.Error) -> None:
        super().__init__(_message(refusal))
        self.refusal = refusal


class ClaimLost(GlucokitError):
    """The claim's lease ran out and another claim took the request over (or it finished)."""


@dataclass(frozen=True)
class Message:
    """A message read from the queue, with the request it carries (None fields: it carries none)."""

    msg_id: int
    read_ct: int
    enqueued_at: datetime
    vt: datetime
    body: dict[str, Any]
    request_id: UUID | None
    person_id: UUID | None
    trigger: Trigger | None
    status: str | None


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a message; ``attempt`` identifies a claim in extend/complete/fail."""

    msg_id: int
    outcome: Outcome
    request_id: UUID | None
    person_id: UUID | None
    trigger: Trigger | None
    reason: str | None
    attempt: int | None
    lease_expires_at: datetime | None

    @property
    def claimed(self) -> bool:
        return self.outcome is Outcome.CLAIMED


@dataclass(frozen=True)
class Retry:
    outcome: RetryOutcome
    at: datetime | None  # when the next attempt may start (RETRYING only)


@dataclass(frozen=True)
class Metrics:
    queue_length: int
    newest_msg_age_sec: int | None
    oldest_msg_age_sec: int | None
    total_messages: int
    queued: int
    running: int
    expired_leases: int
    retrying: int  # queued again after a failed attempt, waiting for its backoff
    failed_last_day: int  # given up (dead letters) in the last 24 hours


@dataclass(frozen=True)
class DeadLetter:
    """A retrain request given up for good, with the reason the last attempt failed."""

    request_id: UUID
    person_id: UUID
    trigger: str
    attempts: int
    error: str | None
    finished_at: datetime | None


def enqueue(conn: Connection, person_id: UUID, trigger: Trigger, reason: str | None = None) -> UUID:
    """Queues a retrain (worker or admin); a request already waiting for the person absorbs it. The request id."""
    row = conn.execute(query("retrain_enqueue"), {"person_id": person_id, "trigger": trigger, "reason": reason})
    return _uuid(_one(row.fetchone()))


def request(conn: Connection, person_id: UUID, reason: str | None = None) -> UUID:
    """The signed-in owner asks for a retrain of their person. Raises RateLimited when asked too often."""
    try:
        row = conn.execute(query("retrain_request"), {"person_id": person_id, "reason": reason}).fetchone()
    except psycopg.Error as exc:
        if exc.sqlstate == RATE_LIMITED:
            raise RateLimited(exc) from exc
        raise
    return _uuid(_one(row))


def enqueue_due(conn: Connection, max_age: timedelta, limit: int = 1000) -> int:
    """Queues retrains of persons whose active model is older than ``max_age``; how many were queued."""
    row = conn.execute(query("retrain_enqueue_due"), {"max_age": max_age, "limit": limit}).fetchone()
    return int(str(_one(row)))


def read(conn: Connection, vt_seconds: int, qty: int = 1) -> list[Message]:
    """Up to ``qty`` visible messages, hidden from other readers for ``vt_seconds``."""
    return _messages(conn.execute(query("retrain_read"), {"vt_seconds": vt_seconds, "qty": qty}).fetchall())


def peek(conn: Connection, shard_index: int, shard_count: int, qty: int) -> list[Message]:
    """Up to ``qty`` visible messages of the persons on shard ``shard_index`` of ``shard_count`` (person id
    modulo the count), oldest first, and those that carry no request; nothing is hidden."""
    parameters = {"shard_index": shard_index, "shard_count": shard_count, "qty": qty}
    return _messages(conn.execute(query("retrain_peek"), parameters).fetchall())


def _messages(rows: list[tuple[Any, ...]]) -> list[Message]:
    return [
        Message(
            msg_id=int(str(msg_id)),
            read_ct=int(str(read_ct)),
            enqueued_at=_datetime(enqueued_at),
            vt=_datetime(vt),
            body=dict(body) if isinstance(body, dict) else {},
            request_id=_optional_uuid(request_id),
            person_id=_optional_uuid(person_id),
            trigger=Trigger(str(trigger)) if trigger is not None else None,
            status=str(status) if status is not None else None,
        )
        for msg_id, read_ct, enqueued_at, vt, body, request_id, person_id, trigger, status in rows
    ]


def claim(conn: Connection, msg_id: int, lease_seconds: int | None = None) -> Claim:
    """Claims the request a message carries; the lease defaults to private.retrain_config.lease_seconds."""
    row = conn.execute(query("retrain_claim"), {"msg_id": msg_id, "lease_seconds": lease_seconds}).fetchone()
    if row is None:
        raise GlucokitError("private.claim_retrain returned no row")
    outcome, request_id, person_id, trigger, reason, attempt, lease_expires_at = row
    return Claim(
        msg_id=msg_id,
        outcome=Outcome(str(outcome)),
        request_id=_optional_uuid(request_id),
        person_id=_optional_uuid(person_id),
        trigger=Trigger(str(trigger)) if trigger is not None else None,
        reason=str(reason) if reason is not None else None,
        attempt=int(str(attempt)) if attempt is not None else None,
        lease_expires_at=_datetime(lease_expires_at) if lease_expires_at is not None else None,
    )


def extend(conn: Connection, held: Claim, lease_seconds: int | None = None) -> datetime:
    """Extends a live claim (heartbeat); the new end of its lease. Raises ClaimLost."""
    parameters = {"msg_id": held.msg_id, "attempt": _attempt(held), "lease_seconds": lease_seconds}
    return _datetime(_one(_held(conn, query("retrain_extend_lease"), parameters)))


def complete(conn: Connection, held: Claim, training_run_id: UUID | None = None) -> bool:
    """The retrain is done: its message is deleted. False when the person was deleted meanwhile. Raises ClaimLost."""
    parameters = {"msg_id": held.msg_id, "attempt": _attempt(held), "training_run_id": training_run_id}
    return bool(_one(_held(conn, query("retrain_complete"), parameters)))


def retry(conn: Connection, held: Claim, error: str) -> Retry:
    """The retrain raised: it is retried after a backoff, or failed for good after its last attempt. Raises
    ClaimLost."""
    row = _held(conn, query("retrain_retry"), {"msg_id": held.msg_id, "attempt": _attempt(held), "error": error})
    if row is None:
        raise GlucokitError("private.retry_retrain returned no row")
    outcome, at = row
    return Retry(RetryOutcome(str(outcome)), _datetime(at) if at is not None else None)


def fail(conn: Connection, held: Claim, error: str, training_run_id: UUID | None = None) -> bool:
    """The retrain failed for a reason no retry can mend: failed at once, its message archived. False when the
    person was deleted meanwhile. Raises ClaimLost."""
    parameters = {"msg_id": held.msg_id, "attempt": _attempt(held), "error": error, "training_run_id": training_run_id}
    return bool(_one(_held(conn, query("retrain_fail"), parameters)))


def dead_letters(conn: Connection, limit: int = 20) -> list[DeadLetter]:
    """The newest requests given up for good (as the database owner: it reads every person's requests)."""
    rows = conn.execute(query("retrain_dead_letters"), {"limit": limit}).fetchall()
    return [
        DeadLetter(_uuid(request), _uuid(person), str(trigger), int(str(attempts)),
                   str(error) if error is not None else None, _datetime(finished) if finished is not None else None)
        for request, person, trigger, attempts, error, finished in rows
    ]  # fmt: skip


def metrics(conn: Connection) -> Metrics:
    row = conn.execute(query("retrain_metrics")).fetchone()
    if row is None:
        raise GlucokitError("private.retrain_queue_metrics returned no row")
    length, newest, oldest, total, queued, running, expired, retrying, failed_last_day = row
    return Metrics(
        queue_length=int(str(length)),
        newest_msg_age_sec=int(str(newest)) if newest is not None else None,
        oldest_msg_age_sec=int(str(oldest)) if oldest is not None else None,
        total_messages=int(str(total)),
        queued=int(str(queued)),
        running=int(str(running)),
        expired_leases=int(str(expired)),
        retrying=int(str(retrying)),
        failed_last_day=int(str(failed_last_day)),
    )


def _held(conn: Connection, sql: bytes, parameters: Mapping[str, object]) -> tuple[object, ...] | None:
    try:
        return conn.execute(sql, parameters).fetchone()
    except psycopg.Error as exc:
        if exc.sqlstate == CLAIM_LOST:
            raise ClaimLost(_message(exc)) from exc
        raise


def _attempt(held: Claim) -> int:
    if not held.claimed or held.attempt is None:
        raise GlucokitError(f"message {held.msg_id} was not claimed ({held.outcome})")
    return held.attempt


def _message(exc: psycopg.Error) -> str:
    diag = exc.diag
    return " ".join(part for part in (diag.message_primary, diag.message_detail, diag.message_hint) if part)


def _one(row: tuple[object, ...] | None) -> object:
    if row is None:
        raise GlucokitError("the retrain queue returned no row")
    return row[0]


def _uuid(value: object) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _optional_uuid(value: object) -> UUID | None:
    return None if value is None else _uuid(value)


def _datetime(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise GlucokitError(f"expected a timestamp, got {value!r}")
    return value
