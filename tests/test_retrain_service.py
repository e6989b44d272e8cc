"""The retrain service over HTTP: only Google-signed OIDC tokens of the listed service accounts get in; Cloud Tasks,
Scheduler and Pub/Sub push bodies queue retrains; nothing trains.

Tokens are signed here with locally generated RSA keys that stand in for Google's: nothing reaches the network.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import httpx
import httpx2
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from glucokit.db.sessions import Connection, as_user
from glucokit.errors import GlucokitError
from glucokit.jobs import retrain_service
from glucokit.jobs.retrain_service import GoogleCerts, OidcVerifier
from glucokit.project import PROJECT_DIR
from glucokit.settings import RetrainAuthSettings, load
from owners import Owner

AUDIENCE = "https://glucokit-retrain-abc123-ew.a.run.app"
PUSHER = "pubsub-push@glucokit.iam.gserviceaccount.com"
KEY_ID = "google-key-1"


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


GOOGLE_KEY = _rsa_key()
OTHER_KEY = _rsa_key()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def token(key: rsa.RSAPrivateKey = GOOGLE_KEY, kid: str = KEY_ID, **changes: Any) -> str:
    """An ID token as Google signs them for a service account; ``changes`` replace claims (None removes one)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "https://accounts.google.com", "aud": AUDIENCE, "sub": "110000000000000000001",
        "email": PUSHER, "email_verified": True, "iat": now, "exp": now + 3600, "azp": "110000000000000000001",
    } | changes  # fmt: skip
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="RS256", headers={"kid": kid})


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    verifier = OidcVerifier(frozenset({AUDIENCE}), frozenset({PUSHER}), lambda: {KEY_ID: public_pem(GOOGLE_KEY)})
    app = retrain_service.create_app(lambda: psycopg.connect(database_url), verifier)
    with TestClient(app) as test_client:
        yield test_client


def post(client: TestClient, document: Any, headers: dict[str, str] | None = None) -> httpx2.Response:
    return client.post("/", content=json.dumps(document), headers=bearer(token()) if headers is None else headers)


def pubsub(document: Any) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(document).encode()).decode()
    return {"message": {"data": data, "messageId": "1", "attributes": {}}, "subscription": "projects/p/subscriptions/s"}


def queued(conn: Connection, owner: Owner) -> list[tuple[str, str]]:
    with as_user(conn, owner.user):
        return conn.execute("select trigger::text, status::text from public.retrain_request").fetchall()  # type: ignore[return-value]


def problem(response: httpx2.Response, status: int) -> str:
    """The detail of a problem+json answer with ``status``."""
    assert (response.status_code, response.headers["content-type"]) == (status, "application/problem+json")
    body = response.json()
    assert (body["type"], body["status"]) == ("about:blank", status)
    return str(body["detail"])


# --- who gets in ---------------------------------------------------------------------


def test_without_a_token_nothing_is_queued(client: TestClient, conn: Connection, owner: Owner) -> None:
    command = {"action": "retrain", "person_id": str(owner.person), "trigger": "performance"}
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, bearer(""), bearer("not-a-jwt")):
        response = post(client, command, headers)
        assert problem(response, 401)
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert queued(conn, owner) == []


def _nested_header(depth: int) -> str:
    header = base64.urlsafe_b64encode(b"[" * depth + b"]" * depth).rstrip(b"=").decode()
    return f"{header}.e30.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("case", "forged", "status", "detail"),
    [
        ("wrong audience", lambda: token(aud="https://someone-else.a.run.app"), 401, "wrong audience"),
        ("wrong issuer", lambda: token(iss="https://evil.example"), 401, "not issued by Google"),
        ("expired", lambda: token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), 401, "expired"),
        ("no expiry", lambda: token(exp=None), 401, "exp"),
        ("signed by another key", lambda: token(OTHER_KEY), 401, "signature"),
        ("unknown key id", lambda: token(OTHER_KEY, kid="key-2"), 401, "key-2"),
        ("HS256 with the public key", lambda: jwt.encode({"aud": AUDIENCE}, "s" * 32, algorithm="HS256"), 401, "HS256"),
        ("unsigned", lambda: jwt.encode({"aud": AUDIENCE}, "", algorithm="none"), 401, "none"),
        ("unlisted account", lambda: token(email="someone@other.iam.gserviceaccount.com"), 403, "may not call"),
        ("unverified email", lambda: token(email_verified=False), 403, "no verified email"),
        ("email verified as a string", lambda: token(email_verified="true"), 403, "no verified email"),
        ("no email", lambda: token(email=None), 403, "no verified email"),
        ("a header nested 1,500 deep", lambda: _nested_header(1500), 401, "nest too deeply"),
    ],
)
def test_a_token_that_does_not_hold_is_refused(
    client: TestClient, conn: Connection, owner: Owner, case: str, forged: Callable[[], str], status: int, detail: str
) -> None:
    command = {"action": "retrain", "person_id": str(owner.person), "trigger": "performance"}
    assert detail in problem(post(client, command, bearer(forged())), status), case
    assert queued(conn, owner) == []


def test_the_token_is_checked_before_the_body_is_read(client: TestClient) -> None:
    assert problem(client.post("/", content=b"{" * 200_000), 401)


def test_listed_emails_match_whatever_their_case(database_url: str, owner: Owner) -> None:
    verifier = OidcVerifier(frozenset({AUDIENCE}), frozenset({PUSHER}), lambda: {KEY_ID: public_pem(GOOGLE_KEY)})
    assert verifier.invoker(f"Bearer {token(email=PUSHER.upper(), iss='accounts.google.com')}") == PUSHER.upper()


# --- what it queues (as before) ---------------------------------------------------------


def test_a_cloud_tasks_body_queues_a_retrain(client: TestClient, conn: Connection, owner: Owner) -> None:
    response = post(client, {"action": "retrain", "person_id": str(owner.person), "trigger": "performance"})
    assert response.status_code == 202
    body = response.json()
    assert (body["queued"], body["person_id"]) == ("retrain", str(owner.person))
    assert queued(conn, owner) == [("performance", "queued")]


def test_a_pubsub_push_queues_a_retrain(client: TestClient, conn: Connection, owner: Owner) -> None:
    command = {"action": "retrain", "person_id": str(owner.person), "trigger": "new_data"}
    assert post(client, pubsub(command)).status_code == 202
    assert queued(conn, owner) == [("new_data", "queued")]


def test_a_scheduler_sweep_queues_due_persons(client: TestClient) -> None:
    response = post(client, {"action": "sweep", "max_age_hours": 24})
    assert response.status_code == 202
    assert response.json()["queued"] == "sweep"
    assert isinstance(response.json()["persons"], int)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"action": "retrain", "person_id": "not-a-uuid"}, "retrain.person_id: Input should be a valid UUID"),
        ({"action": "retrain", "person_id": str(uuid4()), "trigger": "whim"}, "trigger: Input should be 'initial'"),
        ({"action": "retrain", "person_id": str(uuid4()), "reason": "a\u0000b"}, "reason: String should match"),
        ({"action": "retrain", "person_id": str(uuid4()), "reason": "x" * 2001}, "reason: String should have at most"),
        ({"action": "retrain", "person_id": str(uuid4()), "priority": 1}, "priority: Extra inputs are not permitted"),
        ({"action": "train everyone"}, "does not match any of the expected tags: 'retrain', 'sweep'"),
        ({"action": "sweep", "max_age_hours": True}, "max_age_hours: Input should be a valid number"),
        ({"action": "sweep", "max_age_hours": -1}, "max_age_hours: Input should be greater than 0"),
        ({"action": "sweep", "max_age_hours": 1e300}, "max_age_hours: Input should be less than or equal to"),
        ([1, 2], "body: Input should be an object"),
    ],
)
def test_a_malformed_command_gets_a_422_problem(client: TestClient, body: Any, detail: str) -> None:
    assert detail in problem(post(client, body), 422)


def test_a_body_that_is_not_json_or_too_large_gets_a_problem(client: TestClient) -> None:
    assert "Invalid JSON" in problem(client.post("/", content=b"{", headers=bearer(token())), 422)
    large = json.dumps({"action": "sweep", "pad": "x" * retrain_service.MAX_BODY_BYTES})
    assert problem(client.post("/", content=large, headers=bearer(token())), 413)
    chunked = (part for part in (large[:1000].encode(), large[1000:].encode()))  # no Content-Length
    assert problem(client.post("/", content=chunked, headers=bearer(token())), 413)


def test_a_person_that_cannot_be_queued_gets_a_422_problem(client: TestClient, conn: Connection, owner: Owner) -> None:
    unknown = post(client, {"action": "retrain", "person_id": str(uuid4())})
    assert problem(unknown, 422).endswith("does not exist: nothing was queued")
    conn.execute("update public.consent set withdrawn_at = now() where person_id = %s", (owner.person,))
    conn.commit()
    refused = post(client, {"action": "retrain", "person_id": str(owner.person)})
    assert problem(refused, 422) == f"person {owner.person} has not consented to training: nothing was queued"


@pytest.mark.parametrize(
    "message",
    [
        pubsub({"action": "train everyone"}),
        pubsub({"action": "retrain", "person_id": str(uuid4())}),  # no such person
        {"message": {"data": "%%%"}, "subscription": "projects/p/subscriptions/s"},
    ],
)
def test_a_bad_pubsub_message_is_acknowledged_not_redelivered(client: TestClient, message: Any) -> None:
    response = post(client, message)
    assert (response.status_code, response.content) == (204, b"")


def test_the_health_check_answers_and_nothing_else_is_served(client: TestClient) -> None:
    assert (client.get("/healthz").status_code, client.get("/healthz").json()) == (200, {"status": "ok"})
    for path in ("/docs", "/openapi.json"):
        assert problem(client.get(path), 404)


def test_the_database_failing_asks_the_sender_to_retry(owner: Owner) -> None:
    def down() -> Connection:
        raise psycopg.OperationalError("connection refused")

    verifier = OidcVerifier(frozenset({AUDIENCE}), frozenset({PUSHER}), lambda: {KEY_ID: public_pem(GOOGLE_KEY)})
    with TestClient(retrain_service.create_app(down, verifier)) as client:
        response = post(client, {"action": "retrain", "person_id": str(owner.person)})
    assert problem(response, 503) == "the database is unavailable: retry later"


# --- settings and Google's certificates -------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "error"),
    [
        ({}, "GLUCOKIT_RETRAIN_AUDIENCE is required"),
        ({"GLUCOKIT_RETRAIN_AUDIENCE": AUDIENCE}, "GLUCOKIT_RETRAIN_INVOKERS is required"),
        (
            {"GLUCOKIT_RETRAIN_AUDIENCE": AUDIENCE, "GLUCOKIT_RETRAIN_INVOKERS": "pubsub-push"},
            "GLUCOKIT_RETRAIN_INVOKERS: 'pubsub-push' is not a service account email",
        ),
        ({"GLUCOKIT_RETRAIN_INSECURE_LOCAL": "yes"}, "GLUCOKIT_RETRAIN_INSECURE_LOCAL='yes': set it to 1"),
        (
            {"GLUCOKIT_RETRAIN_INSECURE_LOCAL": "1", "GLUCOKIT_RETRAIN_AUDIENCE": AUDIENCE},
            "GLUCOKIT_RETRAIN_INSECURE_LOCAL=1 turns authentication off",
        ),
    ],
)
def test_missing_or_bad_settings_are_named(environ: dict[str, str], error: str) -> None:
    with pytest.raises(GlucokitError, match=error.replace("(", r"\(")):
        load(RetrainAuthSettings, environ)


def test_the_settings_make_a_verifier() -> None:
    verifier = retrain_service.verifier(
        load(
            RetrainAuthSettings,
            {
                "GLUCOKIT_RETRAIN_AUDIENCE": f"{AUDIENCE}, {AUDIENCE}/",
                "GLUCOKIT_RETRAIN_INVOKERS": f" {PUSHER.upper()},a@b.co",
            },
        )
    )
    assert verifier is not None
    assert (verifier.audiences, verifier.invokers) == (
        frozenset({AUDIENCE, f"{AUDIENCE}/"}),
        frozenset({PUSHER, "a@b.co"}),
    )
    assert retrain_service.verifier(load(RetrainAuthSettings, {"GLUCOKIT_RETRAIN_INSECURE_LOCAL": "1"})) is None


def test_googles_certificates_are_fetched_once_per_max_age() -> None:
    fetched: list[str] = []

    def google(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(
            200, json={KEY_ID: public_pem(GOOGLE_KEY)}, headers={"Cache-Control": "public, max-age=3600"}
        )

    certs = GoogleCerts(client=httpx.Client(transport=httpx.MockTransport(google)))
    assert certs() == certs() == {KEY_ID: public_pem(GOOGLE_KEY)}
    assert fetched == [retrain_service.GOOGLE_CERTS_URL]
    broken = GoogleCerts(client=httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(500))))
    with pytest.raises(retrain_service.CertsUnavailable):
        broken()


# --- the Cloud Run entry point ----------------------------------------------------------------


def test_the_entry_point_refuses_to_start_without_its_settings(database_url: str) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLUCOKIT_RETRAIN_")}
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "workers" / "retrain_service.py")],
        capture_output=True, text=True, env=environment | {"DATABASE_URL": database_url}, timeout=60, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("retrain_service: GLUCOKIT_RETRAIN_AUDIENCE is required: the service's URL")


def test_the_cloud_run_entry_point_serves_on_port_and_stops_on_sigterm(database_url: str) -> None:
    environment = os.environ | {"DATABASE_URL": database_url, "PORT": "0", "GLUCOKIT_RETRAIN_INSECURE_LOCAL": "1"}
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_DIR / "workers" / "retrain_service.py")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on port ")
        port = int(line.split()[-1])
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the service did not answer"
                time.sleep(0.05)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=30)
        # uvicorn shuts down gracefully, then exits by the signal it caught, as its caller expects.
        assert process.returncode == -signal.SIGTERM
        assert "no token is checked, listening on 127.0.0.1 only" in log
        assert time.monotonic() - began < 10
    finally:
        process.kill()
