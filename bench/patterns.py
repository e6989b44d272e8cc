"""Pattern search at a million day patterns: HNSW build time, recall@10 against exact search, and latency.

    .venv/bin/python bench/patterns.py [--persons 2740] [--days 365] [--queries 300] [--seed 20261122]

Builds a scratch database on the embedded server, migrated like any other, and
fills it as the database owner: --persons auth users owning one person each,
and per person --days synthetic day profiles (public.day_pattern, 48 half-hour
means in mg/dL, the shape glucokit.modelops.patterns computes), loaded by one binary
COPY with row-level security, foreign keys and the btree indexes on. The
migration's HNSW index is dropped before the load and built again afterwards
with the same definition, timed, with maintenance_work_mem large enough for the
whole graph. Then VACUUM (ANALYZE).

A synthetic day is a person's level (their own, shifted day to day), a dawn
rise, three meals (each at the person's habitual time, shifted on weekends,
jittered, sometimes skipped, with a person-specific peak time and a day-to-day
size), sometimes a snack or a low, and autocorrelated noise.

For --queries random person-days, recall@10 is measured against the exact
answer computed in numpy from the loaded float32 profiles, and latency around
the query alone (client side, p50/p95):

1. per person, under row-level security (as ``authenticated`` with the owner's
   claims, as the API runs it): the shipped query (``patterns_similar``, exact
   by construction); the same question written as ORDER BY the distance to the
   day's embedding, filtered to the person, as the planner plans it by default;
   and that query put to the HNSW index (sorting disabled so the planner takes
   the index) for several hnsw.ef_search values, with iterative scans off,
   relaxed_order and strict_order, and larger hnsw.max_scan_tuples and
   hnsw.scan_mem_multiplier;
2. global, every person's days (as the table owner, which row-level security
   does not apply to): the HNSW index for several ef_search values, and a
   sequential exact scan for a few queries.

Prints a JSON summary; the recorded result is bench/results/patterns.json. The
load average of the machine (shared with other work) is recorded at each stage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import numpy.typing as npt
import psycopg

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, become_role, user_claims
from glucokit.modelops.patterns import SLOT_MINUTES, SLOTS, SOURCE
from scratch import scratch_database

FIRST_DAY = date(2025, 11, 1)
PG_EPOCH = date(2000, 1, 1)
K = 10
CHUNK_PERSONS = 250
MAINTENANCE_WORK_MEM = "3GB"
EXACT_GLOBAL_QUERIES = 20

Profiles = npt.NDArray[np.float32]

# The same question put to the HNSW index: the person's days ordered by distance to the day's embedding.
HNSW_PERSON = b"""
select day from public.day_pattern
where person_id = %(person_id)s and day <> %(day)s
order by embedding operator(extensions.<->) (
  select embedding from public.day_pattern where person_id = %(person_id)s and day = %(day)s
)
limit %(limit)s
"""
# Every person's days nearest to one day (the day itself comes first and is dropped).
GLOBAL = b"""
select person_id, day from public.day_pattern
order by embedding operator(extensions.<->) (
  select embedding from public.day_pattern where person_id = %(person_id)s and day = %(day)s
)
limit %(limit)s
"""

PERSON_SETTINGS: list[tuple[str, int, int, int]] = [  # iterative_scan, ef_search, max_scan_tuples, mem multiplier
    ("off", 40, 20000, 1),
    ("off", 400, 20000, 1),
    ("relaxed_order", 40, 20000, 1),
    ("relaxed_order", 100, 20000, 1),
    ("relaxed_order", 400, 20000, 1),
    ("strict_order", 100, 20000, 1),
    ("relaxed_order", 100, 100000, 1),
    ("relaxed_order", 100, 100000, 8),
]
GLOBAL_EF = [10, 40, 100, 400]


def synthetic_profiles(rng: np.random.Generator, persons: int, days: int) -> Profiles:
    """Day profiles, shaped (persons, days, SLOTS): half-hour means in mg/dL (see the module's description)."""
    hours = (np.arange(SLOTS) + 0.5) * SLOT_MINUTES / 60
    level = rng.normal(125, 18, persons).clip(85, 200)
    dawn = rng.uniform(0, 25, persons)
    meal_times = np.stack([rng.normal(mu, 0.7, persons) for mu in (7.5, 12.8, 19.0)], axis=1)
    meal_sizes = rng.lognormal(np.log([45.0, 55.0, 65.0]), 0.3, (persons, 3))
    peak_hours = rng.uniform(0.7, 1.2, persons)
    weekend = (np.arange(days) + FIRST_DAY.weekday()) % 7 >= 5
    out = np.empty((persons, days, SLOTS), np.float32)
    for first in range(0, persons, CHUNK_PERSONS):
        p = slice(first, min(first + CHUNK_PERSONS, persons))
        n = p.stop - p.start
        profile = (level[p, None] + rng.normal(0, 10, (n, days)))[:, :, None] + (
            dawn[p, None, None] * np.exp(-(((hours - 6) / 1.5) ** 2))
        )
        peak = peak_hours[p, None, None]

        def response(
            at: npt.NDArray[np.float64], size: npt.NDArray[np.float64], peak: npt.NDArray[np.float64] = peak
        ) -> npt.NDArray[np.float64]:
            x = np.clip((hours[None, None, :] - at[:, :, None]) / peak, 0, None)
            return np.asarray(size[:, :, None] * x * np.exp(1 - x))

        for meal in range(3):
            at = meal_times[p, meal, None] + 0.9 * weekend + rng.normal(0, 0.6, (n, days))
            size = meal_sizes[p, meal, None] * rng.lognormal(0, 0.35, (n, days)) * (rng.random((n, days)) > 0.08)
            profile += response(at, size)
        snack_at = np.where(rng.random((n, days)) < 0.5, rng.uniform(14, 17, (n, days)), rng.uniform(21, 23, (n, days)))
        profile += response(snack_at, rng.lognormal(np.log(20), 0.4, (n, days)) * (rng.random((n, days)) < 0.4))
        low_at = rng.uniform(0, 24, (n, days))
        profile -= (
            45
            * (rng.random((n, days)) < 0.05)[:, :, None]
            * np.exp(-(((hours[None, None, :] - low_at[:, :, None]) / 0.6) ** 2))
        )
        noise = rng.normal(0, 6, (n, days, SLOTS))
        for slot in range(1, SLOTS):
            noise[:, :, slot] += 0.7 * noise[:, :, slot - 1]
        out[p] = np.clip(profile + noise, 40, 400)
    return out


def _copy_rows(person_ids: list[UUID], profiles: Profiles) -> Iterator[bytes]:
    """public.day_pattern rows in PostgreSQL's binary COPY format, a person chunk at a time."""
    persons, days, _ = profiles.shape
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("person_len", ">i4"), ("person_id", "V16"),
            ("day_len", ">i4"), ("day", ">i4"),
            ("source_len", ">i4"), ("source", f"S{len(SOURCE)}"),
            ("embedding_len", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("embedding", ">f4", (SLOTS,)),
            ("readings_len", ">i4"), ("readings", ">i2"),
            ("filled_len", ">i4"), ("filled", ">i2"),
        ]
    )  # fmt: skip
    rng = np.random.default_rng(0)
    yield b"PGCOPY\n\xff\r\n\0" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    ids = np.frombuffer(b"".join(person.bytes for person in person_ids), dtype="V16")
    first_day = (FIRST_DAY - PG_EPOCH).days
    for first in range(0, persons, CHUNK_PERSONS):
        chunk = slice(first, min(first + CHUNK_PERSONS, persons))
        n = (chunk.stop - chunk.start) * days
        rows = np.zeros(n, row)
        rows["fields"] = 6
        rows["person_len"], rows["day_len"], rows["source_len"] = 16, 4, len(SOURCE)
        rows["embedding_len"], rows["readings_len"], rows["filled_len"] = 4 + 4 * SLOTS, 2, 2
        rows["person_id"] = np.repeat(ids[chunk], days)
        rows["day"] = np.tile(np.arange(first_day, first_day + days, dtype=np.int32), chunk.stop - chunk.start)
        rows["source"] = SOURCE.encode()
        rows["dim"] = SLOTS
        rows["embedding"] = profiles[chunk].reshape(n, SLOTS)
        rows["readings"] = rng.integers(210, 289, n)
        rows["filled"] = rng.integers(0, 3, n)
        yield rows.tobytes()
    yield (-1).to_bytes(2, "big", signed=True)


def _load(url: str, persons: int, profiles: Profiles) -> tuple[list[UUID], list[UUID], str, dict[str, float]]:
    """Users, persons and day patterns; the HNSW index dropped for the load. Persons, owners, the index's
    definition and the seconds each step took."""
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    with psycopg.connect(url) as conn:
        conn.execute(
            b"insert into auth.users (id, aud, role) "
            b"select gen_random_uuid(), 'authenticated', 'authenticated' from generate_series(1, %(n)s)",
            {"n": persons},
        )
        conn.execute(b"insert into public.person (owner_id, display_name) select id, 'bench' from auth.users")
        pairs = conn.execute(b"select id, owner_id from public.person order by id").fetchall()
        row = conn.execute(
            b"select indexdef from pg_indexes "
            b"where schemaname = 'public' and indexname = 'day_pattern_embedding_hnsw_idx'"
        ).fetchone()
        assert row is not None
        definition = str(row[0])
        conn.execute(b"drop index public.day_pattern_embedding_hnsw_idx")
        conn.commit()
        seconds["users_persons"] = round(time.perf_counter() - began, 1)
        person_ids = [UUID(str(person)) for person, _ in pairs]
        owners = [UUID(str(owner)) for _, owner in pairs]

        began = time.perf_counter()
        conn.execute(b"set synchronous_commit = off")
        with conn.cursor().copy(
            b"copy public.day_pattern (person_id, day, source, embedding, readings, filled_slots) "
            b"from stdin (format binary)"
        ) as copy:
            for block in _copy_rows(person_ids, profiles):
                copy.write(block)
        conn.commit()
        seconds["copy"] = round(time.perf_counter() - began, 1)
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(b"vacuum (analyze) public.day_pattern")
    seconds["vacuum_analyze"] = round(time.perf_counter() - began, 1)
    return person_ids, owners, definition, seconds


def _build_index(url: str, definition: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"set maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'".encode())
        conn.execute(b"set max_parallel_maintenance_workers = 1")  # with the leader: one process per core
        began = time.perf_counter()
        conn.execute(definition.encode())
        built = time.perf_counter() - began
        sizes = conn.execute(
            b"select pg_relation_size('public.day_pattern'), "
            b"pg_relation_size('public.day_pattern_embedding_hnsw_idx'), "
            b"pg_relation_size('public.day_pattern_one_per_day')"
        ).fetchone()
    assert sizes is not None
    table, hnsw, btree = (int(str(size)) for size in sizes)
    return {
        "definition": definition,
        "seconds": round(built, 1),
        "maintenance_work_mem": MAINTENANCE_WORK_MEM,
        "parallel_maintenance_workers": 1,
        "mib": {"table": table >> 20, "hnsw_index": hnsw >> 20, "person_day_btree": btree >> 20},
    }


def _exact_person(profiles: Profiles, person: int, day: int) -> list[int]:
    """The person's K days nearest to ``day``, the day itself left out, ties by day (numpy, float64)."""
    own = profiles[person].astype(np.float64)
    distance = np.sqrt(((own - own[day]) ** 2).sum(axis=1))
    distance[day] = np.inf
    return [int(d) for d in np.lexsort((np.arange(len(own)), distance))[:K]]


def _exact_global(flat: Profiles, days: int, queries: list[tuple[int, int]]) -> list[set[tuple[int, int]]]:
    """Every person's K days nearest to each query day, the day itself left out (numpy, float64)."""
    wide = flat.astype(np.float64)
    norms = (wide**2).sum(axis=1)
    found = []
    for person, day in queries:
        index = person * days + day
        q = wide[index]
        distance = norms - 2 * wide @ q + q @ q
        distance[index] = np.inf
        top = np.argpartition(distance, K)[:K]
        found.append({(int(i) // days, int(i) % days) for i in top})
    return found


def _ms(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {
        "mean_ms": round(statistics.fmean(values) * 1000, 3),
        "p50_ms": round(statistics.median(values) * 1000, 3),
        "p95_ms": round(cuts[94] * 1000, 3),
        "max_ms": round(max(values) * 1000, 3),
    }


def _timed(conn: Connection, settings: list[bytes], statement: bytes, params: dict[str, Any]) -> tuple[
    float, list[tuple[Any, ...]]
]:  # fmt: skip
    for setting in settings:
        conn.execute(setting)
    began = time.perf_counter()
    rows = conn.execute(statement, params).fetchall()
    return time.perf_counter() - began, rows


def _hnsw_settings(iterative: str, ef: int, max_tuples: int = 20000, memory: int = 1) -> list[bytes]:
    return [
        f"set local hnsw.iterative_scan = {iterative}".encode(),
        f"set local hnsw.ef_search = {ef}".encode(),
        f"set local hnsw.max_scan_tuples = {max_tuples}".encode(),
        f"set local hnsw.scan_mem_multiplier = {memory}".encode(),
    ]


def _explain(conn: Connection, settings: list[bytes], statement: bytes, params: dict[str, Any]) -> list[str]:
    for setting in settings:
        conn.execute(setting)
    rows = conn.execute(b"explain (analyze, buffers, costs off, timing off) " + statement, params).fetchall()
    return [str(line) for (line,) in rows]


def _per_person(
    conn: Connection, person_ids: list[UUID], owners: list[UUID], queries: list[tuple[int, int]],
    exact: list[list[int]],
) -> dict[str, Any]:  # fmt: skip
    """The per-person query under RLS: the shipped exact query, then the HNSW index with each setting."""
    variants: list[tuple[str, bytes, list[bytes]]] = [
        ("shipped (exact join)", query("patterns_similar"), []),
        ("order by distance, the planner's choice (default settings)", HNSW_PERSON, []),
    ]
    for iterative, ef, max_tuples, memory in PERSON_SETTINGS:
        name = (
            f"hnsw iterative_scan={iterative} ef_search={ef} max_scan_tuples={max_tuples} scan_mem_multiplier={memory}"
        )
        variants.append(
            (name, HNSW_PERSON, [b"set local enable_sort = off", *_hnsw_settings(iterative, ef, max_tuples, memory)])
        )
    results: dict[str, Any] = {}
    for name, statement, settings in variants:
        latencies, recalls, short = [], [], 0
        plan: list[str] = []
        for n, (person, day) in enumerate(queries):
            params = {
                "person_id": person_ids[person], "day": FIRST_DAY + timedelta(days=day), "limit": K,
                "scale": float(np.sqrt(SLOTS)),
            }  # fmt: skip
            with conn.transaction():
                conn.execute(become_role("authenticated", user_claims(owners[person])))
                if n == 0:
                    with conn.transaction(force_rollback=True):
                        plan = _explain(conn, settings, statement, params)
                elapsed, rows = _timed(conn, settings, statement, params)
            got = {(row[0] - FIRST_DAY).days for row in rows}
            latencies.append(elapsed)
            recalls.append(len(got & set(exact[n])) / K)
            short += len(rows) < K
        results[name] = {
            "recall_at_10": round(statistics.fmean(recalls), 4),
            "queries_with_recall_1": sum(r == 1.0 for r in recalls),
            "queries_with_fewer_than_10_rows": short,
            **_ms(latencies),
            "plan_of_first_query": plan,
        }
        print(f"{name}: {json.dumps({k: v for k, v in results[name].items() if k != 'plan_of_first_query'})}",
              file=sys.stderr)  # fmt: skip
    return results


def _global(
    conn: Connection, person_ids: list[UUID], queries: list[tuple[int, int]], exact: list[set[tuple[int, int]]]
) -> dict[str, Any]:
    """Every person's days, as the table owner: the HNSW index per ef_search, and exact sequential scans."""
    index = {person: n for n, person in enumerate(person_ids)}
    results: dict[str, Any] = {}
    variants = [(f"hnsw ef_search={ef}", _hnsw_settings("off", ef), queries) for ef in GLOBAL_EF]
    variants.append(("exact (sequential scan)", [b"set local enable_indexscan = off"], queries[:EXACT_GLOBAL_QUERIES]))
    for name, settings, asked in variants:
        latencies, recalls = [], []
        plan: list[str] = []
        for n, (person, day) in enumerate(asked):
            params = {"person_id": person_ids[person], "day": FIRST_DAY + timedelta(days=day), "limit": K + 1}
            with conn.transaction():
                if n == 0:
                    with conn.transaction(force_rollback=True):
                        plan = _explain(conn, settings, GLOBAL, params)
                elapsed, rows = _timed(conn, settings, GLOBAL, params)
            found = [(index[UUID(str(row[0]))], (row[1] - FIRST_DAY).days) for row in rows]
            got = {hit for hit in found if hit != (person, day)} if (person, day) in found else set(found[:K])
            latencies.append(elapsed)
            recalls.append(len(got & exact[n]) / K)
        results[name] = {
            "queries": len(asked),
            "recall_at_10": round(statistics.fmean(recalls), 4),
            **_ms(latencies),
            "plan_of_first_query": plan,
        }
        print(f"{name}: {json.dumps({k: v for k, v in results[name].items() if k != 'plan_of_first_query'})}",
              file=sys.stderr)  # fmt: skip
    return results


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--persons", type=int, default=2740)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()
    loads: dict[str, list[float]] = {"start": _load_average()}
    rng = np.random.default_rng(args.seed)
    began = time.perf_counter()
    profiles = synthetic_profiles(rng, args.persons, args.days)
    generated = round(time.perf_counter() - began, 1)
    queries = [(int(p), int(d)) for p, d in zip(rng.integers(0, args.persons, args.queries),
                                                 rng.integers(0, args.days, args.queries), strict=True)]  # fmt: skip
    flat = profiles.reshape(-1, SLOTS)
    began = time.perf_counter()
    exact_person = [_exact_person(profiles, person, day) for person, day in queries]
    exact_global = _exact_global(flat, args.days, queries)
    exact_seconds = round(time.perf_counter() - began, 1)
    with scratch_database() as url:
        person_ids, owners, definition, seconds = _load(url, args.persons, profiles)
        seconds["generate_profiles"] = generated
        seconds["exact_answers_numpy"] = exact_seconds
        loads["after_load"] = _load_average()
        build = _build_index(url, definition)
        loads["after_index_build"] = _load_average()
        with psycopg.connect(url) as conn:
            per_person = _per_person(conn, person_ids, owners, queries, exact_person)
            loads["after_per_person"] = _load_average()
            global_ = _global(conn, person_ids, queries, exact_global)
            loads["after_global"] = _load_average()
            versions = conn.execute(
                b"select current_setting('server_version'), "
                b"(select extversion from pg_extension where extname = 'vector')"
            ).fetchone()
    assert versions is not None
    summary = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "postgresql": versions[0],
            "pgvector": versions[1],
            "load_average_1_5_15_min": loads,
        },
        "data": {
            "persons": args.persons,
            "days_per_person": args.days,
            "day_patterns": args.persons * args.days,
            "dimensions": SLOTS,
            "seed": args.seed,
        },
        "seconds": seconds,
        "hnsw_build": build,
        "queries": args.queries,
        "k": K,
        "per_person_under_rls": per_person,
        "global_as_table_owner": global_,
    }
    out = Path(__file__).parent / "results" / "patterns.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    brief = {k: v for k, v in summary.items() if k not in ("per_person_under_rls", "global_as_table_owner")}
    print(json.dumps(brief, indent=2))


if __name__ == "__main__":
    main()
