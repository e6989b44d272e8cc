"""The app's RPCs (migration 20261206170000) against the real database: what a supabase-js app calls gives what the
FastAPI routes give, the disclaimer texts are disclaimer.py's, and each function has the shape the Data API needs.

Who may call them is proven cell by cell in policies/access.toml (tests/test_policies.py)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api_fixtures import bearer, token
from glucokit.db.sessions import as_user
from glucokit.disclaimer import DISCLAIMERS, LANGUAGES
from owners import Owner

RPCS = ("latest_forecast", "forecast_point", "person_models", "cgm_summary")


def test_the_disclaimer_texts_are_disclaimer_py_s_word_for_word(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        stored = {
            (v, lang): body for v, lang, body in conn.execute("select version, language, body from private.disclaimer")
        }
    assert stored == {(version, lang): DISCLAIMERS[version][lang] for version in DISCLAIMERS for lang in LANGUAGES}


def test_each_rpc_runs_as_the_caller_with_a_pinned_search_path_for_authenticated_only(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """select p.proname, p.prosecdef, p.proconfig,
                 has_function_privilege('authenticated', p.oid, 'execute'),
                 has_function_privilege('anon', p.oid, 'execute'),
                 has_function_privilege('service_role', p.oid, 'execute')
               from pg_proc p where p.pronamespace = 'public'::regnamespace and p.proname = any(%s)""",
            (list(RPCS),),
        ).fetchall()
    assert sorted(row[0] for row in rows) == sorted(RPCS)
    for name, definer, config, authenticated, anon, service_role in rows:
        assert (definer, config, authenticated, anon, service_role) == (
            False, ["search_path=\"\""], True, False, False
        ), name  # fmt: skip


def _rpc(database_url: str, user: Any, statement: str, *params: Any) -> list[dict[str, Any]]:
    with (
        psycopg.connect(database_url) as conn,
        as_user(conn, user),
        conn.cursor(row_factory=dict_row) as cursor,
    ):
        return cursor.execute(statement, params).fetchall()


def test_the_latest_forecast_rpc_answers_what_the_route_answers(
    client: TestClient, database_url: str, people: tuple[Owner, Owner]
) -> None:
    alice, bob = people
    route = client.get(f"/v1/persons/{alice.person}/forecast?lang=de", headers=bearer(token(alice.user))).json()
    rows = _rpc(database_url, alice.user, "select * from public.latest_forecast(%s, 'de')", alice.person)
    assert [str(row["id"]) for row in rows] == [point["id"] for point in route["points"]]
    assert [row["horizon_minutes"] for row in rows] == [point["minutes"] for point in route["points"]]
    assert [pytest.approx(row["value_mg_dl"]) for row in rows] == [point["value_mg_dl"] for point in route["points"]]
    assert {row["disclaimer"] for row in rows} == {route["disclaimer"]["text"]}
    assert {row["model_version"] for row in rows} == {route["provenance"]["model_version"]}
    # Every point names the same anchors: the count is the forecast's sources.
    point = client.get(f"/v1/forecasts/{rows[0]['id']}", headers=bearer(token(alice.user))).json()
    assert {row["source_count"] for row in rows} == {len(point["sources"])}
    assert len(point["sources"]) > 0
    # Another user's person reads as one without forecasts.
    assert _rpc(database_url, bob.user, "select * from public.latest_forecast(%s)", alice.person) == []


def test_the_forecast_point_rpc_carries_the_routes_sources(
    client: TestClient, database_url: str, people: tuple[Owner, Owner]
) -> None:
    alice, bob = people
    latest = _rpc(database_url, alice.user, "select id from public.latest_forecast(%s)", alice.person)
    point_id = latest[-1]["id"]
    route = client.get(f"/v1/forecasts/{point_id}", headers=bearer(token(alice.user))).json()
    (row,) = _rpc(database_url, alice.user, "select * from public.forecast_point(%s)", point_id)
    assert [anchor["reference"] for anchor in row["sources"]] == [source["reference"] for source in route["sources"]]
    assert [anchor["role"] for anchor in row["sources"]] == [source["role"] for source in route["sources"]]
    assert row["disclaimer"] == route["disclaimer"]["text"]
    assert _rpc(database_url, bob.user, "select * from public.forecast_point(%s)", point_id) == []


def test_the_models_rpc_lists_the_routes_models_newest_first(
    client: TestClient, database_url: str, people: tuple[Owner, Owner]
) -> None:
    alice, bob = people
    route = client.get(f"/v1/persons/{alice.person}/models", headers=bearer(token(alice.user))).json()
    rows = _rpc(database_url, alice.user, "select * from public.person_models(%s)", alice.person)
    assert [row["version"] for row in rows] == [model["version"] for model in route["models"]]
    assert all(row["card"] is not None and row["metrics"] for row in rows)
    assert _rpc(database_url, bob.user, "select * from public.person_models(%s)", alice.person) == []


def test_a_disclaimer_language_that_does_not_exist_is_named(database_url: str, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="no disclaimer v1 in language fr"):
        _rpc(database_url, alice.user, "select * from public.latest_forecast(%s, 'fr')", alice.person)
