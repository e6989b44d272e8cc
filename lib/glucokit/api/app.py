"""The HTTP API: a signed-in user reads their persons' forecasts, models and runs, asks for retrains, leaves
feedback and uploads FHIR observations.

Every request that touches data runs in one transaction as ``authenticated``
with the request's verified claims (``sessions.as_role``, or its async twin
``_as_user_async``), exactly like PostgREST; never as a role that bypasses it.
Row-level security decides what exists, so another user's person or forecast
answers 404 like a missing one. Errors are RFC 9457 problem details
(``application/problem+json``).

The latest-forecast route, the one clients poll, runs on the event loop end to
end (an async connection pool, async dependencies, one transaction, its JSON
written by pydantic straight to bytes); the other routes run in the thread pool.

Informational trend forecasts only: never for dosing, diagnosis or triage.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import IO, Annotated, Any, Final, cast
from uuid import UUID, uuid4

import psycopg
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg.pq import TransactionStatus
from psycopg.rows import class_row, dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glucokit import __version__
from glucokit.api import reads
from glucokit.api.auth import Caller, TokenVerifier, Unauthorized
from glucokit.api.chart import ChartFormat, render
from glucokit.api.models import (
    CgmSummaryReport,
    Disclaimer,
    Feedback,
    FeedbackIn,
    ForecastPage,
    ForecastPoint,
    ForecastPointDetail,
    Health,
    IngestResult,
    LatestForecast,
    ModelCard,
    ModelsAndRuns,
    Provenance,
    Rejected,
    RetrainQueued,
    RetrainRequest,
    SimilarDays,
    SourceReference,
)
from glucokit.db.queries import query
from glucokit.db.sessions import Connection, as_role, become_role
from glucokit.db.urls import prepare_threshold
from glucokit.disclaimer import DISCLAIMER, DISCLAIMER_VERSION, Language
from glucokit.errors import DatabaseUnreachable, GlucokitError, NotFound
from glucokit.fhir import importers, ingest
from glucokit.fhir import summary as cgm_summary
from glucokit.fhir.importers.common import person_time_zone
from glucokit.fhir.resources import FhirVersion
from glucokit.modelops import model_card, patterns, retrain_queue

PROBLEM_JSON: Final = "application/problem+json"
# Every response carries health data or could: none may be stored by a cache or read as another type, and
# none may run anything in a browser (the SVG chart's inline styles are all it needs). The interactive
# documentation pages (/docs, /redoc) load their scripts, so they get every header but this policy.
SECURITY_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CONTENT_SECURITY_POLICY: Final = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox"
REQUEST_ID_HEADER: Final = "X-Request-Id"
_CALLER_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}", re.ASCII)
# A request body is taken into memory up to this size, and onto disk beyond it (up to the upload limit).
SPOOL_BYTES: Final = ingest.MIB
SMALLINT_MAX: Final = 32767  # prediction.horizon_minutes is a smallint
# Every body but an upload's: the JSON bodies this API takes are a few hundred bytes (a 2,000-character comment).
MAX_BODY_BYTES: Final = 64 * 1024
UPLOAD_PATH: Final = re.compile(r"/v1/persons/[^/]+/(observations|imports/[^/]+)")
MAX_PAGE: Final = 1000
MAX_RANGE: Final = timedelta(days=31)
NDJSON_TYPES: Final = ("application/x-ndjson", "application/fhir+ndjson", "application/ndjson")
JSON_TYPES: Final = ("application/fhir+json", "application/json")
# The content types each export is sent as (a browser may label a CSV file either way).
IMPORT_TYPES: Final[dict[importers.Format, tuple[str, ...]]] = {
    "nightscout": ("application/json",),
    "dexcom-clarity": ("text/csv", "application/vnd.ms-excel"),
    "libreview": ("text/csv", "application/vnd.ms-excel"),
    "apple-health": ("application/xml", "text/xml"),
}


class Problem(Exception):
    """An error answered as problem+json: an HTTP status, a short title and the specific detail."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers = status, title, detail, headers or {}


def _problem_response(problem: Problem, instance: str) -> JSONResponse:
    body = {"type": "about:blank", "title": problem.title, "status": problem.status, "detail": problem.detail}
    return JSONResponse(
        {**body, "instance": instance}, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


PROBLEM_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    status: {
        "description": title,
        "content": {PROBLEM_JSON: {"example": {"type": "about:blank", "title": title, "status": status,
                                                "detail": detail, "instance": "/v1/persons/…"}}},
    }
    for status, title, detail in (
        (401, "Unauthorized", "the token has expired: sign in again"),
        (404, "Not Found", "no person 3f1e2d4c-5b6a-4978-8a9b-0c1d2e3f4a5b among yours"),
        (422, "Unprocessable Content", "query.limit: Input should be less than or equal to 1000"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class ApiSettings:
    database_url: str  # a login that may `set role authenticated` (authenticator on Supabase), never a bypassing one
    verifier: TokenVerifier
    pool_size: int = 8  # connections at most in each of the two pools (sync routes, async routes)
    ingest_limits: ingest.Limits = field(default_factory=ingest.Limits)


AsyncConnection = psycopg.AsyncConnection[tuple[object, ...]]


@dataclass(frozen=True)
class _Service:
    settings: ApiSettings
    pool: ConnectionPool  # the routes run in the thread pool
    async_pool: AsyncConnectionPool[AsyncConnection]  # the routes run on the event loop


# The dependencies that do no I/O are async: FastAPI runs a sync dependency in the thread pool, a hop that costs
# about as much CPU as the latest-forecast route's own work (bench/README.md).
async def _service(request: Request) -> _Service:
    service = request.app.state.service
    assert isinstance(service, _Service)
    return service


Service = Annotated[_Service, Depends(_service)]


async def _caller(service: Service, authorization: Annotated[str | None, Header()] = None) -> Caller:
    verifier = service.settings.verifier
    if verifier.may_block(authorization):  # an asymmetric key may be fetched from the JWKS URL: off the event loop
        return await run_in_threadpool(verifier.caller, authorization)
    return verifier.caller(authorization)  # the JWT secret (HS256): CPU only, tens of microseconds


SignedIn = Annotated[Caller, Depends(_caller)]


def _user_transaction(service: Service, who: SignedIn) -> Iterator[Connection]:
    """One transaction as ``authenticated`` with the request's claims, for the whole request.

    Its scope is the route function: the transaction commits when the route returns, before the response
    is sent, so a client never sees success for a write that is not yet committed, and a commit that
    fails is the client's error response.
    """
    with service.pool.connection() as conn, as_role(conn, "authenticated", who.claims) as scoped:
        yield scoped


UserTransaction = Annotated[Connection, Depends(_user_transaction, scope="function")]


def _async_pool(database_url: str, max_size: int) -> AsyncConnectionPool[AsyncConnection]:
    """The async routes' pool (not yet open). Its connections are in autocommit mode: ``_as_user_async`` opens
    and ends each transaction itself, so that BEGIN travels with the role switch in one round trip."""
    return AsyncConnectionPool(
        database_url, min_size=1, max_size=max_size, open=False, connection_class=AsyncConnection,
        kwargs={"autocommit": True, "prepare_threshold": prepare_threshold(database_url)},
    )  # fmt: skip


@asynccontextmanager
async def _as_user_async(conn: AsyncConnection, claims: Mapping[str, object]) -> AsyncIterator[AsyncConnection]:
    """``sessions.as_role(conn, "authenticated", claims)`` on an autocommit connection of ``_async_pool``: one
    transaction as ``authenticated`` with ``claims`` (both set local, so both end with it), begun in the same
    round trip as the role switch (the simple query protocol takes both statements); COMMIT when the body
    returns, ROLLBACK when it raises."""
    if not conn.autocommit:
        raise psycopg.ProgrammingError("_as_user_async runs on the autocommit connections of _async_pool")
    await conn.execute(b"begin; " + become_role("authenticated", claims).as_bytes(conn))
    try:
        yield conn
    except BaseException:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            with suppress(psycopg.Error):  # a broken connection: the pool discards it
                await conn.execute(b"rollback")
        raise
    if conn.info.transaction_status != TransactionStatus.INTRANS:  # a statement failed and was swallowed
        await conn.execute(b"rollback")
        raise psycopg.errors.InFailedSqlTransaction("the request's transaction failed; it was rolled back")
    await conn.execute(b"commit")


async def _user_transaction_async(service: Service, who: SignedIn) -> AsyncIterator[AsyncConnection]:
    """``_user_transaction`` on the event loop, with the same guarantee: the transaction commits when the route
    returns, before the response is sent, and a commit that fails is the client's error response."""
    async with service.async_pool.connection() as conn, _as_user_async(conn, who.claims) as scoped:
        yield scoped


AsyncUserTransaction = Annotated[AsyncConnection, Depends(_user_transaction_async, scope="function")]


def _person_or_404(conn: Connection, person_id: UUID) -> None:
    if not reads.person_visible(conn, person_id):
        raise Problem(404, "Not Found", f"no person {person_id} among yours")


router = APIRouter()


@router.get("/health", tags=["service"])
async def health(service: Service) -> Health:
    """Liveness and database reachability (no data is read)."""
    async with service.async_pool.connection() as conn:
        await conn.execute(b"select 1")
    return Health(status="ok", database="ok")


@router.get("/v1/persons/{person_id}/forecast", tags=["forecasts"], response_model=LatestForecast)
async def latest_forecast(person_id: UUID, conn: AsyncUserTransaction, lang: Language = "en") -> Response:
    """The person's latest forecast curve (5-60 min ahead) with its bands, provenance and disclaimer."""
    # The curve first: row-level security returns none for another user's person, and only then does the
    # person check run, to tell "no such person among yours" from "no forecast yet".
    async with conn.cursor(row_factory=class_row(reads.Point)) as cursor:
        await cursor.execute(query("read_latest_curve"), {"person_id": person_id})
        curve = await cursor.fetchall()
    if not curve:
        found = await (await conn.execute(query("person_visible"), {"person_id": person_id})).fetchone()
        if not (found and found[0]):
            raise Problem(404, "Not Found", f"no person {person_id} among yours")
        raise Problem(404, "Not Found", f"person {person_id} has no forecast yet")
    # experiments.log_exposure's statement, on this connection: one per running experiment the person is in.
    exposure = {"person_id": person_id, "model_id": curve[0].model_id, "generated_at": curve[0].generated_at}
    await conn.execute(query("experiment_log_exposure"), exposure)
    forecast = LatestForecast(
        person_id=person_id,
        generated_at=curve[0].generated_at,
        points=[ForecastPoint.of(point) for point in curve],
        provenance=Provenance.of(curve[0]),
        disclaimer=Disclaimer.of(curve[0].disclaimer_version, lang),
    )
    # The validated model straight to JSON bytes (FastAPI would validate and serialize it a second time).
    return Response(forecast.model_dump_json().encode(), media_type="application/json")


@dataclass(frozen=True)
class _Range:
    start: Annotated[datetime, Query(alias="from", description="Origins from this time (inclusive).")]
    end: Annotated[datetime, Query(alias="to", description="Origins before this time.")]
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None


@router.get("/v1/persons/{person_id}/forecasts", tags=["forecasts"])
def forecasts_between(
    person_id: UUID, span: Annotated[_Range, Depends()], conn: UserTransaction, lang: Language = "en"
) -> ForecastPage:
    """Forecast points whose origin lies in [from, to), oldest first, a page at a time."""
    if span.start.tzinfo is None or span.end.tzinfo is None:
        raise Problem(422, "Unprocessable Content", "from and to need a time zone offset (e.g. Z or +01:00)")
    if span.end <= span.start or span.end - span.start > MAX_RANGE:
        raise Problem(
            422, "Unprocessable Content", f"to must be after from, and at most {MAX_RANGE.days} days after it"
        )
    after = _decode_cursor(span.cursor) if span.cursor else None
    _person_or_404(conn, person_id)
    points = reads.points_between(conn, person_id, span.start, span.end, after=after, limit=span.limit + 1)
    page, more = points[: span.limit], len(points) > span.limit
    return ForecastPage(
        person_id=person_id,
        items=[ForecastPage.Item(**ForecastPoint.of(p).model_dump(), provenance=Provenance.of(p)) for p in page],
        next_cursor=_encode_cursor(page[-1]) if more else None,
        disclaimer=Disclaimer.of(page[0].disclaimer_version if page else DISCLAIMER_VERSION, lang),
    )


@router.get("/v1/forecasts/{prediction_id}", tags=["forecasts"])
def forecast_point(prediction_id: UUID, conn: UserTransaction, lang: Language = "en") -> ForecastPointDetail:
    """One forecast point with its provenance and its source observations as FHIR references."""
    read = reads.point(conn, prediction_id)
    if read is None:
        raise Problem(404, "Not Found", f"no forecast {prediction_id} among yours")
    found, sources = read
    return ForecastPointDetail(
        **ForecastPoint.of(found).model_dump(),
        person_id=found.person_id,
        provenance=Provenance.of(found),
        sources=[SourceReference.of(source) for source in sources],
        disclaimer=Disclaimer.of(found.disclaimer_version, lang),
    )


@router.get("/v1/persons/{person_id}/models", tags=["models"])
def models_and_runs(person_id: UUID, conn: UserTransaction) -> ModelsAndRuns:
    """The person's model versions and latest training runs."""
    _person_or_404(conn, person_id)
    return ModelsAndRuns(
        person_id=person_id,
        models=reads.models(conn, person_id),
        training_runs=reads.runs(conn, person_id),
    )


@router.get("/v1/persons/{person_id}/models/{version}/card", tags=["models"])
def model_version_card(person_id: UUID, version: str, conn: UserTransaction, lang: Language = "en") -> ModelCard:
    """A model version's card: intended and out-of-scope use, training data, the candidates and why this one,
    test metrics, band coverage per horizon and glucose range, known limits."""
    _person_or_404(conn, person_id)
    found = reads.model_card(conn, person_id, version)
    if found is None:
        raise Problem(404, "Not Found", f"person {person_id} has no model version {version}")
    model, card = found
    return ModelCard(
        person_id=person_id,
        version=model.version,
        stage=model.stage,
        stage_reason=model.stage_reason,
        language=lang,
        text=model_card.render(card, lang),
        card=card,
    )


@router.post("/v1/persons/{person_id}/retrain", status_code=202, tags=["models"])
def request_retrain(
    person_id: UUID, conn: UserTransaction, body: Annotated[RetrainRequest | None, Body()] = None
) -> RetrainQueued:
    """Queue a retrain of the person's model (at most one request per person an hour)."""
    _person_or_404(conn, person_id)
    reason = body.reason if body is not None else None
    # A refusal is a database error that _database_problem explains: the rate limit (PT429, which the queue
    # names RateLimited) as well as a missing consent to training (42501).
    try:
        request_id = retrain_queue.request(conn, person_id, reason)
    except retrain_queue.RateLimited as limited:
        raise limited.refusal from None
    return RetrainQueued(person_id=person_id, request_id=request_id)


CHART_TYPES: Final[dict[ChartFormat, str]] = {"svg": "image/svg+xml", "png": "image/png"}


@router.get(
    "/v1/persons/{person_id}/chart",
    tags=["forecasts"],
    response_class=Response,
    responses={
        200: {
            "description": "The chart: readings of the last six hours, the forecast and its band, the disclaimer.",
            "content": {
                CHART_TYPES["svg"]: {"example": '<svg xmlns="http://www.w3.org/2000/svg" ...>...</svg>'},
                CHART_TYPES["png"]: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
def person_chart(
    person_id: UUID, conn: UserTransaction, format: ChartFormat = "svg", lang: Language = "en"
) -> Response:
    """The person's chart of recent readings and the latest forecast with its band, with the disclaimer on it."""
    data = reads.chart_data(conn, person_id, lang)
    if data is None:
        if not reads.person_visible(conn, person_id):
            raise Problem(404, "Not Found", f"no person {person_id} among yours")
        raise Problem(404, "Not Found", f"person {person_id} has no readings or forecast to chart yet")
    return Response(render(data, format), media_type=CHART_TYPES[format])


@router.put("/v1/forecasts/{prediction_id}/feedback", tags=["feedback"])
def leave_feedback(prediction_id: UUID, feedback: FeedbackIn, conn: UserTransaction) -> Feedback:
    """Thumbs up or down on a forecast point, with an optional comment; sending again replaces it."""
    comment = feedback.comment.strip() if feedback.comment and feedback.comment.strip() else None
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            query("api_upsert_feedback"),
            {"prediction_id": prediction_id, "rating": feedback.rating, "comment": comment},
        ).fetchone()
    if row is None:
        raise Problem(404, "Not Found", f"no forecast {prediction_id} among yours")
    return Feedback.model_validate(row)


@router.post("/v1/persons/{person_id}/observations", tags=["fhir"])
async def upload_observations(
    person_id: UUID, request: Request, service: Service, who: SignedIn, fhir_version: FhirVersion = "R4B"
) -> IngestResult:
    """Store FHIR Observations: a Bundle or one Observation (application/fhir+json) or NDJSON
    (application/fhir+ndjson). Valid entries are stored even when others are rejected; each rejected entry is
    listed with its reasons and kept in the quarantine."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (*JSON_TYPES, *NDJSON_TYPES):
        accepted = " or ".join((*JSON_TYPES, *NDJSON_TYPES))
        raise Problem(415, "Unsupported Media Type", f"send {accepted}, not {content_type or 'no content type'}")
    async with _received_body(
        request,
        service,
        who,
        person_id,
        "send the observations in parts (NDJSON files of any size stream with `glucokit ingest`)",
    ) as body:
        return await run_in_threadpool(
            _ingest, service, who, person_id, body=body, ndjson=content_type in NDJSON_TYPES, fhir_version=fhir_version
        )


@asynccontextmanager
async def _received_body(
    request: Request, service: _Service, who: Caller, person_id: UUID, advice: str
) -> AsyncIterator[IO[bytes]]:
    """An upload's body spooled to a file (memory up to SPOOL_BYTES, then disk) under the upload limit, read only
    once the caller is known to own the person: a stranger's upload costs nothing."""
    limit = service.settings.ingest_limits.max_document_bytes
    too_large = f"above the limit of {limit} bytes per upload: {advice}"
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit()):
        raise Problem(400, "Bad Request", "Content-Length is not a number of bytes")
    if declared is not None and (len(declared) > len(str(limit)) or int(declared) > limit):
        raise Problem(413, "Content Too Large", f"{declared} bytes is {too_large}")
    await run_in_threadpool(_check_person, service, who, person_id)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as body:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise Problem(413, "Content Too Large", f"the body is {too_large}; nothing was stored")
            body.write(chunk)
        body.seek(0)
        yield cast(IO[bytes], body)


@router.post("/v1/persons/{person_id}/imports/{export_format}", tags=["fhir"])
async def import_export(
    person_id: UUID, export_format: importers.Format, request: Request, service: Service, who: SignedIn
) -> IngestResult:
    """Store an export: Nightscout entries or carbohydrate and insulin records (application/json), a Dexcom
    Clarity or LibreView CSV export (text/csv), or Apple Health's export.xml (application/xml). Each record becomes
    a FHIR Observation and is stored like an upload's; each rejected record is listed with its row and reasons and
    kept in the quarantine; local times without zone are read in the person's time zone."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    accepted = IMPORT_TYPES[export_format]
    if content_type not in accepted:
        raise Problem(
            415, "Unsupported Media Type",
            f"send a {export_format} export as {' or '.join(accepted)}, not {content_type or 'no content type'}",
        )  # fmt: skip
    async with _received_body(
        request, service, who, person_id, "send the export in parts (files of any size import with `glucokit import`)"
    ) as body:
        return await run_in_threadpool(_import, service, who, person_id, body=body, export_format=export_format)


def _import(
    service: _Service, who: Caller, person_id: UUID, *, body: IO[bytes], export_format: importers.Format
) -> IngestResult:
    with service.pool.connection() as conn:
        zone = person_time_zone(conn, who.user_id, person_id)
        run = ingest.Ingest([conn], user_id=who.user_id, person_id=person_id, limits=service.settings.ingest_limits)
        report = run.resources(importers.records(export_format, body, zone), source=f"{export_format} import")
    return _ingest_result(person_id, report)


def _check_person(service: _Service, who: Caller, person_id: UUID) -> None:
    with service.pool.connection() as conn, as_role(conn, "authenticated", who.claims):
        _person_or_404(conn, person_id)


def _ingest(
    service: _Service, who: Caller, person_id: UUID, *, body: IO[bytes], ndjson: bool, fhir_version: FhirVersion
) -> IngestResult:
    with service.pool.connection() as conn:
        run = ingest.Ingest(
            [conn], user_id=who.user_id, person_id=person_id, fhir_version=fhir_version,
            limits=service.settings.ingest_limits,
        )  # fmt: skip
        report = run.received(body, source="upload", ndjson=ndjson)
    return _ingest_result(person_id, report)


def _ingest_result(person_id: UUID, report: ingest.IngestReport) -> IngestResult:
    rejections = [Rejected(position=r.position, problems=[str(p) for p in r.problems]) for r in report.rejections]
    return IngestResult(
        person_id=person_id, entries=report.entries, stored=report.stored, new=report.inserted,
        updated=report.updated, unchanged=report.unchanged, rejected=report.rejected, rejections=rejections,
    )  # fmt: skip


@router.get("/v1/persons/{person_id}/days/{day}/similar", tags=["patterns"])
def similar_days(
    person_id: UUID, day: date, conn: UserTransaction,
    limit: Annotated[int, Query(ge=1, le=patterns.MAX_SIMILAR)] = 10,
) -> SimilarDays:  # fmt: skip
    """The person's days whose glucose profiles are nearest to this local day's, nearest first (exact search)."""
    _person_or_404(conn, person_id)
    found = patterns.similar_days(conn, person_id, day, limit)
    if found is None:
        raise Problem(404, "Not Found", f"person {person_id} has no day pattern for {day}")
    return SimilarDays(person_id=person_id, day=day, days=found)


@router.get("/v1/persons/{person_id}/cgm-summary", tags=["summary"])
def person_cgm_summary(
    person_id: UUID, conn: UserTransaction,
    start: Annotated[datetime, Query(alias="from", description="Readings from this time (inclusive).")],
    end: Annotated[datetime, Query(alias="to", description="Readings before this time (at most 90 days after from).")],
) -> CgmSummaryReport:  # fmt: skip
    """The person's CGM summary over [from, to) (HL7 CGM Implementation Guide): times in ranges, mean glucose, GMI,
    coefficient of variation, days of wear, sensor active percentage, and whether the period is representative."""
    if start.tzinfo is None or end.tzinfo is None:
        raise Problem(422, "Unprocessable Content", "from and to need a time zone offset (e.g. Z or +01:00)")
    _person_or_404(conn, person_id)
    # The database checks the period (reversed, in the future, longer than it summarises): a 422 that says which.
    return CgmSummaryReport.of(person_id, cgm_summary.read(conn, person_id, start, end))


def create_app(settings: ApiSettings) -> FastAPI:
    """The API on a connection pool to ``settings.database_url`` (a new pool each time the app starts)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ConnectionPool(
            settings.database_url, min_size=1, max_size=settings.pool_size, open=False,
            kwargs={"prepare_threshold": prepare_threshold(settings.database_url)},
        )  # fmt: skip
        async_pool = _async_pool(settings.database_url, settings.pool_size)
        pool.open(wait=True)
        try:
            await async_pool.open(wait=True)
        except BaseException:
            pool.close()
            raise
        app.state.service = _Service(settings, pool, async_pool)
        try:
            yield
        finally:
            try:
                await async_pool.close()
            finally:
                pool.close()

    app = FastAPI(
        title="glucokit API",
        version=__version__,
        description="Personal glucose forecasts for signed-in Supabase users, under row-level security.\n\n"
        + DISCLAIMER["en"],
        lifespan=lifespan,
        responses=PROBLEM_RESPONSE,
    )
    app.include_router(router)
    _error_handlers(app)
    documentation = frozenset(
        path for path in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if path
    )
    app.add_middleware(_Guard, exempt=documentation)
    return app


def _encode_cursor(point: reads.Point) -> str:
    text = f"{point.generated_at.isoformat()}|{point.horizon_minutes}|{point.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int, UUID]:
    not_ours = Problem(422, "Unprocessable Content", "cursor is not a next_cursor this API returned")
    try:
        at, horizon, point = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
        if not (horizon.isascii() and horizon.isdigit()):
            raise ValueError(horizon)
        after = datetime.fromisoformat(at), int(horizon), UUID(point)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise not_ours from None
    # Each part as this API writes it: an aware time, a horizon the column can hold, a canonical id.
    if after[0].tzinfo is None or after[1] > SMALLINT_MAX or str(after[2]) != point:
        raise not_ours
    return after


# How the database's refusals reach the client: by SQLSTATE, then by its class (the first two characters).
# Each is a statement about the request, so its message is the detail; anything else is a server error.
_DATABASE_PROBLEMS: Final[dict[str, tuple[int, str]]] = {
    "PT429": (429, "Too Many Requests"),  # private.request_retrain's rate limit
    "42501": (403, "Forbidden"),  # insufficient_privilege: no consent for the purpose, a policy refused
    "40001": (503, "Service Unavailable"),  # serialization_failure: try again
    "40P01": (503, "Service Unavailable"),  # deadlock_detected: try again
    "22": (422, "Unprocessable Content"),  # data_exception: a value the column or function cannot take
    "23": (409, "Conflict"),  # integrity_constraint_violation
    "08": (503, "Service Unavailable"),  # connection_exception
    "53": (503, "Service Unavailable"),  # insufficient_resources
    "57": (503, "Service Unavailable"),  # operator_intervention (shutdown, query canceled)
}


def _database_problem(error: psycopg.Error) -> Problem | None:
    """The problem a database error is to the client, or None for a server error."""
    code = error.sqlstate or ""
    known = _DATABASE_PROBLEMS.get(code) or _DATABASE_PROBLEMS.get(code[:2])
    if known is None:
        if isinstance(error, psycopg.OperationalError):  # the connection failed: no SQLSTATE
            return Problem(503, "Service Unavailable", "the database is not reachable; try again shortly", _RETRY)
        return None
    status, title = known
    if status == 503:
        return Problem(status, title, "the database could not answer now; try again shortly", _RETRY)
    found = error.diag
    sentences = (part.rstrip(".") for part in (found.message_primary, found.message_detail, found.message_hint) if part)
    return Problem(status, title, ". ".join(sentences) + "." if found.message_primary else title)


_RETRY: Final = {"Retry-After": "1"}
_LOG: Final = logging.getLogger("glucokit.api")


class _BodyTooLarge(HTTPException):
    """A request body above MAX_BODY_BYTES: an HTTPException, so that FastAPI's body reading lets it through."""

    def __init__(self) -> None:
        super().__init__(413, f"a request body is at most {MAX_BODY_BYTES} bytes here")


class _Guard:
    """The outermost layer of the app: a request id for every request, the security headers on every response,
    a cap on every request body but an upload's (which streams under its own limit), and a problem+json 500
    (with the request id; the traceback goes to the log only) for any error no handler answered.

    The cap comes first because FastAPI reads and parses a JSON body before any dependency runs, the token
    check included: without it a caller with no token could make the API hold any body it sends.
    """

    def __init__(self, app: ASGIApp, exempt: frozenset[str]) -> None:
        self.app, self.exempt = app, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        request_id = offered if _CALLER_REQUEST_ID.fullmatch(offered) else uuid4().hex
        headers = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
        headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
        if scope["path"] not in self.exempt:
            headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
        started = False
        if not (scope["method"] == "POST" and UPLOAD_PATH.fullmatch(scope["path"])):
            declared = dict(scope["headers"]).get(b"content-length", b"0")
            if not declared.isdigit() or len(declared) > len(str(MAX_BODY_BYTES)) or int(declared) > MAX_BODY_BYTES:
                receive = _refuse_body
            else:
                receive = _capped(receive)

        async def send_guarded(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                ours = {name for name, _ in headers}
                message = {**message, "headers": [*headers, *(h for h in message["headers"] if h[0] not in ours)]}
            await send(message)

        try:
            await self.app(scope, receive, send_guarded)
        except Exception:
            _LOG.exception("request %s %s failed (request id %s)", scope["method"], scope["path"], request_id)
            if started:
                raise
            detail = f"the service failed to answer; the operator can find it under request id {request_id}"
            response = _problem_response(Problem(500, "Internal Server Error", detail), scope["path"])
            await response(scope, receive, send_guarded)


async def _refuse_body() -> Message:
    raise _BodyTooLarge


def _capped(receive: Receive) -> Receive:
    """``receive``, raising _BodyTooLarge once the body passes MAX_BODY_BYTES (chunked bodies declare no size)."""
    received = 0

    async def capped() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > MAX_BODY_BYTES:
            raise _BodyTooLarge
        return message

    return capped


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(psycopg.Error)
    async def database(request: Request, error: psycopg.Error) -> JSONResponse:
        problem = _database_problem(error)
        if problem is None:
            raise error
        return _problem_response(problem, request.url.path)

    @app.exception_handler(GlucokitError)
    async def refused(request: Request, error: GlucokitError) -> JSONResponse:
        # glucokit's own refusals say what was wrong with the request (ingest, imports); these two say more.
        if isinstance(error, NotFound):
            problem = Problem(404, "Not Found", str(error))
        elif isinstance(error, DatabaseUnreachable):
            problem = Problem(503, "Service Unavailable", "the database is not reachable; try again shortly", _RETRY)
        else:
            problem = Problem(422, "Unprocessable Content", str(error))
        return _problem_response(problem, request.url.path)

    @app.exception_handler(PoolTimeout)
    async def busy(request: Request, error: PoolTimeout) -> JSONResponse:
        detail = "every database connection is busy; try again shortly"
        return _problem_response(Problem(503, "Service Unavailable", detail, _RETRY), request.url.path)

    @app.exception_handler(Problem)
    async def problem(request: Request, error: Problem) -> JSONResponse:
        return _problem_response(error, request.url.path)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, error: Unauthorized) -> JSONResponse:
        challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        return _problem_response(Problem(401, "Unauthorized", str(error), challenge), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors())
        return _problem_response(Problem(422, "Unprocessable Content", detail), request.url.path)

    @app.exception_handler(HTTPException)
    async def http(request: Request, error: HTTPException) -> JSONResponse:
        title = {404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large"}.get(error.status_code, "Error")
        problem = Problem(error.status_code, title, str(error.detail), dict(error.headers or {}))
        return _problem_response(problem, request.url.path)
