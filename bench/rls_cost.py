"""What row-level security costs on a user's forecast read, at millions of prediction rows.

    .venv/bin/python bench/rls_cost.py [--persons 1000] [--points 2400] [--reads 2000]

Builds a scratch database on the embedded server, migrated like any other,
with --persons persons (one user each, one model each) and --points forecast
points per person, then reads the latest forecast curve of random persons
--reads times, and twelve hours of their forecasts: as the signed-in owner (role authenticated with their
claims, under the policies) and as the table owner (no row-level security), same query, each on its own
connection (as an API's pooled connections stay in their role), taking turns read by read so that the
load of a shared machine falls on both alike. Prints a JSON summary; the recorded result is
bench/results/rls_cost.json. Target (issue 16): the RLS read within 1.15x the plain one.

Since the latest-forecast pointer carries the curve (migration 20261207100000), the forecast writes pay for
the read's speed. The script also writes --writes forecasts (one origin, 12 points and 60 anchors each, in the
forecast writer's one-statement shape, as the table owner) in two ways that take turns: with the pointer as it
is, and with the keys-only pointer of migration 20261206165000 instead (its trigger function, taken from that
migration's text, keeping a copy of its table), and reports the database backend's CPU per write.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import psycopg

from glucokit.db import sessions
from glucokit.db.queries import query
from glucokit.db.sessions import Connection
from scratch import scratch_database

# The API's reads (lib/glucokit/api/sql/reads.sql): the latest curve, with its forecast's provenance.
LATEST_CURVE = query("read_latest_curve")

# Twelve hours of a person's forecasts (144 curves, 1,728 points): a chart's worth.
RANGE = b"""
select p.generated_at, p.target_at, p.horizon_minutes, p.value_mg_dl, p.lower_mg_dl, p.upper_mg_dl
from public.prediction p
where p.person_id = %(person_id)s
  and p.generated_at >= timestamptz '2026-01-11' and p.generated_at < timestamptz '2026-01-11 12:00'
order by p.generated_at, p.horizon_minutes
"""

# Forecasts land in their day's partition, as the retention job creates them ahead.
LOAD = """
select private.create_forecast_partitions('2026-01-11', '2026-01-11'::date + 1 + {curves} / 288);
insert into auth.users (id) select gen_random_uuid() from generate_series(1, {persons});
insert into public.person (owner_id) select id from auth.users;
insert into public.ml_model (person_id, version, algorithm, data_from, data_to)
select id, '1.0.0', 'ridge', '2026-01-01', '2026-01-10' from public.person;
insert into public.forecast (
  person_id, owner_id, model_id, generated_at, coverage, disclaimer_version, model_version, data_from, data_to,
  code_version
)
select m.person_id, pe.owner_id, m.id, timestamptz '2026-01-11' + c.n * interval '5 minutes', 0.8, 'v1', '1.0.0',
  '2026-01-01', '2026-01-10', 'bench'
from public.ml_model m
join public.person pe on pe.id = m.person_id
cross join generate_series(1, {curves}) as c(n);
insert into public.prediction (
  forecast_id, person_id, owner_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl,
  upper_mg_dl
)
select f.id, f.person_id, f.owner_id, f.model_id, f.generated_at, f.generated_at + make_interval(mins => h.h), h.h,
  120, 100, 140
from public.forecast f
cross join generate_series(5, 60, 5) as h(h);
analyze;
"""


# The forecast writer's statement shape (lib/glucokit/modelops/sql/forecasts.sql, forecast_insert_points), for one
# origin, as the table owner: the forecast, its 12 points, its anchors (the person's 60 newest readings).
WRITE = b"""
with forecasts as (
  insert into public.forecast (
    person_id, owner_id, model_id, generated_at, coverage, disclaimer_version, model_version, data_from, data_to,
    code_version, source_count
  )
  select m.person_id, pe.owner_id, m.id, %(at)s, 0.8, 'v1', '1.0.0', '2026-01-01', '2026-01-10', 'bench', 60
  from public.ml_model m join public.person pe on pe.id = m.person_id
  where m.person_id = %(person_id)s
  returning id, person_id, owner_id, model_id, generated_at
), points as (
  insert into public.prediction (
    forecast_id, person_id, owner_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl,
    upper_mg_dl
  )
  select f.id, f.person_id, f.owner_id, f.model_id, f.generated_at, f.generated_at + make_interval(mins => h.h), h.h,
    120, 100, 140
  from forecasts f cross join generate_series(5, 60, 5) as h(h)
  returning 1
), anchors as (
  insert into public.prediction_source (
    forecast_id, person_id, owner_id, model_id, generated_at, observation_id, observation_effective_at
  )
  select f.id, f.person_id, f.owner_id, f.model_id, f.generated_at, o.id, o.effective_at
  from forecasts f join public.observation o on o.person_id = f.person_id
  returning 1
)
select (select count(*) from points), (select count(*) from anchors)
"""

# The pointer's triggers since migration 20261207100000; the keys-only way disables them.
CARRIED_TRIGGERS = {
    "public.forecast": ("forecast_latest_pointer", "forecast_latest_refill"),
    "public.prediction": ("prediction_latest_curve",),
}
MIGRATIONS = Path(__file__).resolve().parent.parent / "supabase" / "migrations"


def _keys_only_pointer(conn: Connection) -> None:
    """Migration 20261206165000's pointer trigger, on a copy of its table (bench.latest_forecast), disabled."""
    text = (MIGRATIONS / "20261206165000_latest_forecast_pointer.sql").read_text()
    function = re.search(r"create or replace function private\.move_latest_forecast\(\).*?\n\$\$;", text, re.S)
    assert function, "migration 20261206165000 no longer defines private.move_latest_forecast()"
    body = function.group(0).replace("private.move_latest_forecast()", "bench.move_latest_forecast()")
    conn.execute(b"create schema bench")
    conn.execute(
        b"create table bench.latest_forecast (person_id uuid primary key, owner_id uuid not null,"
        b" forecast_id uuid not null, generated_at timestamptz not null, created_at timestamptz not null)"
    )
    conn.execute(body.replace("private.latest_forecast", "bench.latest_forecast").encode())
    conn.execute(
        b"create trigger bench_keys_only_pointer after insert on public.forecast referencing new table as added"
        b" for each statement execute function bench.move_latest_forecast()"
    )
    conn.execute(b"alter table public.forecast disable trigger bench_keys_only_pointer")
    conn.commit()


def _pointer_way(conn: Connection, carried: bool) -> None:
    for table, triggers in CARRIED_TRIGGERS.items():
        for trigger in triggers:
            conn.execute(f"alter table {table} {'enable' if carried else 'disable'} trigger {trigger}".encode())
    conn.execute(
        f"alter table public.forecast {'disable' if carried else 'enable'} trigger bench_keys_only_pointer".encode()
    )
    conn.commit()


def _backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _write_cost(conn: Connection, persons: list[UUID], writes: int) -> dict[str, object]:
    """Backend CPU per forecast write with the curve carried by the pointer and with the keys-only pointer."""
    conn.execute(
        b"insert into public.observation (person_id, code, value, unit, effective_at, source_system, source_id)"
        b" select p, '99504-3', 120, 'mg/dL', timestamptz '2026-01-11' - make_interval(mins => 5 * n), 'urn:bench',"
        b" 'b' || n from unnest(%s::uuid[]) as p, generate_series(1, 60) as n",
        (persons,),
    )
    conn.execute(b"select private.create_forecast_partitions('2026-01-13', '2026-01-14')")
    conn.commit()
    _keys_only_pointer(conn)
    pid = int(str((conn.execute(b"select pg_backend_pid()").fetchone() or (0,))[0]))
    conn.commit()
    cpu: dict[bool, float] = {True: 0.0, False: 0.0}
    done: dict[bool, int] = {True: 0, False: 0}
    rounds = 10
    step = 0
    for round_ in range(rounds):
        for carried in (True, False) if round_ % 2 else (False, True):
            _pointer_way(conn, carried)
            began = _backend_cpu_s(pid)
            for _ in range(writes // rounds):
                person = persons[step % len(persons)]
                at = datetime(2026, 1, 13, tzinfo=UTC) + timedelta(minutes=5 * (step // len(persons)))
                step += 1
                row = conn.execute(WRITE, {"person_id": person, "at": at}).fetchone()
                conn.commit()
                assert row == (12, 60)
            cpu[carried] += _backend_cpu_s(pid) - began
            done[carried] += writes // rounds
    _pointer_way(conn, carried=True)
    per_write = {carried: cpu[carried] / done[carried] * 1e6 for carried in cpu}
    return {
        "writes_each_way": done[True],
        "backend_cpu_us_per_write_curve_carried": round(per_write[True]),
        "backend_cpu_us_per_write_keys_only_pointer": round(per_write[False]),
        "ratio": round(per_write[True] / per_write[False], 3),
    }


def latest_forecast_sql(conn: Connection) -> bytes:
    """The RPC public.latest_forecast's query, as plain SQL (the same read without the function call)."""
    row = conn.execute(
        b"select prosrc from pg_proc where oid = 'public.latest_forecast(uuid, text)'::regprocedure"
    ).fetchone()
    conn.commit()
    assert row
    return str(row[0]).replace("$1", "%(person_id)s").replace("$2", "'en'").encode()


def _time_read(conn: Connection, user: UUID, person: UUID, statement: bytes, rls: bool) -> float:
    with sessions.as_user(conn, user) if rls else conn.transaction():
        began = time.perf_counter()
        rows = conn.execute(statement, {"person_id": person}).fetchall()
        took = time.perf_counter() - began
    assert rows
    return took


def _compare(conns: dict[bool, Connection], sample: list[tuple[UUID, UUID]], statement: bytes) -> dict[str, float]:
    """Each read under RLS and without, in turns (which goes first alternates), each mode on its connection."""
    timings: dict[bool, list[float]] = {True: [], False: []}
    for n, (user, person) in enumerate(sample[:50] + sample):  # the first 50 warm the caches and plans
        for rls in (True, False) if n % 2 else (False, True):
            took = _time_read(conns[rls], user, person, statement, rls)
            if n >= 50:
                timings[rls].append(took)
    with_rls, without = timings[True], timings[False]
    return {
        "median_ms_with_rls": round(statistics.median(with_rls) * 1000, 3),
        "median_ms_without_rls": round(statistics.median(without) * 1000, 3),
        "p95_ms_with_rls": round(statistics.quantiles(with_rls, n=20)[18] * 1000, 3),
        "p95_ms_without_rls": round(statistics.quantiles(without, n=20)[18] * 1000, 3),
        "ratio_median": round(statistics.median(with_rls) / statistics.median(without), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1000)
    parser.add_argument("--points", type=int, default=2400, help="forecast points per person (12 per curve)")
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--writes", type=int, default=2000, help="forecast writes each way (0: none)")
    args = parser.parse_args()

    load_before = os.getloadavg()
    with scratch_database() as url, psycopg.connect(url) as conn:
        began = time.perf_counter()
        conn.execute(LOAD.format(persons=args.persons, curves=args.points // 12).encode())
        conn.commit()
        load_s = time.perf_counter() - began
        total = conn.execute(b"select count(*) from public.prediction").fetchone()
        owners = [(u, p) for u, p in conn.execute(b"select owner_id, id from public.person")]
        conn.commit()
        sample = random.Random(7).choices(owners, k=args.reads)  # noqa: S311 - a benchmark sample
        # Two fresh connections for the reads, alike but for the role each reads as.
        with psycopg.connect(url) as owner, psycopg.connect(url) as plain:
            conns = {True: owner, False: plain}
            latest = _compare(conns, sample, LATEST_CURVE)
            latest_body = _compare(conns, sample, latest_forecast_sql(conn))
            twelve_hours = _compare(conns, sample, RANGE)
        writes = _write_cost(conn, [p for _, p in owners[:200]], args.writes) if args.writes else {}

    print(
        json.dumps(
            {
                "benchmark": "a person's forecast reads as the signed-in owner (RLS) vs as the table owner (no RLS)",
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "prediction_rows": int(str(total[0])) if total else 0,
                "persons": args.persons,
                "load_s": round(load_s, 1),
                "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                "reads": args.reads,
                "latest_curve_12_points": latest,
                "latest_curve_rpc_body_as_sql": latest_body,
                "twelve_hours_1728_points": twelve_hours,
                "forecast_write_cost": writes,
                "target_ratio": 1.15,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
