"""The API against hostile and careless clients: bounded bodies, specific 4xx answers instead of 500s, commits
before answers, and the header policy on every response."""

from __future__ import annotations

import base64
import json
import logging
import time
import tracemalloc
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, get_args
from uuid import UUID, uuid4

import anyio
import jwt
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError

from api_fixtures import SECRET, bearer, is_problem, token
from fhir_samples import bundle, cgm
from glucokit.api import reads
from glucokit.api.app import CONTENT_SECURITY_POLICY, SECURITY_HEADERS, router
from glucokit.fhir import ingest
from owners import Owner
from test_forecasts import FIRST_NEW

MIB = 1024 * 1024
# What one upload may hold in memory, whatever its body: the body beyond 1 MiB is spooled to disk, a resource
# is built up to Limits.max_entry_bytes, and at most two batches of Limits.batch_bytes are held (docs/api.md).
UPLOAD_MEMORY = 32 * MIB


def deep_bundle(depth: int) -> bytes:
    return b'{"resourceType":"Bundle","type":"collection","entry":' + b"[" * depth + b"]" * depth + b"}"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    consumed: int  # bytes of the request body the app had read when it answered
    committed: list[bool] = field(default_factory=list)  # what `check` said when the response started

    def json(self) -> Any:
        return json.loads(self.body)


def drive(
    app: FastAPI,
    method: str,
    path: str,
    headers: dict[str, str],
    chunks: Iterator[bytes] | None = None,
    check: Callable[[], bool] | None = None,
) -> Answer:
    """One request straight through the ASGI interface, the body sent lazily a chunk at a time (as a chunked
    upload arrives), with ``check`` run at the moment the response starts."""
    answer = Answer(0, {}, b"", 0)
    body = chunks if chunks is not None else iter(())

    async def receive() -> MutableMapping[str, Any]:
        chunk = next(body, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        answer.consumed += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {name.decode(): value.decode() for name, value in message["headers"]}
            if check is not None:
                answer.committed.append(check())
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    path_only, _, query = path.partition("?")
    scope: MutableMapping[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path_only, "raw_path": path_only.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    anyio.run(app, scope, receive, send)
    return answer


def chunked(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    line = json.dumps(cgm(0)).encode() + b"\n"
    block = (line * (size // len(line) + 1))[:size]
    for _ in range(total // size):
        yield block


@pytest.fixture(scope="module")
def app(client: TestClient) -> FastAPI:
    """The app the module's client started (its lifespan opened the pool)."""
    assert isinstance(client.app, FastAPI)
    return client.app


def upload_headers(user: UUID, content_type: str = "application/fhir+ndjson") -> dict[str, str]:
    return {**bearer(token(user)), "Content-Type": content_type}


# --- Finding 2: upload bodies are bounded --------------------------------------------------------------------


def test_a_deeply_nested_bundle_is_rejected_in_bounded_memory(app: FastAPI, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    path = f"/v1/persons/{alice.person}/observations"
    tracemalloc.start()
    try:
        for depth in (20_000, 200_000):
            answer = drive(
                app, "POST", path, upload_headers(alice.user, "application/fhir+json"), iter([deep_bundle(depth)])
            )
            assert answer.status == 200, answer.body
            assert answer.json()["rejections"] == [
                {"position": "entry 0", "problems": ["entry[0]: nested deeper than 64 levels"]}
            ]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < UPLOAD_MEMORY, f"{peak / MIB:.1f} MiB"


def test_a_chunked_upload_stops_at_the_limit_in_bounded_memory(app: FastAPI, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    limit = ingest.Limits().max_document_bytes
    tracemalloc.start()
    try:
        answer = drive(app, "POST", f"/v1/persons/{alice.person}/observations", upload_headers(alice.user),
                       chunked(200 * MIB))  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert json.loads(answer.body)["detail"].startswith("the body is above the limit of 67108864 bytes per upload")
    assert answer.consumed <= limit + 64 * 1024  # read no further than the limit
    assert peak < UPLOAD_MEMORY, f"{peak / MIB:.1f} MiB"


def test_a_strangers_upload_is_refused_before_its_body_is_read(app: FastAPI, people: tuple[Owner, Owner]) -> None:
    alice, bob = people
    answer = drive(app, "POST", f"/v1/persons/{alice.person}/observations", upload_headers(bob.user),
                   chunked(8 * MIB))  # fmt: skip
    assert (answer.status, answer.consumed) == (404, 0)
    declared = {**upload_headers(alice.user), "Content-Length": str(65 * MIB)}
    answer = drive(app, "POST", f"/v1/persons/{alice.person}/observations", declared, chunked(8 * MIB))
    assert (answer.status, answer.consumed) == (413, 0)
    garbled = {**upload_headers(alice.user), "Content-Length": "12ab"}
    assert drive(app, "POST", f"/v1/persons/{alice.person}/observations", garbled).status == 400


def test_ndjson_of_large_resources_stays_in_bounded_memory(app: FastAPI, people: tuple[Owner, Owner]) -> None:
    """Resources near the entry limit, many of them: batches close by size, not only by count."""
    alice, _ = people
    big = {**cgm(FIRST_NEW + 500, 111), "note": [{"text": "n" * (ingest.Limits().max_entry_bytes - 4096)}]}
    lines = [
        json.dumps({**big, "identifier": [{"system": "urn:test", "value": f"big-{k}"}]}).encode() for k in range(40)
    ]
    tracemalloc.start()
    try:
        answer = drive(app, "POST", f"/v1/persons/{alice.person}/observations", upload_headers(alice.user),
                       iter(line + b"\n" for line in lines))  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status == 200, answer.body
    assert answer.json()["entries"] == 40
    assert peak < UPLOAD_MEMORY, f"{peak / MIB:.1f} MiB"


# --- Finding 3: user input reaches no 500 --------------------------------------------------------------------


def test_a_cursor_the_api_did_not_write_is_a_422(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    url = f"/v1/persons/{alice.person}/forecasts?from=2026-10-14T00:00:00Z&to=2026-10-16T00:00:00Z"
    point = uuid4()
    for text in (
        f"2026-10-15T00:00:00+00:00|99999|{point}",  # beyond smallint
        f"2026-10-15T00:00:00+00:00|-5|{point}",
        f"2026-10-15T00:00:00|5|{point}",  # no zone
        f"2026-10-15T00:00:00+00:00|5|urn:uuid:{point}",
        f"2026-10-15T00:00:00+00:00|５|{point}",  # noqa: RUF001 - a full-width digit, as an attacker sends it
    ):
        cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        problem = is_problem(client.get(f"{url}&cursor={cursor}", headers=bearer(token(alice.user))), 422)
        assert problem["detail"] == "cursor is not a next_cursor this API returned"


def test_a_retrain_without_consent_to_training_is_a_403_that_says_so(
    client: TestClient, database_url: str, make_owner: Callable[[], Owner]
) -> None:
    carol = make_owner()
    with psycopg.connect(database_url) as conn:
        conn.execute("delete from public.consent where person_id = %s and purpose = 'training'", (carol.person,))
    problem = is_problem(client.post(f"/v1/persons/{carol.person}/retrain", headers=bearer(token(carol.user))), 403)
    assert problem["detail"] == (
        f"person {carol.person} has not consented to training. Grant consent to training in public.consent first."
    )


def test_a_nul_character_in_free_text_is_a_422(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    curve = client.get(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(alice.user))).json()
    feedback = client.put(
        f"/v1/forecasts/{curve['points'][0]['id']}/feedback",
        json={"rating": "up", "comment": "fine\x00"},
        headers=bearer(token(alice.user)),
    )
    assert is_problem(feedback, 422)["detail"] == (
        "body.comment: Value error, contains a NUL character (\\u0000), which text in the database cannot hold"
    )
    retrain = client.post(
        f"/v1/persons/{alice.person}/retrain", json={"reason": "\x00"}, headers=bearer(token(alice.user))
    )
    assert is_problem(retrain, 422)["detail"].startswith("body.reason: Value error, contains a NUL character")


def test_every_free_text_field_of_a_request_refuses_nul() -> None:
    """The class: any string a route takes in its body, now or later, is checked the same way."""
    bodies: set[type[BaseModel]] = set()
    for route in router.routes:
        if isinstance(route, APIRoute) and route.body_field is not None:
            annotation = route.body_field.field_info.annotation
            bodies |= {arg for arg in get_args(annotation) or (annotation,) if issubclass(arg, BaseModel)}
    assert {model.__name__ for model in bodies} == {"FeedbackIn", "RetrainRequest"}
    for model in bodies:
        for name, info in model.model_fields.items():
            if str in (info.annotation, *get_args(info.annotation)):
                valid = {key: "up" if key == "rating" else "x" for key in model.model_fields}
                with pytest.raises(ValidationError, match="NUL character"):
                    model.model_validate({**valid, name: "a\x00b"})


def signed(claims: dict[str, Any]) -> dict[str, str]:
    now = int(time.time())
    return bearer(jwt.encode({"role": "authenticated", "aud": "authenticated", "iat": now, "exp": now + 600,
                              **claims}, SECRET, algorithm="HS256"))  # fmt: skip


def test_a_user_id_is_canonical_before_the_database_reads_it(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    path = f"/v1/persons/{alice.person}/models"
    full_width = str(alice.user).translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"})
    for sub in (f"urn:uuid:{alice.user}", f"{{{alice.user}}}", full_width, alice.user.hex, f" {alice.user}"):
        problem = is_problem(client.get(path, headers=signed({"sub": sub})), 401)
        assert problem["detail"] == "the token names no user (sub is not a user id)"
    # Supabase writes ids in lower case; an upper-case one names the same user and reaches the database canonical.
    assert client.get(path, headers=signed({"sub": str(alice.user).upper()})).status_code == 200
    nul = is_problem(client.get(path, headers=signed({"sub": str(alice.user), "user_metadata": {"n": "\x00"}})), 401)
    assert nul["detail"] == (
        "the token carries a NUL character (\\u0000) or an unpaired surrogate, which the database cannot read"
    )


def test_an_unexpected_error_is_a_problem_with_a_request_id_and_a_logged_traceback(
    client: TestClient, people: tuple[Owner, Owner], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alice, _ = people

    def broken(*_: object) -> None:
        raise RuntimeError("a bug with a secret in it")

    monkeypatch.setattr(reads, "models", broken)
    with caplog.at_level(logging.ERROR, logger="glucokit.api"):
        response = TestClient(client.app, raise_server_exceptions=False).get(
            f"/v1/persons/{alice.person}/models", headers=bearer(token(alice.user))
        )
    problem = is_problem(response, 500)
    request_id = response.headers["x-request-id"]
    assert problem["detail"] == f"the service failed to answer; the operator can find it under request id {request_id}"
    assert "secret" not in response.text
    assert any(request_id in record.getMessage() and record.exc_info for record in caplog.records)
    assert response.headers["cache-control"] == "no-store"


# --- Finding 4: a write answers only after it commits --------------------------------------------------------


def test_every_write_is_committed_before_its_answer(
    app: FastAPI, database_url: str, people: tuple[Owner, Owner], client: TestClient
) -> None:
    alice, _ = people
    curve = client.get(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(alice.user))).json()
    point = curve["points"][3]["id"]

    def visible(statement: str, *parameters: object) -> Callable[[], bool]:
        def check() -> bool:
            with psycopg.connect(database_url) as other:
                return other.execute(statement, parameters).fetchone() is not None

        return check

    with psycopg.connect(database_url) as conn:
        conn.execute("delete from public.retrain_request where person_id = %s", (alice.person,))
    document = json.dumps(bundle(cgm(FIRST_NEW + 900, 140))).encode()
    writes = [
        ("PUT", f"/v1/forecasts/{point}/feedback", b'{"rating": "down", "comment": "committed?"}', "application/json",
         visible("select from public.forecast_feedback where prediction_id = %s and comment = 'committed?'", point)),
        ("POST", f"/v1/persons/{alice.person}/retrain", b'{"reason": "committed?"}', "application/json",
         visible("select from public.retrain_request where person_id = %s and reason = 'committed?'", alice.person)),
        ("POST", f"/v1/persons/{alice.person}/observations", document, "application/fhir+json",
         visible("select from public.observation where person_id = %s and source_id = %s", alice.person,
                 f"reading-{FIRST_NEW + 900}")),
    ]  # fmt: skip
    for method, path, body, content_type, check in writes:
        answer = drive(app, method, path, upload_headers(alice.user, content_type), iter([body]), check)
        assert answer.status in (200, 202), answer.body
        assert answer.committed == [True], path


# --- Finding 5: the header policy holds on every response ----------------------------------------------------


def test_every_route_answers_with_the_header_policy(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    headers = bearer(token(alice.user))
    curve = client.get(f"/v1/persons/{alice.person}/forecast", headers=headers).json()
    point = curve["points"][0]["id"]
    calls = {
        ("GET", "/health"): None,
        ("GET", "/v1/persons/{person_id}/forecast"): None,
        ("GET", "/v1/persons/{person_id}/forecasts"): {"from": "2026-10-14T00:00:00Z", "to": "2026-10-16T00:00:00Z"},
        ("GET", "/v1/forecasts/{prediction_id}"): None,
        ("GET", "/v1/persons/{person_id}/models"): None,
        ("GET", "/v1/persons/{person_id}/models/{version}/card"): {"lang": "de"},
        ("POST", "/v1/persons/{person_id}/retrain"): None,
        ("GET", "/v1/persons/{person_id}/chart"): None,
        ("PUT", "/v1/forecasts/{prediction_id}/feedback"): {"rating": "up"},
        ("POST", "/v1/persons/{person_id}/observations"): None,
        ("POST", "/v1/persons/{person_id}/imports/{export_format}"): None,
        ("GET", "/v1/persons/{person_id}/days/{day}/similar"): None,
        ("GET", "/v1/persons/{person_id}/cgm-summary"): {"from": "2026-10-14T00:00:00Z", "to": "2026-10-16T00:00:00Z"},
        ("GET", "/openapi.json"): None,
    }
    document = client.get("/openapi.json").json()
    routes = {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}
    assert routes | {("GET", "/openapi.json")} == set(calls)  # a new route must be added here
    for (method, template), extra in calls.items():
        path = template.format(
            person_id=alice.person, prediction_id=point, day="2026-10-14", export_format="libreview", version="1.0.0"
        )
        for auth in (headers, {}):
            if method == "GET":
                response = client.get(path, params=extra, headers=auth)
            else:
                response = client.request(method, path, json=extra, headers=auth)
            for name, value in SECURITY_HEADERS.items():
                assert response.headers.get(name) == value, (method, path, response.status_code, name)
            assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, (method, path)
            assert response.headers["x-request-id"]
    svg = client.get(f"/v1/persons/{alice.person}/chart", headers=headers)
    assert (svg.status_code, svg.headers["content-security-policy"]) == (200, CONTENT_SECURITY_POLICY)
    assert "content-security-policy" not in client.get("/docs").headers  # the documentation page loads its scripts


def test_a_deep_bundle_through_the_cli_path_is_rejected_too(tmp_path: Any, conn: Any, owner: Owner) -> None:
    """The same bounds hold for files (glucokit ingest): they share the reader."""
    path = tmp_path / "deep.json"
    path.write_bytes(deep_bundle(20_000))
    report = ingest.Ingest([conn], user_id=owner.user, person_id=owner.person).path(path)
    assert [str(rejection) for rejection in report.rejections] == ["entry 0: entry[0]: nested deeper than 64 levels"]


# --- Found in review: every body is capped before the token is checked; junk is quarantined cut short -------------


def test_a_json_body_is_capped_before_the_token_is_checked(app: FastAPI, people: tuple[Owner, Owner]) -> None:
    """FastAPI parses a JSON body before any dependency runs: with no token, a large body is still refused early."""
    point = uuid4()
    for method, path in (("PUT", f"/v1/forecasts/{point}/feedback"), ("POST", f"/v1/persons/{point}/retrain")):
        tracemalloc.start()
        try:
            answer = drive(app, method, path, {"Content-Type": "application/json"}, chunked(64 * MIB))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert answer.status == 413, answer.body
        assert answer.json()["detail"] == "a request body is at most 65536 bytes here"
        assert answer.consumed <= 65536 + 64 * 1024
        assert peak < 4 * MIB
        declared = {"Content-Type": "application/json", "Content-Length": str(10**9)}
        refused = drive(app, method, path, declared, chunked(MIB))
        assert (refused.status, refused.consumed) == (413, 0)
        absurd = {"Content-Type": "application/json", "Content-Length": "1" * 5000}
        assert drive(app, method, path, absurd).status == 413
    absurd_upload = {**upload_headers(people[0].user), "Content-Length": "1" * 5000}
    assert drive(app, "POST", f"/v1/persons/{people[0].person}/observations", absurd_upload).status == 413


def test_a_junk_document_is_quarantined_cut_short_in_bounded_memory(
    app: FastAPI, people: tuple[Owner, Owner], database_url: str
) -> None:
    alice, _ = people
    tracemalloc.start()
    try:
        junk = (b"\xff" * MIB for _ in range(48))
        answer = drive(app, "POST", f"/v1/persons/{alice.person}/observations",
                       upload_headers(alice.user, "application/fhir+json"), junk)  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status == 200, answer.body
    assert answer.json()["rejections"][0]["position"] == "document"
    assert peak < UPLOAD_MEMORY, f"{peak / MIB:.1f} MiB"
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select max(length(payload)) from public.quarantined_entry where person_id = %s", (alice.person,)
        ).fetchone()
    assert row is not None
    assert row[0] <= 4 * ingest.Limits().max_entry_bytes  # 1 MiB of bytes, each at most 4 characters escaped


def test_an_unpaired_surrogate_in_free_text_or_claims_is_refused(
    client: TestClient, people: tuple[Owner, Owner]
) -> None:
    alice, _ = people
    curve = client.get(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(alice.user))).json()
    feedback = client.put(
        f"/v1/forecasts/{curve['points'][0]['id']}/feedback",
        content=b'{"rating": "up", "comment": "\\ud800"}',
        headers={**bearer(token(alice.user)), "Content-Type": "application/json"},
    )
    assert is_problem(feedback, 422)["detail"].startswith("body.comment: Value error, contains an unpaired surrogate")
    retrain = client.post(
        f"/v1/persons/{alice.person}/retrain",
        content=b'{"reason": "\\udfff x"}',
        headers={**bearer(token(alice.user)), "Content-Type": "application/json"},
    )
    assert is_problem(retrain, 422)["detail"].startswith("body.reason: Value error, contains an unpaired surrogate")
    claims = signed({"sub": str(alice.user), "user_metadata": {"name": "\ud800"}})
    problem = is_problem(client.get(f"/v1/persons/{alice.person}/models", headers=claims), 401)
    assert problem["detail"].startswith("the token carries a NUL character (\\u0000) or an unpaired surrogate")


def test_a_method_not_allowed_says_which_are(client: TestClient, people: tuple[Owner, Owner]) -> None:
    alice, _ = people
    response = client.delete(f"/v1/persons/{alice.person}/forecast", headers=bearer(token(alice.user)))
    is_problem(response, 405)
    assert response.headers["allow"] == "GET"
