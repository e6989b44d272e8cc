"""The latest-forecast route on the event loop (issue 16): its async pool, its one transaction, its JSON, and the
token checks that stay off the thread pool (api_fixtures)."""

from __future__ import annotations

import asyncio
import json

import httpx
import jwt
from fastapi.testclient import TestClient

from api_fixtures import SECRET, bearer, is_problem, token
from glucokit.api import TokenVerifier
from glucokit.api.models import LatestForecast
from owners import Owner


def test_claims_end_with_the_request_transaction_on_the_async_pool(
    client: TestClient, people: tuple[Owner, Owner]
) -> None:
    alice, bob = people
    assert client.get(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(alice.user))).status_code == 200
    is_problem(client.get(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(bob.user))), 404)
    service = client.app.state.service  # type: ignore[attr-defined]

    async def pooled_sessions() -> list[tuple[object, ...]]:
        seen = []
        for _ in range(2):  # both pooled connections
            async with service.async_pool.connection() as conn:
                cursor = await conn.execute("select current_user, current_setting('request.jwt.claims', true)")
                seen.append(await cursor.fetchone())
        return seen

    # The pool belongs to the client's event loop: ask it there.
    for role, claims in client.portal.call(pooled_sessions):  # type: ignore[union-attr]
        assert (role, claims or None) == ("postgres", None)


def test_the_two_not_founds_stay_distinct_with_the_person_checked_last(
    client: TestClient, people: tuple[Owner, Owner]
) -> None:
    alice, bob = people
    theirs = is_problem(client.get(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(bob.user))), 404)
    assert theirs["detail"] == f"no person {alice.person} among yours"
    empty = is_problem(client.get(f"/v1/persons/{bob.person}/forecast", headers=bearer(token(bob.user))), 404)
    assert empty["detail"] == f"person {bob.person} has no forecast yet"


def test_the_json_is_the_response_model_as_fastapi_would_write_it(
    client: TestClient, people: tuple[Owner, Owner]
) -> None:
    alice, _ = people
    response = client.get(f"/v1/persons/{alice.person}/forecast?lang=de", headers=bearer(token(alice.user)))
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"]
    body = json.loads(response.content)
    assert LatestForecast.model_validate(body).model_dump(mode="json") == body
    assert body["disclaimer"]["language"] == "de"
    schema = client.get("/openapi.json").json()["paths"]["/v1/persons/{person_id}/forecast"]["get"]
    assert schema["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LatestForecast"
    }


def test_only_an_asymmetric_token_with_a_jwks_may_block() -> None:
    hs256 = jwt.encode({"sub": "x"}, SECRET, algorithm="HS256")
    with_jwks = TokenVerifier(secret=SECRET, jwks_url="http://127.0.0.1:9/jwks.json")
    assert not with_jwks.may_block(f"Bearer {hs256}")
    assert not with_jwks.may_block(None)
    assert not with_jwks.may_block("Bearer not-a-jwt")
    es256_header = jwt.utils.base64url_encode(b'{"alg":"ES256","typ":"JWT"}').decode()
    assert with_jwks.may_block(f"Bearer {es256_header}.e30.c2ln")
    assert not TokenVerifier(secret=SECRET).may_block(f"Bearer {es256_header}.e30.c2ln")


def test_the_route_answers_concurrent_requests_on_one_loop(client: TestClient, people: tuple[Owner, Owner]) -> None:
    """More requests at once than the pool has connections: each waits for one, none fails."""
    alice, _ = people
    app = client.app

    async def many() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            answers = await asyncio.gather(
                *(http.get(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(alice.user))) for _ in range(8))
            )
        return [answer.status_code for answer in answers]

    assert client.portal.call(many) == [200] * 8  # type: ignore[union-attr]
