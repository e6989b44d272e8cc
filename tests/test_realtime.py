"""Realtime Broadcast of new forecasts (migration 20261206150000): one message per forecast origin, ids only,
heard only by the owner of the person."""

from __future__ import annotations

import pytest
from psycopg import sql

from glucokit.db.sessions import Connection, become_role, user_claims
from glucokit.tooling import policies

pytestmark = pytest.mark.full_schema

WORLD = policies.probe_world("realtime")


def _messages(conn: Connection, person: object) -> list[tuple[object, ...]]:
    return conn.execute(
        "select event, private, extension, payload from realtime.messages where topic = %s order by payload",
        (f"forecast:{person}",),
    ).fetchall()


def test_each_new_forecast_origin_is_broadcast_once_with_ids_only(conn: Connection) -> None:
    with conn.transaction(force_rollback=True):
        for statement in policies.world_statements(WORLD):
            conn.execute(statement)
        forecasts = conn.execute(
            "select id, model_id from public.forecast where person_id = %s", (WORLD.a.person,)
        ).fetchall()
        row = conn.execute("select count(*) from public.prediction where person_id = %s", (WORLD.a.person,)).fetchone()
        points = int(str(row[0])) if row else 0
        sent = _messages(conn, WORLD.a.person)
        assert len(forecasts) >= 2
        assert points > len(forecasts)  # one message per origin, not per point
        assert len(sent) == len(forecasts)
        for event, private, extension, payload in sent:
            assert (event, private, extension) == ("forecast", True, "broadcast")
            assert isinstance(payload, dict)
            assert set(payload) == {"forecast_id", "person_id", "model_id", "generated_at"}
            assert payload["person_id"] == str(WORLD.a.person)
        assert {p["forecast_id"] for *_, p in sent} == {str(f) for f, _ in forecasts}  # type: ignore[index]


def test_only_the_owner_hears_a_persons_forecasts(conn: Connection) -> None:
    topic = f"forecast:{WORLD.a.person}"
    heard: dict[str, int] = {}
    with conn.transaction(force_rollback=True):
        for statement in policies.world_statements(WORLD):
            conn.execute(statement)
        for label, claims in (
            ("owner", user_claims(WORLD.a.user)),
            ("other_user", user_claims(WORLD.b.user)),
            ("anonymous_owner", {**user_claims(WORLD.a.user), "is_anonymous": True}),
        ):
            # What Realtime does when a client joins the private channel: the user's claims, the topic, a select.
            conn.execute(become_role("authenticated", claims))
            conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
            row = conn.execute(
                sql.SQL("select count(*) from realtime.messages where topic = {} and extension = 'broadcast'").format(
                    sql.Literal(topic)
                )
            ).fetchone()
            heard[label] = int(str(row[0])) if row else 0
            conn.execute("reset role")
    assert heard["owner"] > 0
    assert (heard["other_user"], heard["anonymous_owner"]) == (0, 0)


def test_the_subscription_path_is_in_the_access_matrix() -> None:
    entry = next(e for e in policies.load().entries if e.name == "realtime.messages")
    assert entry.expected["owner"]["select"] == "allowed"
    assert entry.expected["other_user"]["select"] == "filtered"
    assert all(entry.expected[actor]["insert"] != "allowed" for actor in ("anon", "owner", "other_user"))
