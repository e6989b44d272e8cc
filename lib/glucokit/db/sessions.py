"""Transactions that run as one of the API roles, the way PostgREST runs requests.

Every user-facing query runs as ``authenticated`` (or ``anon``) with the
caller's JWT claims set for that transaction only, so row-level security
decides what it sees and nothing leaks into the next transaction of a pooled
connection. Workers run as ``glucokit_worker`` scoped to one person.
The connection's own login must be allowed to ``set role`` to these roles
(``authenticator`` is, on Supabase and in the platform layer).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import psycopg
from psycopg import sql

from glucokit.db.queries import query
from glucokit.errors import GlucokitError, NotFound

Connection = psycopg.Connection[tuple[object, ...]]

Statement = sql.SQL | sql.Composed


def user_claims(user_id: UUID) -> dict[str, object]:
    """The claims Supabase Auth puts in a signed-in user's access token (the ones policies read)."""
    return {"sub": str(user_id), "role": "authenticated", "aud": "authenticated"}


def become_role(role: str, claims: Mapping[str, object]) -> sql.Composed:
    """The statement that switches the current transaction to ``role`` with ``claims``, as PostgREST does."""
    return sql.SQL("select set_config('role', {}, true), set_config('request.jwt.claims', {}, true)").format(
        sql.Literal(role), sql.Literal(json.dumps(claims, sort_keys=True))
    )


class Purpose(StrEnum):
    """Why a worker touches a person's data: the database's ``public.processing_purpose``
    (migration 20261122121200). All but deletion need the person's consent."""

    TRAINING = "training"
    FORECASTING = "forecasting"
    PATTERN_SEARCH = "pattern_search"
    DELETION = "deletion"


@dataclass(frozen=True)
class Scope:
    """The one person a worker transaction may touch, for what purpose and why (the audit log's row)."""

    person_id: UUID
    purpose: Purpose
    reason: str

    def statement(self) -> sql.Composed:
        """Scopes the current worker transaction: the database checks consent and writes the audit log."""
        return sql.SQL("select private.begin_person_scope({}, {}, {})").format(
            sql.Literal(self.person_id), sql.Literal(str(self.purpose)), sql.Literal(self.reason)
        )


def become_worker(scope: Scope | None) -> list[Statement]:
    """The statements that switch the current transaction to the worker role, scoped by ``scope`` (unscoped: None)."""
    statements: list[Statement] = [sql.SQL("set local role glucokit_worker")]
    if scope is not None:
        statements.append(scope.statement())
    return statements


def require_person(conn: Connection, person_id: UUID) -> datetime:
    """Inside a user's transaction: the database's clock, once the user is known to own ``person_id``."""
    row = conn.execute(query("person_visible"), {"person_id": person_id}).fetchone()
    if row is None or not row[0]:
        raise NotFound(f"person {person_id} does not exist or is not one of yours")
    now = row[1]
    assert isinstance(now, datetime)
    return now


@contextmanager
def as_role(conn: Connection, role: str, claims: Mapping[str, object]) -> Iterator[Connection]:
    """One transaction as ``role`` with ``claims``; both end with the transaction."""
    with conn.transaction():
        conn.execute(become_role(role, claims))
        yield conn


@contextmanager
def as_user(conn: Connection, user_id: UUID) -> Iterator[Connection]:
    """One transaction as the signed-in user ``user_id``."""
    with as_role(conn, "authenticated", user_claims(user_id)) as scoped:
        yield scoped


@contextmanager
def as_anon(conn: Connection) -> Iterator[Connection]:
    """One transaction as an anonymous caller (the anon key, no user)."""
    with as_role(conn, "anon", {"role": "anon"}) as scoped:
        yield scoped


@contextmanager
def as_worker(
    conn: Connection, person_id: UUID | None, purpose: Purpose | None = None, reason: str = ""
) -> Iterator[Connection]:
    """One transaction as ``glucokit_worker``: unscoped with ``person_id`` None, else scoped to
    that person for ``purpose`` (the person must consent to it) with ``reason`` (for the audit log)."""
    scope = None
    if person_id is not None:
        if purpose is None or not reason.strip():
            raise GlucokitError("a worker scope needs a purpose and a reason")
        scope = Scope(person_id, purpose, reason)
    with conn.transaction():
        for statement in become_worker(scope):
            conn.execute(statement)
        yield conn
