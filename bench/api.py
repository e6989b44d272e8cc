"""The latest-forecast read and its API route at full size: 10,000 persons, 30 M observations, 3 M forecast points.

    .venv/bin/python bench/api.py [--persons 10000] [--readings 3000] [--curves 25] [--reads 2000]
                                  [--clients 16] [--seconds 60] [--warmup 10] [--workers 1 2]
                                  [--client streams httpx] [--rounds 2] [--quick]

    --quick: 1,000 persons, 288 readings each, the route matrix only for 1 worker and the hand-written client,
    20 s windows (a few minutes in all, for the side-by-side run of the sync and async routes).

Builds a scratch database on the embedded server, migrated like any other, and
fills it as the database owner with set-based SQL (generate_series), nothing
disabled (row-level security, triggers, foreign keys and every index stay on):
--persons auth users owning one person each; --readings CGM readings per person
(5 minutes apart at the person's own second, ending an hour before the load) in
the monthly partitions of public.observation; per person one succeeded training
run and one active model; and --curves forecast curves of 12 points (5-60 min)
per person, one from each of the newest readings, written origin by origin as
the forecast job writes them. Then VACUUM (ANALYZE).

1. The read: `read_latest_curve` (lib/glucokit/api/sql/reads.sql, the exact text)
   for --reads random persons, once as `authenticated` with the owner's claims
   (sessions.as_role, as the API runs it) and once as the table owner, which
   row-level security does not apply to, on two connections (each keeps one role,
   so each keeps its prepared plan), alternating which goes first. Only the
   query is timed. EXPLAIN (ANALYZE, BUFFERS) of both is recorded.
2. The route: the real app (glucokit.api.create_app, HS256 tokens) under uvicorn
   in a subprocess, for each --client kind and --workers count, driven by
   --clients concurrent keep-alive clients in one asyncio process (`streams`:
   HTTP/1.1 written by hand, to take little CPU; `httpx`: httpx.AsyncClient)
   sending GET /v1/persons/{id}/forecast for random persons with their owner's
   token: --warmup seconds (the clients connect 50 ms apart) unrecorded, then
   --seconds recorded. Client, server and database share this machine's cores;
   the CPU each used, and what everything else on the machine used, is recorded.
3. Side by side: the former route (sync dependencies and a sync
   endpoint in the thread pool, the person check before the read; `legacy_app`
   mounts it at /legacy/persons/{id}/forecast beside the real route in the same
   uvicorn process) and the real async route, --rounds rounds alternating which
   goes first, each at --clients concurrent clients and at one client. The API
   CPU per request is the uvicorn process's own CPU time (/proc/PID/stat) over
   the window, so the client's CPU is never in it.
4. Where the route's CPU goes: the route's own work (token, pooled connection,
   transaction as the user, person check, read, JSON) in process without HTTP,
   one request after another; and uvicorn + FastAPI serving routes that do
   nothing, one sync (run in the thread pool) and one async.

Prints a JSON summary; the recorded result is bench/results/api.json.
Targets: the read under RLS within 1.15x the plain one (issue 16); p95 of the route at 16
concurrent clients on 2 cores at most 20 ms; at most 2 ms of API CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID, uuid4

import httpx
import jwt
import orjson
import psycopg
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from glucokit.api import ApiSettings, TokenVerifier, create_app
from glucokit.api import reads as api_reads
from glucokit.api.app import AsyncConnection, Problem, _as_user_async, _async_pool, _Service, latest_forecast
from glucokit.api.auth import Caller
from glucokit.api.models import Disclaimer, ForecastPoint, LatestForecast, Provenance
from glucokit.db.queries import query
from glucokit.db.sessions import Connection, as_role, user_claims
from glucokit.db.urls import with_database
from glucokit.disclaimer import DISCLAIMER_VERSION, Language
from glucokit.modelops import experiments
from glucokit.tooling import database, migrate
from rls_cost import latest_forecast_sql
from scratch import scratch_database

SECRET = "bench-api-jwt-secret-with-at-least-32-characters"  # noqa: S105 - signs the benchmark's own tokens
BATCH_PERSONS = 250  # persons per observation INSERT (750,000 rows at the default size)
LOADERS = 2  # connections loading in parallel: one per core

USERS_PERSONS = (
    """insert into auth.users (id, aud, role)
select gen_random_uuid(), 'authenticated', 'authenticated' from generate_series(1, %(persons)s)""",
    "insert into public.person (owner_id, display_name) select id, 'bench' from auth.users",
)

# One succeeded initial run and the active model it registered, per person.
MODELS = (
    """insert into public.training_run (person_id, trigger, status, requested_at, started_at, finished_at)
select id, 'initial', 'succeeded', %(trained)s, %(trained)s + interval '1 minute', %(trained)s + interval '2 minutes'
from public.person""",
    """insert into public.ml_model (
  person_id, version, algorithm, training_run_id, trained_at, data_from, data_to, features, stage, stage_reason
)
select r.person_id, '1.0.0', 'ridge', r.id, r.finished_at, %(data_from)s, %(data_to)s, array['glucose'], 'active',
  'first model'
from public.training_run r""",
)

# A group of persons' CGM readings, 5 minutes apart, the newest within 5 minutes before %(last)s: one person's
# upload after another.
OBSERVATIONS = """
insert into public.observation (
  person_id, status, category, code_system, code, value, unit, effective_at, issued_at, device, source_system,
  source_id
)
select p.id, 'final', 'laboratory', 'http://loinc.org', '99504-3',
  round((125 + 45 * sin(k / 24.0 + p.n))::numeric), 'mg/dL', r.at, r.at + interval '1 minute', 'Bench CGM',
  'urn:bench:cgm', 'reading-' || k
from unnest(%(persons)s::uuid[]) with ordinality as p(id, n)
-- Each person's sensor keeps its own clock: readings land at a person's own second of the 5 minutes.
cross join lateral (select (abs(hashtext(p.id::text)) %% 300) * interval '1 second' as s) as phase
cross join generate_series(0, %(readings)s - 1) as k
cross join lateral (select %(last)s - phase.s - k * interval '5 minutes' as at) as r
order by p.id, k desc
"""

# A group of persons' forecasts (each a public.forecast row and 12 points, 5-60 min), one from each of their newest
# readings, origin by origin as the forecast job writes them.
PREDICTIONS = """
with forecasts as (
  insert into public.forecast (
    person_id, owner_id, model_id, generated_at, coverage, disclaimer_version, model_version, training_run_id,
    data_from, data_to, code_version
  )
  select m.person_id, pe.owner_id, m.id, o.at, 0.8, %(disclaimer)s, m.version, m.training_run_id, m.data_from,
    m.data_to, 'bench'
  from unnest(%(persons)s::uuid[]) as p(id)
  join public.person pe on pe.id = p.id
  join public.ml_model m on m.person_id = p.id and m.stage = 'active'
  cross join lateral (select (abs(hashtext(p.id::text)) %% 300) * interval '1 second' as s) as phase
  cross join generate_series(0, %(curves)s - 1) as c
  cross join lateral (select %(last)s - phase.s - (%(curves)s - 1 - c) * interval '5 minutes' as at) as o
  order by o.at, p.id
  returning id, person_id, owner_id, model_id, generated_at
)
insert into public.prediction (
  forecast_id, person_id, owner_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl,
  upper_mg_dl
)
select f.id, f.person_id, f.owner_id, f.model_id, f.generated_at, f.generated_at + make_interval(mins => h), h,
  v.value, v.value - 10 - h / 3.0, v.value + 10 + h / 3.0
from forecasts f
cross join generate_series(5, 60, 5) as h
cross join lateral (
  select (125 + 45 * sin(extract(epoch from f.generated_at) / 7200.0 + abs(hashtext(f.person_id::text)) %% 7)
    + h / 5.0)::real as value
) as v
order by f.generated_at, f.person_id, h
"""

SIZES = """
select
  (select sum(pg_total_relation_size(relid)) from pg_partition_tree('public.observation')),
  (select sum(pg_relation_size(relid)) from pg_partition_tree('public.observation')),
  (select sum(pg_total_relation_size(relid)) from pg_partition_tree('public.forecast'))
    + (select sum(pg_total_relation_size(relid)) from pg_partition_tree('public.prediction')),
  (select sum(pg_relation_size(relid)) from pg_partition_tree('public.forecast'))
    + (select sum(pg_relation_size(relid)) from pg_partition_tree('public.prediction')),
  (select sum(pg_relation_size(relid)) from pg_partition_tree('public.forecast_owner_person_generated_idx')),
  (select count(*) from pg_partition_tree('public.observation') where level = 1),
  (select count(*) from public.retrain_request)
"""


@dataclass
class Loaded:
    users: int = 0
    persons: int = 0
    observations: int = 0
    predictions: int = 0
    training_runs: int = 0
    models: int = 0
    partitions_created: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


@contextmanager
def _database(keep: bool) -> Iterator[str]:
    """A fresh migrated scratch database, dropped afterwards unless ``keep`` (then its URL is printed)."""
    if not keep:
        with scratch_database() as url:
            yield url
        return
    server = database.EmbeddedServer().start().url()
    name = f"glucokit_bench_api_{uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = with_database(server, name)
    migrate.migrate(url)
    print(f"kept: {url}", file=sys.stderr)
    yield url


def _parallel(url: str, statement: str, groups: list[list[UUID]], params: dict[str, Any]) -> int:
    """Run ``statement`` once per group of persons over LOADERS connections; the rows it wrote."""
    written = [0] * LOADERS
    failures: list[BaseException] = []

    def load(slot: int) -> None:
        try:
            with psycopg.connect(url) as conn:
                conn.execute(b"set synchronous_commit = off")
                for group in groups[slot::LOADERS]:
                    cursor = conn.execute(statement.encode(), {**params, "persons": group})
                    written[slot] += cursor.rowcount
                    conn.commit()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=load, args=(slot,)) for slot in range(LOADERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return sum(written)


def _load(url: str, persons: int, readings: int, curves: int) -> Loaded:
    loaded = Loaded()
    last = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    first = last - timedelta(minutes=5 * (readings - 1))
    data_to = last - timedelta(minutes=5 * curves)  # trained before the first forecast origin
    began = time.perf_counter()
    with psycopg.connect(url) as conn:
        row = conn.execute(
            b"select private.create_observation_partitions(%s::date - 1, %s::date + 1)", (first, last)
        ).fetchone()
        loaded.partitions_created = int(str(row[0])) if row else 0
        row = conn.execute(
            b"select private.create_forecast_partitions(%s::date - 1, %s::date + 1)", (first, last)
        ).fetchone()
        loaded.partitions_created += int(str(row[0])) if row else 0
        users, persons_made = (conn.execute(s.encode(), {"persons": persons}).rowcount for s in USERS_PERSONS)
        times = {"trained": data_to, "data_from": first, "data_to": data_to}
        runs, models = (conn.execute(s.encode(), times).rowcount for s in MODELS)
        conn.commit()
        loaded.users, loaded.persons, loaded.training_runs, loaded.models = users, persons_made, runs, models
        person_ids = [UUID(str(row[0])) for row in conn.execute(b"select id from public.person order by id")]
    loaded.seconds["users_persons_models"] = round(time.perf_counter() - began, 1)

    began = time.perf_counter()
    groups = [person_ids[i : i + BATCH_PERSONS] for i in range(0, len(person_ids), BATCH_PERSONS)]
    loaded.observations = _parallel(url, OBSERVATIONS, groups, {"readings": readings, "last": last})
    loaded.seconds["observations"] = round(time.perf_counter() - began, 1)

    began = time.perf_counter()
    halves = [person_ids[i::LOADERS] for i in range(LOADERS)]  # interleaved: both loaders write every origin
    loaded.predictions = _parallel(
        url, PREDICTIONS, halves, {"curves": curves, "last": last, "disclaimer": DISCLAIMER_VERSION}
    )
    loaded.seconds["predictions"] = round(time.perf_counter() - began, 1)

    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(b"vacuum (analyze)")
    loaded.seconds["vacuum_analyze"] = round(time.perf_counter() - began, 1)
    loaded.seconds["total"] = round(sum(loaded.seconds.values()), 1)
    return loaded


def _ms(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {
        "mean_ms": round(statistics.fmean(values) * 1000, 3),
        "median_ms": round(statistics.median(values) * 1000, 3),
        "p95_ms": round(cuts[94] * 1000, 3),
        "p99_ms": round(cuts[98] * 1000, 3),
    }


def _read(conn: Connection, user: UUID, person: UUID, rls: bool) -> float:
    latest = query("read_latest_curve")
    with as_role(conn, "authenticated", user_claims(user)) if rls else conn.transaction():
        began = time.perf_counter()
        rows = conn.execute(latest, {"person_id": person}).fetchall()
        elapsed = time.perf_counter() - began
    assert len(rows) == 12, (person, len(rows))
    return elapsed


def _explain(conn: Connection, user: UUID, person: UUID, rls: bool) -> str:
    # The read is a call of the RPC public.latest_forecast: its plan is the plan of the RPC's query.
    statement = b"explain (analyze, buffers, verbose, settings) " + latest_forecast_sql(conn)
    with as_role(conn, "authenticated", user_claims(user)) if rls else conn.transaction():
        return "\n".join(str(row[0]) for row in conn.execute(statement, {"person_id": person}))


def _compare(url: str, owners: list[tuple[UUID, UUID]], reads: int) -> dict[str, Any]:
    sample = random.Random(7).choices(owners, k=reads)  # noqa: S311 - a benchmark sample
    with psycopg.connect(url) as under_rls, psycopg.connect(url) as plain:
        for user, person in sample[:200]:  # warm the caches and the prepared plans
            _read(under_rls, user, person, rls=True)
            _read(plain, user, person, rls=False)
        with_rls, without = [], []
        for n, (user, person) in enumerate(sample):
            if n % 2:
                with_rls.append(_read(under_rls, user, person, rls=True))
                without.append(_read(plain, user, person, rls=False))
            else:
                without.append(_read(plain, user, person, rls=False))
                with_rls.append(_read(under_rls, user, person, rls=True))
        user, person = sample[-1]
        plans = {
            "with_rls": _explain(under_rls, user, person, True),
            "without_rls": _explain(plain, user, person, False),
        }
    rls, bare = _ms(with_rls), _ms(without)
    return {
        "reads": reads,
        "with_rls": rls,
        "without_rls": bare,
        "ratio_mean": round(rls["mean_ms"] / bare["mean_ms"], 3),
        "ratio_median": round(rls["median_ms"] / bare["median_ms"], 3),
        "plan_with_rls": {
            # The newest origin by the primary key of private.latest_forecast (migration 20261206165000).
            "latest_origin_from_the_pointer": "latest_forecast_pkey" in plans["with_rls"],
            "person_lookups": plans["with_rls"].count("owned_person_ids()"),
            "auth_uid_as_initplan": "InitPlan" in plans["with_rls"],
        },
        "explain_analyze_buffers": plans,
    }


# -- the route -------------------------------------------------------------------------------------------------------


def app() -> FastAPI:
    """The uvicorn factory: the real app, configured from the environment as workers/api_service.py does."""
    verifier = TokenVerifier(secret=os.environ["SUPABASE_JWT_SECRET"])
    return create_app(ApiSettings(os.environ["DATABASE_URL"], verifier, pool_size=int(os.environ["GLUCOKIT_API_POOL"])))


# -- the former route: every dependency and the endpoint sync, so each runs in the thread pool ------
def _legacy_service(request: Request) -> _Service:
    service = request.app.state.service
    assert isinstance(service, _Service)
    return service


def _legacy_caller(
    service: Annotated[_Service, Depends(_legacy_service)], authorization: Annotated[str | None, Header()] = None
) -> Caller:
    return service.settings.verifier.caller(authorization)


def _legacy_transaction(
    service: Annotated[_Service, Depends(_legacy_service)], who: Annotated[Caller, Depends(_legacy_caller)]
) -> Iterator[Connection]:
    with service.pool.connection() as conn, as_role(conn, "authenticated", who.claims) as scoped:
        yield scoped


def legacy_latest_forecast(person_id: UUID, conn: Connection, lang: Language = "en") -> LatestForecast:
    """The endpoint's body as it was: the person check, the read, the exposure log, the model."""
    if not api_reads.person_visible(conn, person_id):
        raise Problem(404, "Not Found", f"no person {person_id} among yours")
    curve = api_reads.latest_curve(conn, person_id)
    if not curve:
        raise Problem(404, "Not Found", f"person {person_id} has no forecast yet")
    experiments.log_exposure(conn, person_id, curve[0].model_id, curve[0].generated_at)
    return LatestForecast(
        person_id=person_id,
        generated_at=curve[0].generated_at,
        points=[ForecastPoint.of(point) for point in curve],
        provenance=Provenance.of(curve[0]),
        disclaimer=Disclaimer.of(curve[0].disclaimer_version, lang),
    )


def legacy_app() -> FastAPI:
    """The real app with the former sync route beside it, at /legacy/persons/{id}/forecast."""
    legacy = APIRouter()

    @legacy.get("/legacy/persons/{person_id}/forecast")
    def legacy_route(
        person_id: UUID,
        conn: Annotated[Connection, Depends(_legacy_transaction, scope="function")],
        lang: Language = "en",
    ) -> LatestForecast:
        return legacy_latest_forecast(person_id, conn, lang)

    served = app()
    served.include_router(legacy)
    return served


def bare_app() -> FastAPI:
    """A uvicorn factory for the framework's floor: FastAPI routes that do nothing, one sync and one async."""
    floor = FastAPI()

    @floor.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @floor.get("/sync")
    def sync_route() -> dict[str, str]:
        return {"status": "ok"}

    @floor.get("/async")
    async def async_route() -> dict[str, str]:
        return {"status": "ok"}

    return floor


def _in_process(url: str, tokens: list[tuple[UUID, str]], requests: int) -> dict[str, Any]:
    """CPU per request of the route's own work without HTTP, FastAPI or threads, one request after another:
    verify the token, take a pooled connection, run as the user, read the curve (and check the person), log the
    exposure, build the JSON. The former sync route and the async one, alternating in blocks."""
    verifier, pick = TokenVerifier(secret=SECRET), random.Random(11)  # noqa: S311 - a benchmark sample
    totals = {"sync_former": [0.0, 0.0], "async": [0.0, 0.0]}

    async def measure_async(pool: AsyncConnectionPool[AsyncConnection], count: int) -> None:
        for _ in range(count):
            person, token = pick.choice(tokens)
            who = verifier.caller(f"Bearer {token}")
            async with pool.connection() as conn, _as_user_async(conn, who.claims) as scoped:
                assert (await latest_forecast(person, scoped, "en")).body

    def measure_sync(pool: ConnectionPool, count: int) -> None:
        for _ in range(count):
            person, token = pick.choice(tokens)
            who = verifier.caller(f"Bearer {token}")
            with pool.connection() as conn, as_role(conn, "authenticated", who.claims) as scoped:
                assert legacy_latest_forecast(person, scoped, "en").model_dump_json()

    async def run() -> None:
        pool = ConnectionPool(url, min_size=1, max_size=1)
        async_pool = _async_pool(url, 1)
        await async_pool.open(wait=True)
        try:
            with pool:
                await measure_async(async_pool, 200)
                measure_sync(pool, 200)
                block = max(1, requests // 10)
                for n in range(10):
                    for kind in ("async", "sync_former") if n % 2 else ("sync_former", "async"):
                        cpu, wall = time.process_time(), time.perf_counter()
                        if kind == "async":
                            await measure_async(async_pool, block)
                        else:
                            measure_sync(pool, block)
                        totals[kind][0] += time.process_time() - cpu
                        totals[kind][1] += time.perf_counter() - wall
        finally:
            await async_pool.close()

    asyncio.run(run())
    done = max(1, requests // 10) * 10
    return {
        kind: {
            "cpu_ms_per_request": round(cpu / done * 1000, 3),
            "wall_ms_per_request": round(wall / done * 1000, 3),
        }
        for kind, (cpu, wall) in totals.items()
    }


def _token(user: UUID) -> str:
    """An access token as Supabase Auth signs it with the project's JWT secret (HS256)."""
    now = int(time.time())
    claims = {
        "sub": str(user), "role": "authenticated", "aud": "authenticated", "iat": now, "exp": now + 7200,
        "aal": "aal1", "session_id": str(uuid4()), "is_anonymous": False,
    }  # fmt: skip
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu_s() -> tuple[float, float]:
    """CPU seconds this machine has been busy (user, nice, system, irq, softirq), and stolen by its host."""
    user, nice, system, _, _, irq, softirq, steal = (int(v) for v in Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK"), steal / os.sysconf("SC_CLK_TCK")


def _backends(database_name: object) -> list[int]:
    """The PostgreSQL backends connected to ``database_name`` (from their process titles: no query needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if title.startswith(f"postgres: postgres {database_name} ".encode()):
            found.append(int(entry.name))
    return found


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@dataclass
class Window:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, status: str, elapsed: float) -> None:
        self.latencies.append(elapsed)
        self.statuses[status] = self.statuses.get(status, 0) + 1


def _judge(status: int, body: bytes) -> str:
    if status == 200 and len(orjson.loads(body)["points"]) != 12:
        return "200 without 12 points"
    return str(status)


@dataclass(frozen=True)
class Phases:
    """The clients start one after another during the warm-up; requests that begin after it are recorded."""

    started: float
    warmup_s: float
    seconds: float

    @property
    def record_from(self) -> float:
        return self.started + self.warmup_s

    @property
    def until(self) -> float:
        return self.record_from + self.seconds


async def _streams_client(
    port: int, tokens: list[tuple[UUID, str]], seed: int, phases: Phases, window: Window, *, prefix: str = "/v1"
) -> None:
    """One client on one keep-alive connection: HTTP/1.1 written and read by hand, to take little CPU."""
    pick = random.Random(seed)  # noqa: S311 - a benchmark sample
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < phases.until:
            person, token = pick.choice(tokens)
            request = (
                f"GET {prefix}/persons/{person}/forecast HTTP/1.1\r\n"
                f"Host: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            began = time.perf_counter()
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            if began >= phases.record_from:
                window.add(_judge(int(lines[0].split()[1]), body), time.perf_counter() - began)
    finally:
        writer.close()


async def _httpx_client(
    client: httpx.AsyncClient, tokens: list[tuple[UUID, str]], seed: int, phases: Phases, window: Window
) -> None:
    pick = random.Random(seed)  # noqa: S311 - a benchmark sample
    while time.perf_counter() < phases.until:
        person, token = pick.choice(tokens)
        began = time.perf_counter()
        try:
            response = await client.get(f"/v1/persons/{person}/forecast", headers={"Authorization": f"Bearer {token}"})
            status = _judge(response.status_code, response.content)
        except httpx.HTTPError as error:
            status = type(error).__name__
        if began >= phases.record_from:
            window.add(status, time.perf_counter() - began)


async def _drive(
    port: int,
    tokens: list[tuple[UUID, str]],
    clients: int,
    phases: Phases,
    kind: str,
    *,
    snapshot: Callable[[], Any],
    prefix: str = "/v1",
) -> tuple[Window, Any, Any]:
    """Run the clients through the warm-up and the recorded window; ``snapshot()`` at both ends of the window.

    The clients connect 50 ms apart, as clients arriving one after another would: connecting all at once would
    hand every connection to whichever uvicorn worker wakes first."""
    window, marks = Window(), []

    async def mark() -> None:
        for moment in (phases.record_from, phases.until):
            await asyncio.sleep(max(0.0, moment - time.perf_counter()))
            marks.append(snapshot())

    async def staggered(seed: int, client: Coroutine[Any, Any, None]) -> None:
        await asyncio.sleep(seed * 0.05)
        await client

    if kind == "streams":
        runs = [_streams_client(port, tokens, seed, phases, window, prefix=prefix) for seed in range(clients)]
        await asyncio.gather(mark(), *(staggered(seed, run) for seed, run in enumerate(runs)))
        return window, marks[0], marks[1]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as client:
        runs = [_httpx_client(client, tokens, seed, phases, window) for seed in range(clients)]
        await asyncio.gather(mark(), *(staggered(seed, run) for seed, run in enumerate(runs)))
    return window, marks[0], marks[1]


def _wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.2)


@contextmanager
def _uvicorn(factory: str, url: str, workers: int, pool: int) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """uvicorn serving ``factory`` (of this module) on a free port, stopped afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    environment = os.environ | {
        "DATABASE_URL": url, "SUPABASE_JWT_SECRET": SECRET, "GLUCOKIT_API_POOL": str(pool),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])),
    }  # fmt: skip
    command = [
        sys.executable, "-m", "uvicorn", f"api:{factory}", "--factory", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--log-level", "info",
    ]  # fmt: skip
    # Like the Cloud Run service: uvicorn at log level info, access log on (here into /dev/null).
    server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(port, server)
        yield port, server
    finally:
        server.terminate()
        server.wait(timeout=60)


async def _sequential(port: int, path: str, requests: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(requests):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            assert lines[0].split()[1] == b"200", lines[0]
            length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
    finally:
        writer.close()


def _framework_floor(url: str, requests: int) -> dict[str, float]:
    """Server CPU per request of FastAPI routes that do nothing, one request after another."""
    floor = {}
    with _uvicorn("bare_app", url, 1, 1) as (port, server):
        for path in ("/sync", "/async"):
            asyncio.run(_sequential(port, path, 200))
            cpu = _cpu_s(server.pid)
            asyncio.run(_sequential(port, path, requests))
            floor[f"{path[1:]}_route_cpu_ms_per_request"] = round((_cpu_s(server.pid) - cpu) / requests * 1000, 3)
    return floor


def _route(
    url: str, tokens: list[tuple[UUID, str]], args: argparse.Namespace, workers: int, kind: str
) -> dict[str, Any]:
    pool = -(-args.clients // workers)  # a connection for every request in flight, none waiting for one
    load_average = os.getloadavg()[0]
    with _uvicorn("app", url, workers, pool) as (port, server):
        servers = [server.pid, *_children(server.pid)]

        def snapshot() -> tuple[list[float], float, tuple[float, float], float]:
            backends = _backends(conninfo_to_dict(url)["dbname"])
            return [_cpu_s(pid) for pid in servers], sum(map(_cpu_s, backends)), _machine_cpu_s(), time.process_time()

        phases = Phases(time.perf_counter(), args.warmup, args.seconds)
        window, before, after = asyncio.run(_drive(port, tokens, args.clients, phases, kind, snapshot=snapshot))
    wall = phases.seconds
    per_process = [round(b - a, 1) for a, b in zip(before[0], after[0], strict=True)]
    server_cpu, database_cpu = sum(after[0]) - sum(before[0]), after[1] - before[1]
    client_cpu = after[3] - before[3]
    (machine_before, steal_before), (machine_after, steal_after) = before[2], after[2]
    machine_cpu, requests = machine_after - machine_before, len(window.latencies)
    errors = sum(count for status, count in window.statuses.items() if status != "200")
    return {
        "client": {"streams": "asyncio streams, hand-written HTTP/1.1", "httpx": "httpx.AsyncClient"}[kind],
        "uvicorn_workers": workers,
        "pool_size_per_worker": pool,
        "clients": args.clients,
        "load_average_1min_before": round(load_average, 2),
        "seconds": round(wall, 1),
        "requests": requests,
        "requests_per_s": round(requests / wall, 1),
        "errors": errors,
        "statuses": window.statuses,
        "latency": _ms(window.latencies),
        "cpu_ms_per_request": {
            "client": round(client_cpu / requests * 1000, 3),
            "api_uvicorn": round(server_cpu / requests * 1000, 3),
            "database_backends": round(database_cpu / requests * 1000, 3),
            "whole_machine": round(machine_cpu / requests * 1000, 3),
        },
        # Busy CPU of everything else on the machine (other work, PostgreSQL's background processes, the kernel).
        "cpu_s_everything_else": round(machine_cpu - client_cpu - server_cpu - database_cpu, 1),
        "cpu_s_stolen_by_the_host": round(steal_after - steal_before, 1),
        "cores_busy": round(machine_cpu / wall, 2),
        # uvicorn's processes (the supervisor first when there are workers): how evenly the workers shared the work.
        "api_cpu_s_per_process": per_process,
    }


def _window(
    port: int, server: int, url: str, tokens: list[tuple[UUID, str]], *, clients: int, warmup: float, seconds: float,
    prefix: str,
) -> dict[str, Any]:  # fmt: skip
    """One recorded window of ``clients`` hand-written clients on ``prefix``'s route: the server's own CPU."""
    servers = [server, *_children(server)]

    def snapshot() -> tuple[float, float, tuple[float, float], float]:
        backends = _backends(conninfo_to_dict(url)["dbname"])
        return sum(map(_cpu_s, servers)), sum(map(_cpu_s, backends)), _machine_cpu_s(), time.process_time()

    phases = Phases(time.perf_counter(), warmup, seconds)
    window, before, after = asyncio.run(
        _drive(port, tokens, clients, phases, "streams", snapshot=snapshot, prefix=prefix)
    )
    requests = len(window.latencies)
    api_cpu, database_cpu, client_cpu = after[0] - before[0], after[1] - before[1], after[3] - before[3]
    machine_cpu, stolen = after[2][0] - before[2][0], after[2][1] - before[2][1]
    return {
        "requests": requests,
        "requests_per_s": round(requests / seconds, 1),
        "statuses": window.statuses,
        "latency": _ms(window.latencies),
        "api_cpu_s": round(api_cpu, 2),
        "cpu_ms_per_request": {
            "api_uvicorn": round(api_cpu / requests * 1000, 3),
            "database_backends": round(database_cpu / requests * 1000, 3),
            "client": round(client_cpu / requests * 1000, 3),
            "whole_machine": round(machine_cpu / requests * 1000, 3),
        },
        "cpu_s_stolen_by_the_host": round(stolen, 1),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }


def _side_by_side(url: str, tokens: list[tuple[UUID, str]], args: argparse.Namespace) -> dict[str, Any]:
    """The former sync route and the async route, served by one uvicorn process (1 worker), in
    alternating windows: at --clients clients and at one client."""
    routes = {"sync_former": "/legacy", "async": "/v1"}
    windows: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"concurrent": [], "one_client": []} for name in routes
    }
    with _uvicorn("legacy_app", url, 1, args.clients) as (port, server):
        for round_ in range(args.rounds):
            order = list(routes) if round_ % 2 == 0 else list(routes)[::-1]
            for name in order:
                windows[name]["concurrent"].append(
                    _window(
                        port,
                        server.pid,
                        url,
                        tokens,
                        clients=args.clients,
                        warmup=args.warmup,
                        seconds=args.seconds,
                        prefix=routes[name],
                    )
                )
            for name in order:
                windows[name]["one_client"].append(
                    _window(
                        port, server.pid, url, tokens, clients=1, warmup=2, seconds=args.seconds, prefix=routes[name]
                    )
                )

    def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
        requests = sum(run["requests"] for run in runs)
        api_cpu = sum(run["api_cpu_s"] for run in runs)
        return {
            "requests": requests,
            "errors": sum(n for run in runs for status, n in run["statuses"].items() if status != "200"),
            "api_cpu_ms_per_request": round(api_cpu / requests * 1000, 3),
            # What one core of API process serves: requests per CPU-second of the uvicorn process.
            "requests_per_api_core_s": round(requests / api_cpu, 1),
            "requests_per_s": round(statistics.fmean(run["requests_per_s"] for run in runs), 1),
            "p50_ms": [run["latency"]["median_ms"] for run in runs],
            "p95_ms": [run["latency"]["p95_ms"] for run in runs],
        }

    summaries = {
        name: {"concurrent": summary(kinds["concurrent"]), "one_client": summary(kinds["one_client"])}
        for name, kinds in windows.items()
    }
    old, new = summaries["sync_former"], summaries["async"]
    return {
        "how": "one uvicorn process, 1 worker, both routes mounted; windows alternate which route goes first; "
        "API CPU is the uvicorn process's own (/proc/PID/stat), the client runs in another process",
        "uvicorn_workers": 1,
        "pool_size": args.clients,
        "clients": args.clients,
        "rounds": args.rounds,
        "seconds_per_window": args.seconds,
        "summary": summaries,
        "api_cpu_ratio_async_to_sync": {
            kind: round(new[kind]["api_cpu_ms_per_request"] / old[kind]["api_cpu_ms_per_request"], 3)
            for kind in ("concurrent", "one_client")
        },
        "windows": windows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=10_000)
    parser.add_argument("--readings", type=int, default=3000, help="CGM readings per person")
    parser.add_argument("--curves", type=int, default=25, help="forecast curves (12 points) per person")
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="uvicorn worker counts to try")
    parser.add_argument("--client", nargs="+", choices=("streams", "httpx"), default=["streams", "httpx"])
    parser.add_argument("--database-url", help="measure this already loaded database instead (from --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database (prints its URL)")
    parser.add_argument("--rounds", type=int, default=2, help="side-by-side rounds of the sync and async routes")
    parser.add_argument("--quick", action="store_true", help="a small database and short windows (see above)")
    args = parser.parse_args()
    if args.quick:
        args.persons, args.readings, args.reads, args.seconds, args.warmup = 1000, 288, 500, 20, 3
        args.workers, args.client = [1], ["streams"]

    @contextmanager
    def target() -> Iterator[tuple[str, Loaded | None]]:
        if args.database_url:
            yield args.database_url, None
            return
        with _database(args.keep) as url:
            yield url, _load(url, args.persons, args.readings, args.curves)

    load_average_before, started = os.getloadavg(), time.perf_counter()
    with target() as (url, loaded):
        with psycopg.connect(url) as conn:
            owners = [(u, p) for u, p in conn.execute(b"select owner_id, id from public.person")]
            sizes = conn.execute(SIZES.encode()).fetchone()
            counts = conn.execute(b"select count(*) from public.prediction").fetchone()
        assert sizes is not None
        assert counts is not None
        read = _compare(url, owners, args.reads)
        tokens = [(person, _token(user)) for user, person in owners]
        side_by_side = _side_by_side(url, tokens, args)
        routes = [_route(url, tokens, args, workers, kind) for kind in args.client for workers in args.workers]
        own_work = _in_process(url, tokens, 2000)
        floor = _framework_floor(url, 3000)

    gib = 2**30
    print(
        json.dumps(
            {
                "benchmark": "the latest-forecast read under RLS vs without, and GET /v1/persons/{id}/forecast "
                "at concurrent clients",
                "command": " ".join([".venv/bin/python", *sys.argv]),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / gib:.0f} GiB",
                "load_average_at_start": [round(value, 2) for value in load_average_before],
                "data": {
                    "persons": len(owners),
                    "owners": "one auth user per person",
                    "observations": loaded.observations if loaded else None,
                    "prediction_rows": int(str(counts[0])),
                    "observation_gib_with_indexes": round(int(str(sizes[0])) / gib, 2),
                    "observation_heap_gib": round(int(str(sizes[1])) / gib, 2),
                    "forecast_and_prediction_gib_with_indexes": round(int(str(sizes[2])) / gib, 2),
                    "forecast_and_prediction_heap_gib": round(int(str(sizes[3])) / gib, 2),
                    "forecast_owner_person_generated_idx_mib": round(int(str(sizes[4])) / 2**20, 1),
                    "observation_partitions": int(str(sizes[5])),
                    "retrain_requests_queued_by_the_ingest_trigger": int(str(sizes[6])),
                },
                "load": vars(loaded) if loaded else None,
                "latest_curve_read": read,
                "route": routes,
                "sync_vs_async_route_side_by_side": side_by_side,
                "route_work_in_process_one_at_a_time": own_work,
                "fastapi_floor_one_at_a_time": floor,
                "benchmark_minutes": round((time.perf_counter() - started) / 60, 1),
                "targets": {"ratio": 1.15, "route_p95_ms_at_16_clients": 20, "api_cpu_ms_per_request": 2},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
