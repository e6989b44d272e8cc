"""Every route of the OpenAPI document, called with generated input (valid and invalid, signed in and not):
no answer is a server error, and every answer carries the header policy.

Bounded for `make test`: ``FUZZ_EXAMPLES`` cases per route and generation mode, each sent as generated and
again with the path's ids replaced by the signed-in user's own person and forecast, so the routes reach data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from api_fixtures import SECRET, bearer, token
from glucokit.api import ApiSettings, TokenVerifier, create_app
from glucokit.api.app import CONTENT_SECURITY_POLICY, SECURITY_HEADERS
from owners import Owner

FUZZ_EXAMPLES = 50


@pytest.fixture(scope="module")
def fuzzed_app(database_url: str) -> Iterator[FastAPI]:
    app = create_app(ApiSettings(database_url, TokenVerifier(secret=SECRET), pool_size=2))
    with TestClient(app):  # its lifespan opens the pool for every request schemathesis sends
        yield app


def operations() -> list[tuple[GenerationMode, str]]:
    """Each route in each generation mode; a route that takes no input has no invalid input to send."""
    app = create_app(ApiSettings("postgresql://unused", TokenVerifier(secret=SECRET)))
    return [
        (mode, f"{method.upper()} {path}")
        for path, methods in app.openapi()["paths"].items()
        for method, operation in methods.items()
        for mode in GenerationMode
        if mode is GenerationMode.POSITIVE or operation.get("parameters") or operation.get("requestBody")
    ]


@pytest.mark.parametrize(("mode", "label"), operations(), ids=str)
def test_no_route_answers_with_a_server_error(
    label: str, mode: GenerationMode, fuzzed_app: FastAPI, people: tuple[Owner, Owner], database_url: str
) -> None:
    alice, _ = people
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select id from public.prediction where person_id = %s limit 1", (alice.person,)).fetchone()
    assert row is not None
    own = {"person_id": str(alice.person), "prediction_id": str(row[0])}
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    method, path = label.split(" ", 1)
    operation = schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        generated = dict(case.path_parameters or {})
        for path_parameters in (generated, {**generated, **{k: v for k, v in own.items() if k in generated}}):
            case.path_parameters = path_parameters
            for headers in (bearer(token(alice.user)), {}):
                response = case.call(headers={**(case.headers or {}), **headers})
                where = (case.method, case.formatted_path, case.query, response.status_code)
                assert response.status_code < 500, (*where, response.text)
                received = {name: values[0] for name, values in response.headers.items()}
                for name, value in SECURITY_HEADERS.items():
                    assert received.get(name.lower()) == value, (*where, name)
                assert received.get("content-security-policy") == CONTENT_SECURITY_POLICY, where

    check()
