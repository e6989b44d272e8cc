"""Connections to the database glucokit works on, with a one-line error when there is none."""

from __future__ import annotations

import psycopg

from glucokit.db.urls import check_url, prepare_threshold, redact
from glucokit.errors import DatabaseUnreachable

CONNECT_TIMEOUT_S = 5


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    """A connection, or a one-line error saying why there is none."""
    check_url(url)
    try:
        return psycopg.connect(
            url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=autocommit, prepare_threshold=prepare_threshold(url)
        )
    except psycopg.Error as exc:
        # libpq's first line names the cause; the lines after it are generic hints.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnreachable(f"cannot connect to {redact(url)}: {reason}") from exc
