"""The retrain service: an HTTP endpoint that queues retrains, for Pub/Sub push, Cloud Scheduler and Cloud Tasks.

It only ever enqueues (``retrain_queue``), answering within milliseconds; the
training happens in the retrain job. Commands, as JSON:

    {"action": "retrain", "person_id": "<uuid>", "trigger": "new_data", "reason": "..."}
    {"action": "sweep", "max_age_hours": 24}

sent as the request body (Cloud Scheduler, Cloud Tasks) or as the base64
``message.data`` of a Pub/Sub push. A retrain is queued by the worker role
scoped to that one person; a sweep (persons whose active model is older than
``max_age_hours``) by the unscoped worker role.

Every command must carry the Google-signed OIDC token that Pub/Sub push,
Cloud Scheduler and Cloud Tasks send as ``Authorization: Bearer``
(``OidcVerifier``): signed by one of Google's keys, issued by
accounts.google.com, not expired, for this service's audience, and naming a
listed service account whose email Google verified. The token is checked
before the body is read, so no one else gets a byte of it parsed.
``verifier`` builds it from the settings (``glucokit.settings.RetrainAuthSettings``);
without them the service refuses to start, unless local development is asked
for explicitly (then it checks nothing and the entry point listens on 127.0.0.1
only).

Answers (errors as RFC 9457 problem+json): 202 with what was queued; 401
without a valid token for this service; 403 for a valid token of an account
not allowed in; 413 for a body over 64 KiB; 422 for a body that is not a
command, or a person that cannot be queued (unknown, or no consent to
training), except from Pub/Sub, which would redeliver it forever: such
messages are acknowledged (204) and logged; 503 when the database or Google's
certificates cannot be reached, so that the sender retries.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import google.auth.exceptions
import google.auth.jwt
import httpx
import psycopg
from fastapi import FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException

from glucokit.db.sessions import Connection, Purpose, as_worker
from glucokit.errors import DatabaseUnreachable, GlucokitError
from glucokit.modelops import retrain_queue
from glucokit.modelops.retrain_queue import Trigger
from glucokit.settings import LEEWAY_S, RetrainAuthSettings

log = logging.getLogger("glucokit.jobs.retrain_service")

MAX_BODY_BYTES: Final = 64 * 1024
PROBLEM_JSON: Final = "application/problem+json"
# The issuer of the ID tokens Google signs for service accounts, in both spellings Google uses.
GOOGLE_ISSUERS: Final = frozenset({"https://accounts.google.com", "accounts.google.com"})
# Google's OIDC signing keys as {key id: X.509 certificate (PEM)}.
GOOGLE_CERTS_URL: Final = "https://www.googleapis.com/oauth2/v1/certs"
CERTS_MAX_AGE_S: Final = 300  # kept this long when the response names no Cache-Control max-age
MAX_SWEEP_HOURS: Final = 10 * 366 * 24  # bounds the interval PostgreSQL gets (a timedelta overflows far later)

Certs = Callable[[], Mapping[str, str]]  # key id -> PEM certificate or public key


class Unauthorized(GlucokitError):
    """The request carries no token, or one that is not a valid Google-signed ID token for this service."""


class Forbidden(GlucokitError):
    """A valid ID token, of an account that may not call this service."""


class CertsUnavailable(GlucokitError):
    """Google's signing certificates could not be fetched: nothing can be verified now."""


class GoogleCerts:
    """Google's OIDC signing certificates, fetched from ``url`` and reused for as long as the response's
    Cache-Control max-age allows (Google publishes a key before it signs with it)."""

    def __init__(self, url: str = GOOGLE_CERTS_URL, client: httpx.Client | None = None) -> None:
        self.url = url
        self._client = client or httpx.Client(timeout=10)
        self._lock = threading.Lock()
        self._certs: dict[str, str] = {}
        self._fresh_until = 0.0

    def __call__(self) -> Mapping[str, str]:
        with self._lock:
            if time.monotonic() >= self._fresh_until:
                try:
                    response = self._client.get(self.url)
                    response.raise_for_status()
                    certs = response.json()
                except (httpx.HTTPError, ValueError) as error:
                    raise CertsUnavailable(f"Google's signing certificates are unavailable: {error}") from None
                if not isinstance(certs, dict):
                    raise CertsUnavailable(f"{self.url} did not answer with certificates by key id")
                max_age = re.search(r"max-age=(\d+)", response.headers.get("cache-control", ""))
                self._certs = {str(key): str(cert) for key, cert in certs.items()}
                self._fresh_until = time.monotonic() + (int(max_age.group(1)) if max_age else CERTS_MAX_AGE_S)
            return self._certs


@dataclass(frozen=True)
class OidcVerifier:
    """Accepts the Google-signed ID tokens of the ``invokers`` (service account emails) for one of ``audiences``."""

    audiences: frozenset[str]
    invokers: frozenset[str]
    certs: Certs

    def invoker(self, authorization: str | None) -> str:
        """The service account of an ``Authorization: Bearer`` header; raises Unauthorized or Forbidden."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send a Google-signed OIDC token as 'Authorization: Bearer <token>'")
        try:
            # It checks the signature (RS256/ES256 only), iat and exp, and the audience; not the issuer.
            claims = google.auth.jwt.decode(  # type: ignore[no-untyped-call]  # google-auth leaves it unannotated
                token.strip(), certs=self.certs(), audience=sorted(self.audiences), clock_skew_in_seconds=LEEWAY_S
            )
        except (ValueError, google.auth.exceptions.GoogleAuthError) as error:
            raise Unauthorized(f"invalid token: {error}") from None
        except RecursionError:  # google-auth's json.loads on a header nested thousands deep
            raise Unauthorized("invalid token: its header or claims nest too deeply") from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Unauthorized(f"the token was not issued by Google (iss {claims.get('iss')!r})")
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            raise Forbidden("the token names no verified email: give the sender an OIDC service account")
        if email.lower() not in self.invokers:
            raise Forbidden(f"{email} may not call this service")
        return email


def verifier(settings: RetrainAuthSettings) -> OidcVerifier | None:
    """The verifier the settings configure; None for local development without authentication (the settings
    hold an audience and invokers, or the local switch)."""
    if settings.retrain_insecure_local:
        return None
    return OidcVerifier(frozenset(settings.retrain_audience), frozenset(settings.retrain_invokers), GoogleCerts())


# --- commands --------------------------------------------------------------------------


class RetrainCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["retrain"]
    person_id: UUID
    trigger: Trigger = Trigger.USER_REQUEST
    # PostgreSQL text holds no NUL; retrain_request.reason holds 2000 characters.
    reason: str | None = Field(None, max_length=2000, pattern=r"^[^\x00]*$")


class SweepCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["sweep"]
    max_age_hours: float = Field(24, gt=0, le=MAX_SWEEP_HOURS, strict=True, allow_inf_nan=False)


Command = Annotated[RetrainCommand | SweepCommand, Field(discriminator="action")]


class PushMessage(BaseModel):
    data: str = ""  # the command, base64-encoded JSON


class PubSubPush(BaseModel):
    """The envelope of a Pub/Sub push request."""

    message: PushMessage
    subscription: str


def _shape(body: Any) -> str:
    is_push = isinstance(body, dict) and isinstance(body.get("message"), dict) and "subscription" in body
    return "pubsub" if is_push else "command"


_INCOMING: Final = TypeAdapter[PubSubPush | RetrainCommand | SweepCommand](
    Annotated[
        Annotated[PubSubPush, Tag("pubsub")] | Annotated[Command, Tag("command")],
        Discriminator(_shape),
    ]
)
_COMMAND: Final = TypeAdapter[RetrainCommand | SweepCommand](Command)


class RetrainQueued(BaseModel):
    queued: Literal["retrain"] = "retrain"
    person_id: UUID
    request_id: UUID


class SweepQueued(BaseModel):
    queued: Literal["sweep"] = "sweep"
    persons: int


class Refused(GlucokitError):
    """A well-formed command the database will not carry out for this person (unknown, or no consent)."""


def execute(conn: Connection, order: RetrainCommand | SweepCommand) -> RetrainQueued | SweepQueued:
    """Queues what ``order`` asks for; what was queued. Raises Refused."""
    if isinstance(order, SweepCommand):
        with as_worker(conn, None):
            return SweepQueued(persons=retrain_queue.enqueue_due(conn, timedelta(hours=order.max_age_hours)))
    why = f"{order.trigger} retrain requested through the retrain service"
    try:
        with as_worker(conn, order.person_id, Purpose.TRAINING, why):
            request_id = retrain_queue.enqueue(conn, order.person_id, order.trigger, order.reason)
    except (psycopg.errors.NoDataFound, psycopg.errors.InsufficientPrivilege) as refused:
        raise Refused(refused.diag.message_primary or str(refused)) from None
    return RetrainQueued(person_id=order.person_id, request_id=request_id)


# --- the app ---------------------------------------------------------------------------


def _problem(status: int, title: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


class _Problem(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _invalid(error: ValidationError) -> _Problem:
    def where(loc: tuple[int | str, ...]) -> str:
        # The shape tags ("command", "pubsub") are this module's device, not part of the sender's body.
        path = loc[1:] if loc[:1] in (("command",), ("pubsub",)) else loc
        return ".".join(str(part) for part in path) or "body"

    detail = "; ".join(f"{where(item['loc'])}: {item['msg']}" for item in error.errors())
    return _Problem(422, "Unprocessable Content", detail)


async def _body(request: Request) -> bytes:
    """The body, refused with 413 once it is over MAX_BODY_BYTES (declared or streamed)."""
    too_large = _Problem(413, "Content Too Large", f"a command is at most {MAX_BODY_BYTES} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)


def create_app(connect: Callable[[], Connection], verifier: OidcVerifier | None) -> FastAPI:
    """The service; ``connect`` opens a database connection per command; ``verifier`` None checks no token
    (local development only)."""
    # Internal: no interactive docs or schema for anyone to fetch.
    app = FastAPI(title="glucokit retrain service", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/", status_code=202, response_model=None)
    async def command(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> RetrainQueued | SweepQueued | Response:
        invoker = "nobody (local development)"
        if verifier is not None:
            # In a worker thread: the first call, and one per max-age after, fetches Google's certificates.
            invoker = await run_in_threadpool(verifier.invoker, authorization)
        body = await _body(request)
        try:
            incoming = _INCOMING.validate_json(body)
        except ValidationError as error:
            raise _invalid(error) from None
        pubsub = isinstance(incoming, PubSubPush)
        try:
            order = _command(incoming.message.data) if isinstance(incoming, PubSubPush) else incoming
            done = await run_in_threadpool(_run, connect, order)
        except (_Problem, Refused) as bad:
            if not pubsub:
                raise
            # Pub/Sub redelivers anything not acknowledged: drop it, loudly.
            log.error("dropped a Pub/Sub message from %s that cannot be queued: %s", invoker, bad)
            return Response(status_code=204)
        ids = (
            {"person_id": str(done.person_id), "request_id": str(done.request_id)}
            if isinstance(done, RetrainQueued)
            else {}
        )
        log.info("%s queued for %s", done.model_dump_json(), invoker, extra=ids)
        return done

    _error_handlers(app)
    return app


def _command(data: str) -> RetrainCommand | SweepCommand:
    try:
        return _COMMAND.validate_json(base64.b64decode(data, validate=True))
    except binascii.Error as error:
        raise _Problem(422, "Unprocessable Content", f"message.data is not base64: {error}") from None
    except ValidationError as error:
        raise _invalid(error) from None


def _run(connect: Callable[[], Connection], order: RetrainCommand | SweepCommand) -> RetrainQueued | SweepQueued:
    with connect() as conn:
        return execute(conn, order)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(_Problem)
    async def problem(request: Request, error: _Problem) -> JSONResponse:
        return _problem(error.status, error.title, error.detail)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, error: Unauthorized) -> JSONResponse:
        return _problem(401, "Unauthorized", str(error), {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, error: Forbidden) -> JSONResponse:
        return _problem(403, "Forbidden", str(error))

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> JSONResponse:
        return _problem(422, "Unprocessable Content", f"{error}: nothing was queued")

    @app.exception_handler(CertsUnavailable)
    async def no_certs(request: Request, error: CertsUnavailable) -> JSONResponse:
        log.error("%s", error)
        return _problem(503, "Service Unavailable", "tokens cannot be verified now: retry later")

    @app.exception_handler(psycopg.Error)
    @app.exception_handler(DatabaseUnreachable)
    async def database(request: Request, error: Exception) -> JSONResponse:
        log.error("the database refused a command: %s", error)
        return _problem(503, "Service Unavailable", "the database is unavailable: retry later")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # The server logs the traceback; the sender learns only that it may retry.
        return _problem(500, "Internal Server Error", "an unexpected error: retry later")

    @app.exception_handler(HTTPException)
    async def http(request: Request, error: HTTPException) -> JSONResponse:
        title = {404: "Not Found", 405: "Method Not Allowed"}.get(error.status_code, "Error")
        return _problem(error.status_code, title, f"{error.detail}: POST commands to /")
