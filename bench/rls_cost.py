"""What row-level security costs on a user's forecast read, at millions of prediction rows.

    .venv/bin/python bench/rls_cost.py [--persons 1000] [--points 2400] [--reads 400]

Builds a scratch database on the embedded server, migrated like any other,
with --persons persons (one user each, one model each) and --points forecast
points per person, then reads the latest forecast curve of random persons
--reads times, and twelve hours of their forecasts: once as the signed-in owner (role authenticated with their
claims, under the policies), once as the table owner (no row-level security),
same query. Prints a JSON summary; the recorded result is
bench/results/rls_cost.json. Target (issue 16): the RLS read within 1.15x the plain one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
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


def latest_forecast_sql(conn: Connection) -> bytes:
    """The RPC public.latest_forecast's query, as plain SQL (the same read without the function call)."""
    row = conn.execute(
        b"select prosrc from pg_proc where oid = 'public.latest_forecast(uuid, text)'::regprocedure"
    ).fetchone()
    conn.commit()
    assert row
    return str(row[0]).replace("$1", "%(person_id)s").replace("$2", "'en'").encode()


def _time_reads(conn: Connection, owners: list[tuple[UUID, UUID]], statement: bytes, rls: bool) -> list[float]:
    timings = []
    for user, person in owners:
        with sessions.as_user(conn, user) if rls else conn.transaction():
            began = time.perf_counter()
            rows = conn.execute(statement, {"person_id": person}).fetchall()
            timings.append(time.perf_counter() - began)
        assert rows
    return timings


def _compare(conn: Connection, sample: list[tuple[UUID, UUID]], statement: bytes) -> dict[str, float]:
    _time_reads(conn, sample[:50], statement, rls=True)  # warm the caches
    _time_reads(conn, sample[:50], statement, rls=False)
    with_rls = _time_reads(conn, sample, statement, rls=True)
    without = _time_reads(conn, sample, statement, rls=False)
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
    parser.add_argument("--reads", type=int, default=400)
    args = parser.parse_args()

    with scratch_database() as url, psycopg.connect(url) as conn:
        began = time.perf_counter()
        conn.execute(LOAD.format(persons=args.persons, curves=args.points // 12).encode())
        conn.commit()
        load_s = time.perf_counter() - began
        total = conn.execute(b"select count(*) from public.prediction").fetchone()
        owners = [(u, p) for u, p in conn.execute(b"select owner_id, id from public.person")]
        conn.commit()
        sample = random.Random(7).choices(owners, k=args.reads)  # noqa: S311 - a benchmark sample
        latest = _compare(conn, sample, LATEST_CURVE)
        latest_body = _compare(conn, sample, latest_forecast_sql(conn))
        twelve_hours = _compare(conn, sample, RANGE)

    print(
        json.dumps(
            {
                "benchmark": "a person's forecast reads as the signed-in owner (RLS) vs as the table owner (no RLS)",
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "prediction_rows": int(str(total[0])) if total else 0,
                "persons": args.persons,
                "load_s": round(load_s, 1),
                "reads": args.reads,
                "latest_curve_12_points": latest,
                "latest_curve_rpc_body_as_sql": latest_body,
                "twelve_hours_1728_points": twelve_hours,
                "target_ratio": 1.15,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
