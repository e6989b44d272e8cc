"""Connections through Supabase's transaction-mode pooler (Supavisor, port 6543) prepare no statements.

A transaction-mode pooler hands each transaction to any server connection, so a statement psycopg prepared
on one is missing on the next. The test reaches the real test server as if through port 6543: libpq finds a
socket-only server by ``<host dir>/.s.PGSQL.<port>``, so a link named for 6543 leads to the same server.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

from glucokit.db.connection import connect
from glucokit.db.urls import PREPARE_THRESHOLD, TRANSACTION_POOLER_PORT, prepare_threshold


def _through_port(database_url: str, port: int, tmp_path: Path) -> str:
    parts = urlsplit(database_url)
    socket_dir = Path(parse_qs(parts.query)["host"][0])
    (tmp_path / f".s.PGSQL.{port}").symlink_to(socket_dir / f".s.PGSQL.{parts.port or 5432}")
    netloc = f"{parts.username}@localhost:{port}"
    return urlunsplit(parts._replace(netloc=netloc, query=f"host={tmp_path}"))


def test_the_pooler_port_turns_prepared_statements_off() -> None:
    assert prepare_threshold("postgresql://u:p@aws-0-eu-central-1.pooler.supabase.com:6543/postgres") is None
    assert prepare_threshold("postgresql://u:p@aws-0-eu-central-1.pooler.supabase.com:5432/postgres") == 5
    assert prepare_threshold("postgresql://u:p@db.example.supabase.co/postgres") == PREPARE_THRESHOLD
    assert prepare_threshold("postgresql://u:p@host:notaport/postgres") == PREPARE_THRESHOLD


def test_a_connection_through_the_pooler_port_prepares_nothing(database_url: str, tmp_path: Path) -> None:
    url = _through_port(database_url, TRANSACTION_POOLER_PORT, tmp_path)
    with connect(url) as conn:
        for _ in range(PREPARE_THRESHOLD * 2):
            conn.execute("select %s::int", (1,))
        assert conn.execute("select count(*) from pg_prepared_statements").fetchone() == (0,)


def test_a_direct_connection_keeps_psycopgs_prepared_statements(database_url: str) -> None:
    with connect(database_url) as conn:
        for _ in range(PREPARE_THRESHOLD * 2):
            conn.execute("select %s::int", (1,))
        assert conn.execute("select count(*) from pg_prepared_statements").fetchone() == (1,)
