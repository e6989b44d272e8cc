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
from uuid import UUID

import psycopg

Connection = psycopg.Connection[tuple[object, ...]]


def user_claims(user_id: UUID) -> dict[str, object]:
    """The claims Supabase Auth puts in a signed-in user's access token (the ones policies read)."""
    return {"sub": str(user_id), "role": "authenticated", "aud": "authenticated"}


@contextmanager
def as_role(conn: Connection, role: str, claims: Mapping[str, object]) -> Iterator[Connection]:
    """One transaction as ``role`` with ``claims``; both end with the transaction."""
    with conn.transaction():
        conn.execute(
            b"select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
            (role, json.dumps(claims)),
        )
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
def as_worker(conn: Connection, person_id: UUID | None) -> Iterator[Connection]:
    """One transaction as ``glucokit_worker``, scoped to ``person_id`` (unscoped with None)."""
    with conn.transaction():
        conn.execute(b"set local role glucokit_worker")
        if person_id is not None:
            conn.execute(b"select private.begin_person_scope(%s)", (person_id,))
        yield conn
