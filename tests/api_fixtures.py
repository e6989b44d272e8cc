"""The API's test world, shared by its test modules: real signed tokens for two users and anon, and an app on the
migrated database.

Tokens are signed the three ways Supabase Auth signs them: HS256 with the
project's JWT secret, and ES256 and RS256 with keys published as a JWKS (served
here over HTTP from a local server, as ``/auth/v1/.well-known/jwks.json`` is).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from fhir_samples import bundle, cgm
from glucokit.api import ApiSettings, TokenVerifier, create_app
from glucokit.fhir.ingest import Ingest
from glucokit.forecast import TrainingSettings
from glucokit.modelops.forecasts import write_forecasts
from glucokit.modelops.model_store import LocalModelStore
from glucokit.modelops.retrain import retrain
from glucokit.project import SIMULATED_DIR
from owners import Owner
from test_forecasts import FIRST_NEW
from wording import forbidden_words

SECRET = "test-jwt-secret-with-at-least-32-characters"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class _Jwks(BaseHTTPRequestHandler):
    body = json.dumps(
        {
            "keys": [
                {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key())), "kid": "ec-1", "alg": "ES256"},
                {
                    **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key())),
                    "kid": "rsa-1",
                    "alg": "RS256",
                },
            ]
        }
    ).encode()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/auth/v1/.well-known/jwks.json"
    server.shutdown()


def token(user: UUID | None, *, role: str = "authenticated", aud: str = "authenticated", alg: str = "HS256",
          expires_in: int = 3600, kid: str | None = None, key: Any = None) -> str:  # fmt: skip
    now = int(time.time())
    claims: dict[str, Any] = {"role": role, "aud": aud, "iat": now, "exp": now + expires_in}
    if user is not None:
        claims["sub"] = str(user)
    signing: Any = key if key is not None else {"HS256": SECRET, "ES256": EC_KEY, "RS256": RSA_KEY}[alg]
    kid = kid or {"ES256": "ec-1", "RS256": "rsa-1"}.get(alg)
    return jwt.encode(claims, signing, algorithm=alg, headers={"kid": kid} if kid else None)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def people(
    database_url: str, make_module_owner: Callable[[], Owner], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Owner, Owner]:
    """Alice with a trained model and forecasts from four readings; Bob with a person and nothing else."""
    alice, bob = make_module_owner(), make_module_owner()
    store = LocalModelStore(Path(tmp_path_factory.mktemp("models")))
    with psycopg.connect(database_url) as conn:
        Ingest([conn], user_id=alice.user, person_id=alice.person).path(SIMULATED_DIR / "adult-001.json.gz")
        retrain(conn, store, alice.person, "initial", settings=TrainingSettings(families=("ridge",)))
        write_forecasts(conn, store, alice.person)
        later = bundle(*(cgm(FIRST_NEW + k, 150) for k in range(3)))
        Ingest([conn], user_id=alice.user, person_id=alice.person).document(json.dumps(later).encode(), source="t")
        write_forecasts(conn, store, alice.person)
    return alice, bob


@pytest.fixture(scope="module")
def client(database_url: str, jwks_url: str) -> Iterator[TestClient]:
    app = create_app(ApiSettings(database_url, TokenVerifier(secret=SECRET, jwks_url=jwks_url), pool_size=2))
    with TestClient(app) as test_client:
        yield test_client


def is_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert forbidden_words(body["detail"]) == []
    assert set(body) == {"type", "title", "status", "detail", "instance"}
    assert body["status"] == status
    return body
