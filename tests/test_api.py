"""The HTTP API against the real database, with real signed tokens for two users and anon (api_fixtures)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any
from uuid import UUID, uuid4
from xml.etree import ElementTree

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from api_fixtures import SECRET, bearer, is_problem, token
from fhir_samples import bundle, cgm, changed
from glucokit.db.sessions import as_role
from glucokit.disclaimer import DISCLAIMER, DISCLAIMER_VERSION
from glucokit.project import PROJECT_DIR
from owners import Owner
from test_forecasts import FIRST_NEW
from wording import forbidden_words, prose

SVG = "{http://www.w3.org/2000/svg}"


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "database": "ok"}


@pytest.mark.parametrize("alg", ["HS256", "ES256", "RS256"])
def test_the_owner_reads_the_latest_curve_with_any_supabase_signing_key(
    client: TestClient, people: tuple[Owner, Owner], alg: str
) -> None:
    alice, _ = people
    response = client.get(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(alice.user, alg=alg)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [point["minutes"] for point in body["points"]] == list(range(5, 65, 5))
    assert body["generated_at"] == "2026-10-15T00:15:00Z"  # the latest of the readings forecast from
    for point in body["points"]:
        assert point["lower_mg_dl"] <= point["value_mg_dl"] <= point["upper_mg_dl"]
        assert point["coverage"] == pytest.approx(0.8)
    assert body["provenance"]["model_version"] == "1.0.0"
    assert body["disclaimer"] == {"version": DISCLAIMER_VERSION, "language": "en", "text": DISCLAIMER["en"]}


def test_responses_use_neutral_wording(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    headers = bearer(token(alice.user))
    curve = client.get(f"/v1/persons/{alice.person}/forecast", headers=headers).json()
    bodies = [
        curve,
        client.get(f"/v1/persons/{alice.person}/forecast?lang=de", headers=headers).json(),
        client.get(f"/v1/forecasts/{curve['points'][0]['id']}", headers=headers).json(),
        client.get(f"/v1/persons/{alice.person}/models", headers=headers).json(),
    ]
    texts = [text for body in bodies for text in prose(body)]
    assert len(texts) == 4  # three disclaimers and the model's stage reason
    assert [text for text in texts if forbidden_words(text)] == []


def test_the_disclaimer_comes_in_german(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    body = client.get(f"/v1/persons/{alice.person}/forecast?lang=de", headers=bearer(token(alice.user))).json()
    assert body["disclaimer"]["text"] == DISCLAIMER["de"]
    is_problem(client.get(f"/v1/persons/{alice.person}/forecast?lang=fr", headers=bearer(token(alice.user))), 422)


def test_another_users_person_is_exactly_like_a_missing_one(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, bob = people
    missing = uuid4()
    for path in ("forecast", "forecasts?from=2026-10-14T00:00:00Z&to=2026-10-16T00:00:00Z", "models"):
        theirs = is_problem(client.get(f"/v1/persons/{alice.person}/{path}", headers=bearer(token(bob.user))), 404)
        absent = is_problem(client.get(f"/v1/persons/{missing}/{path}", headers=bearer(token(bob.user))), 404)
        assert theirs["detail"].replace(str(alice.person), "X") == absent["detail"].replace(str(missing), "X")
    point = client.get(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(alice.user))).json()["points"][0]
    theirs = is_problem(client.get(f"/v1/forecasts/{point['id']}", headers=bearer(token(bob.user))), 404)
    absent = is_problem(client.get(f"/v1/forecasts/{missing}", headers=bearer(token(bob.user))), 404)
    assert theirs["detail"].replace(point["id"], "X") == absent["detail"].replace(str(missing), "X")
    assert (
        is_problem(client.get(f"/v1/persons/{bob.person}/forecast", headers=bearer(token(bob.user))), 404)["detail"]
        == f"person {bob.person} has no forecast yet"
    )


def _unsigned() -> str:
    claims = {"sub": str(uuid4()), "role": "authenticated", "aud": "authenticated", "exp": int(time.time()) + 60}
    return jwt.encode(claims, "", algorithm="none")


SIGN_IN = "sign in: send the access token as 'Authorization: Bearer <token>'"
BAD_SIGNATURE = "invalid token: Signature verification failed"
BAD_TOKENS = [
    ({}, SIGN_IN),
    ({"Authorization": "Basic abc"}, SIGN_IN),
    (bearer("not-a-token"), "not a JWT: "),
    (bearer(token(None, role="anon")), "a signed-in user's token is needed, not one with role 'anon'"),
    (bearer(token(uuid4(), expires_in=-120)), "the token has expired: sign in again"),
    (bearer(token(uuid4(), aud="elsewhere")), "the token is not for this API (audience must be 'authenticated')"),
    (bearer(token(uuid4(), key="another-secret-of-at-least-32-characters!")), BAD_SIGNATURE),
    (bearer(token(uuid4(), alg="ES256", key=ec.generate_private_key(ec.SECP256R1()))), BAD_SIGNATURE),
    (bearer(token(uuid4(), alg="ES256", kid="unknown")), "no signing key for this token: "),
    (bearer(_unsigned()), "tokens signed with 'none' are not accepted"),
    (
        bearer(token(uuid4(), alg="HS384", key=SECRET + "-and-more-for-384")),
        "tokens signed with 'HS384' are not accepted",
    ),
]


@pytest.mark.parametrize(("headers", "detail"), BAD_TOKENS)
def test_bad_tokens_are_refused(
    client: TestClient, people: tuple[Owner, Owner], headers: dict[str, str], detail: str
) -> None:
    alice, _ = people
    response = client.get(f"/v1/persons/{alice.person}/forecast", headers=headers)
    body = is_problem(response, 401)
    assert body["detail"].startswith(detail)
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_forecasts_in_a_range_come_a_page_at_a_time(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    url = f"/v1/persons/{alice.person}/forecasts?from=2026-10-14T00:00:00Z&to=2026-10-16T00:00:00Z&limit=20"
    seen: list[dict[str, Any]] = []
    page = client.get(url, headers=bearer(token(alice.user))).json()
    while True:
        seen += page["items"]
        if page["next_cursor"] is None:
            break
        page = client.get(f"{url}&cursor={page['next_cursor']}", headers=bearer(token(alice.user))).json()
    assert len(seen) == 4 * 12 == len({item["id"] for item in seen})
    keys = [(item["generated_at"], item["minutes"]) for item in seen]
    assert keys == sorted(keys)
    assert all(item["provenance"]["model_version"] == "1.0.0" for item in seen)
    problems = {
        f"{url}&cursor=garbage": "cursor is not a next_cursor this API returned",
        url.replace("Z&to", "&to"): "from and to need a time zone offset (e.g. Z or +01:00)",
        url.replace("2026-10-16", "2026-10-13"): "to must be after from, and at most 31 days after it",
        url.replace("limit=20", "limit=5000"): "query.limit: Input should be less than or equal to 1000",
    }
    for bad, detail in problems.items():
        assert is_problem(client.get(bad, headers=bearer(token(alice.user))), 422)["detail"] == detail


def test_one_point_comes_with_its_sources_as_fhir_references(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    curve = client.get(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(alice.user))).json()
    body = client.get(f"/v1/forecasts/{curve['points'][5]['id']}", headers=bearer(token(alice.user))).json()
    assert (body["minutes"], body["person_id"]) == (30, str(alice.person))
    window = [source for source in body["sources"] if source["role"] == "input_window"]
    assert len(window) == 12
    assert all(source["reference"].startswith("Observation/") for source in body["sources"])
    UUID(window[0]["reference"].removeprefix("Observation/"))
    assert body["disclaimer"]["version"] == DISCLAIMER_VERSION


def test_models_and_runs(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    body = client.get(f"/v1/persons/{alice.person}/models", headers=bearer(token(alice.user))).json()
    assert [(model["version"], model["stage"], model["algorithm"]) for model in body["models"]] == [
        ("1.0.0", "active", "ridge")
    ]
    assert [(run["trigger"], run["status"]) for run in body["training_runs"]] == [("initial", "succeeded")]


def test_a_retrain_request_is_queued_once_an_hour(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, bob = people
    first = client.post(
        f"/v1/persons/{alice.person}/retrain", json={"reason": "new sensor"}, headers=bearer(token(alice.user))
    )
    assert first.status_code == 202, first.text
    UUID(first.json()["request_id"])
    again = is_problem(client.post(f"/v1/persons/{alice.person}/retrain", headers=bearer(token(alice.user))), 429)
    assert again["detail"].startswith(f"a retrain of person {alice.person} was already requested at ")
    assert "An owner may request one retrain per person every 01:00:00." in again["detail"]
    is_problem(client.post(f"/v1/persons/{alice.person}/retrain", headers=bearer(token(bob.user))), 404)


def test_feedback_on_a_point_is_replaced_when_sent_again(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, bob = people
    curve = client.get(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(alice.user))).json()
    url = f"/v1/forecasts/{curve['points'][0]['id']}/feedback"
    first = client.put(url, json={"rating": "up", "comment": "close"}, headers=bearer(token(alice.user)))
    assert first.status_code == 200, first.text
    second = client.put(url, json={"rating": "down"}, headers=bearer(token(alice.user))).json()
    assert (second["id"], second["rating"], second["comment"]) == (first.json()["id"], "down", None)
    is_problem(client.put(url, json={"rating": "up"}, headers=bearer(token(bob.user))), 404)
    bad = is_problem(client.put(url, json={"rating": "meh"}, headers=bearer(token(alice.user))), 422)
    assert bad["detail"] == "body.rating: Input should be 'up' or 'down'"


def test_fhir_upload_keeps_the_valid_entries(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, bob = people
    document = bundle(cgm(FIRST_NEW + 100, 120), changed(cgm(FIRST_NEW + 101, 130), status="done"))
    url = f"/v1/persons/{alice.person}/observations"
    response = client.post(
        url,
        content=json.dumps(document),
        headers={**bearer(token(alice.user)), "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["entries"], body["stored"], body["new"], body["rejected"]) == (2, 1, 1, 1)
    assert body["rejections"][0]["position"] == "entry 1"
    ndjson = "\n".join(json.dumps(cgm(FIRST_NEW + 102 + k, 125)) for k in range(2))
    lines = client.post(
        url, content=ndjson, headers={**bearer(token(alice.user)), "Content-Type": "application/fhir+ndjson"}
    ).json()
    assert (lines["stored"], lines["rejected"]) == (2, 0)
    wrong = client.post(url, content="x", headers={**bearer(token(alice.user)), "Content-Type": "text/plain"})
    assert is_problem(wrong, 415)["detail"].startswith("send application/fhir+json or ")
    theirs = client.post(
        url, content=json.dumps(document), headers={**bearer(token(bob.user)), "Content-Type": "application/fhir+json"}
    )
    assert is_problem(theirs, 404)["detail"] == f"no person {alice.person} among yours"


def test_the_chart_shows_the_latest_forecast_with_the_disclaimer(
    client: TestClient, people: tuple[Owner, Owner]
) -> None:
    alice, bob = people
    svg = client.get(f"/v1/persons/{alice.person}/chart?lang=de", headers=bearer(token(alice.user)))
    assert (svg.status_code, svg.headers["content-type"]) == (200, "image/svg+xml"), svg.text
    root = ElementTree.fromstring(svg.content)  # noqa: S314 - the chart this API just rendered
    texts = " ".join("".join(node.itertext()) for node in root.iter(f"{SVG}text"))
    assert " ".join(DISCLAIMER["de"].split()) in " ".join(texts.split())
    assert "Modell 1.0.0" in texts
    png = client.get(f"/v1/persons/{alice.person}/chart?format=png", headers=bearer(token(alice.user)))
    assert (png.headers["content-type"], png.content[:8]) == ("image/png", b"\x89PNG\r\n\x1a\n")
    theirs = is_problem(client.get(f"/v1/persons/{alice.person}/chart", headers=bearer(token(bob.user))), 404)
    assert theirs["detail"] == f"no person {alice.person} among yours"
    empty = is_problem(client.get(f"/v1/persons/{bob.person}/chart", headers=bearer(token(bob.user))), 404)
    assert empty["detail"] == f"person {bob.person} has no readings or forecast to chart yet"


def test_claims_end_with_the_request_transaction(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    client.get(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(alice.user)))
    service = client.app.state.service  # type: ignore[attr-defined]
    for _ in range(2):  # both pooled connections
        with service.pool.connection() as conn:
            role, claims = conn.execute("select current_user, current_setting('request.jwt.claims', true)").fetchone()
            assert (role, claims or None) == ("postgres", None)


def _signed_in(user: UUID, **claims: object) -> str:
    """An HS256 access token of ``user`` with Supabase Auth's extra claims (aal, is_anonymous)."""
    now = int(time.time())
    standard = {"role": "authenticated", "aud": "authenticated", "iat": now, "exp": now + 3600, "sub": str(user)}
    return jwt.encode({**standard, **claims}, SECRET, algorithm="HS256")


@pytest.mark.parametrize("route", ["forecast", "models"])  # the async path and a sync one
def test_the_database_sees_how_the_user_signed_in(client: TestClient, people: tuple[Owner, Owner], route: str) -> None:
    alice, _ = people
    path = f"/v1/persons/{alice.person}/{route}"
    for aal in ("aal1", "aal2"):  # no route reaches what needs a second factor: aal1 reads like aal2
        response = client.get(path, headers=bearer(_signed_in(alice.user, aal=aal, is_anonymous=False)))
        assert response.status_code == 200, response.text
    # The database's restrictive policy for anonymous sign-ins, reached through the API: the claims are carried.
    is_problem(client.get(path, headers=bearer(_signed_in(alice.user, aal="aal1", is_anonymous=True))), 404)


def test_the_claims_given_to_the_database_include_aal(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    service = client.app.state.service  # type: ignore[attr-defined]
    caller = service.settings.verifier.caller("Bearer " + _signed_in(alice.user, aal="aal1"))
    with service.pool.connection() as conn:
        with as_role(conn, "authenticated", caller.claims):
            assert conn.execute("select auth.jwt() ->> 'aal'").fetchone() == ("aal1",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(conn, "authenticated", caller.claims):
            conn.execute("update public.consent set withdrawn_at = now() where person_id = %s", (alice.person,))


def test_every_route_is_documented_with_examples(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("description") or operation.get("summary"), (method, path)
            success = next(code for code in operation["responses"] if code.startswith("2"))
            content = operation["responses"][success]["content"]
            if "application/json" in content:
                reference = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                assert schemas[reference].get("examples"), (method, path, reference)
            else:  # the chart
                assert set(content) == {"image/svg+xml", "image/png"}
                assert content["image/svg+xml"]["example"].startswith("<svg")
            for status in ("401", "404", "422"):
                assert "application/problem+json" in operation["responses"][status]["content"], (method, path, status)


def test_the_cloud_run_entry_point_serves_the_api_and_stops_on_sigterm(database_url: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = [sys.executable, str(PROJECT_DIR / "workers" / "api_service.py")]
    environment = os.environ | {"DATABASE_URL": database_url, "PORT": str(port), "SUPABASE_JWT_SECRET": SECRET}
    process = subprocess.Popen(service, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    assert json.loads(response.read()) == {"status": "ok", "database": "ok"}
                    break
            except OSError:
                assert process.poll() is None, process.stderr
                assert time.monotonic() < deadline
                time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=30)
        # uvicorn shuts down gracefully, then exits by the signal it caught, as its caller expects.
        assert process.returncode == -signal.SIGTERM
        assert "Waiting for application shutdown." in log
        assert "Finished server process" in log
    finally:
        process.kill()
    unset = {key: value for key, value in environment.items() if key != "SUPABASE_JWT_SECRET"}
    refused = subprocess.run(service, capture_output=True, text=True, env=unset, timeout=60, check=False)
    assert (refused.returncode, refused.stderr) == (
        2,
        "api_service: token verification needs SUPABASE_JWT_SECRET, a JWKS URL, or both\n",
    )
