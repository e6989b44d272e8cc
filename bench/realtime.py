"""What Realtime costs a forecast write: the Broadcast trigger against no announcement and a publication.

    .venv/bin/python bench/realtime.py [--persons 200] [--rounds 30] [--writes 40] [--backfills 2]

Builds a scratch database on the embedded server, migrated like any other, with --persons persons (one user
and one model each), then writes forecasts the way the forecast writer's ``forecast_insert_points`` does:
one statement per person and transaction that inserts the new forecast origins into ``public.forecast`` and
their 12 points into ``public.prediction`` (as the table owner, without the anchors, which the trigger does
not see). Two batch sizes: one origin per statement (a pass after one new reading) and 288 (a day's
backfill). Three ways take turns in every round, in rotating order:

- **broadcast**: the migration's statement trigger ``announce_forecasts`` (one ``realtime.send`` per origin);
- **none**: the trigger disabled (``alter table ... disable trigger``, as the table owner);
- **published**: the trigger disabled and ``public.forecast`` in a publication, what postgres_changes needs.

On a plain PostgreSQL at ``wal_level`` replica no slot decodes the publication, so its write cost is the
table's own; what postgres_changes costs is WAL decoding plus, per change and subscriber, a policy check in
Supabase Realtime, neither of which this server runs. The script measures what it can: wall time and the
database backend's CPU per write (``/proc/<backend pid>/stat``), and the WAL bytes a forecast writes and those
of its broadcast (``EXPLAIN (ANALYZE, WAL)``, this backend's own: the server's WAL is shared with other
databases). Prints a JSON summary; the recorded result is bench/results/realtime.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from glucokit.db.sessions import Connection
from scratch import scratch_database

DAY = datetime(2026, 1, 11, tzinfo=UTC)
MODES = ("broadcast", "none", "published")

LOAD = """
select private.create_forecast_partitions('2026-01-11', '2026-01-11'::date + {days});
insert into auth.users (id) select gen_random_uuid() from generate_series(1, {persons});
insert into public.person (owner_id) select id from auth.users;
insert into public.ml_model (person_id, version, algorithm, data_from, data_to)
select id, '1.0.0', 'ridge', '2026-01-01', '2026-01-10' from public.person;
create publication bench_postgres_changes;
analyze;
"""

# forecast_insert_points' shape: the origins into public.forecast, their 12 points into public.prediction.
WRITE = b"""
with forecasts as (
  insert into public.forecast (
    person_id, owner_id, model_id, generated_at, coverage, disclaimer_version, model_version, data_from, data_to,
    code_version
  )
  select %(person_id)s, %(owner_id)s, %(model_id)s, o, 0.8, 'v1', '1.0.0', '2026-01-01', '2026-01-10', 'bench'
  from generate_series(%(first)s::timestamptz, %(first)s::timestamptz + (%(origins)s - 1) * interval '5 minutes',
    interval '5 minutes') as o
  on conflict (model_id, generated_at) do nothing
  returning id, owner_id, generated_at
), points as (
  insert into public.prediction (
    forecast_id, person_id, owner_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl,
    lower_mg_dl, upper_mg_dl
  )
  select f.id, %(person_id)s, f.owner_id, %(model_id)s, f.generated_at, f.generated_at + make_interval(mins => h),
    h, 120, 100, 140
  from forecasts f
  cross join generate_series(5, 60, 5) as h
  returning 1
)
select count(*) from points
"""

# One broadcast as the trigger sends it, per origin.
SEND = b"""
select realtime.send(
  jsonb_build_object('forecast_id', gen_random_uuid(), 'person_id', %(person_id)s::uuid,
    'model_id', %(model_id)s::uuid, 'generated_at', %(first)s::timestamptz + n * interval '5 minutes'),
  'forecast', 'forecast:' || %(person_id)s, true)
from generate_series(1, %(origins)s) as n
"""


class Origins:
    """Fresh (person, origin) slots: writes never collide with one another."""

    def __init__(self, persons: list[tuple[UUID, UUID, UUID]], day: datetime, step: timedelta) -> None:
        self.persons, self.day, self.step, self.used = persons, day, step, 0

    def next(self, origins: int) -> dict[str, Any]:
        person, owner, model = self.persons[self.used % len(self.persons)]
        first = self.day + (self.used // len(self.persons)) * self.step
        self.used += 1
        return {"person_id": person, "owner_id": owner, "model_id": model, "first": first, "origins": origins}


def _set_mode(conn: Connection, mode: str) -> None:
    trigger = "enable" if mode == "broadcast" else "disable"
    conn.execute(f"alter table public.forecast {trigger} trigger announce_forecasts".encode())
    published = conn.execute(
        b"select count(*) from pg_publication_tables where pubname = 'bench_postgres_changes'"
    ).fetchone()
    if mode == "published" and published and not published[0]:
        conn.execute(b"alter publication bench_postgres_changes add table public.forecast")
    elif mode != "published" and published and published[0]:
        conn.execute(b"alter publication bench_postgres_changes drop table public.forecast")
    conn.commit()


def _backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) the database backend serving this connection has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _writes(conn: Connection, slots: Origins, origins: int, count: int) -> list[float]:
    """Wall seconds per write, each statement its own transaction, commit included."""
    timings = []
    for _ in range(count):
        parameters = slots.next(origins)
        began = time.perf_counter()
        row = conn.execute(WRITE, parameters).fetchone()
        conn.commit()
        timings.append(time.perf_counter() - began)
        assert row
        assert row[0] == 12 * origins
    return timings


def _wal_bytes(conn: Connection, statement: bytes, parameters: dict[str, Any]) -> int:
    plan = conn.execute(b"explain (analyze, wal, format json) " + statement, parameters).fetchone()
    conn.rollback()
    assert plan
    document = plan[0]
    assert isinstance(document, list)
    return int(document[0]["Plan"].get("WAL Bytes", 0))


def _summary(timings: list[float], cpu_s: float, origins: int) -> dict[str, float]:
    return {
        "backend_cpu_us_per_forecast": round(cpu_s / len(timings) / origins * 1e6, 1),
        "median_ms_per_write": round(statistics.median(timings) * 1000, 3),
        "mean_ms_per_write": round(statistics.fmean(timings) * 1000, 3),
        "median_us_per_forecast": round(statistics.median(timings) / origins * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--writes", type=int, default=40, help="one-origin writes per way and round")
    parser.add_argument("--backfills", type=int, default=2, help="288-origin writes per way and round")
    args = parser.parse_args()
    backfill_days = -(-args.rounds * len(MODES) * args.backfills // args.persons)

    with scratch_database() as url, psycopg.connect(url) as conn:
        conn.execute(LOAD.format(persons=args.persons, days=backfill_days + 2).encode())
        conn.commit()
        persons = [
            (p, o, m)
            for p, o, m in conn.execute(
                b"select p.id, p.owner_id, m.id from public.person p join public.ml_model m on m.person_id = p.id"
            )
        ]
        setting = conn.execute(b"show wal_level").fetchone()
        wal_level = str(setting[0]) if setting else "unknown"
        conn.commit()
        incremental = Origins(persons, DAY, timedelta(minutes=5))
        backfill = Origins(persons, DAY + timedelta(days=1), timedelta(days=1))
        backend = conn.info.backend_pid
        timings: dict[tuple[str, int], list[float]] = {(m, n): [] for m in MODES for n in (1, 288)}
        cpu: dict[tuple[str, int], float] = dict.fromkeys(timings, 0.0)
        for mode in MODES:  # warm-up, not recorded
            _set_mode(conn, mode)
            _writes(conn, incremental, 1, 20)
        for round_ in range(args.rounds):
            for mode in MODES[round_ % 3 :] + MODES[: round_ % 3]:
                _set_mode(conn, mode)
                for n, slots, count in ((1, incremental, args.writes), (288, backfill, args.backfills)):
                    began = _backend_cpu(backend)
                    timings[(mode, n)] += _writes(conn, slots, n, count)
                    cpu[(mode, n)] += _backend_cpu(backend) - began
        _set_mode(conn, "none")
        # The least of 5 samples: the first change to a page after a checkpoint also logs the whole page.
        wal = {
            n: {
                "forecast_write": min(_wal_bytes(conn, WRITE, incremental.next(n)) for _ in range(5)),
                "broadcasts": min(_wal_bytes(conn, SEND, incremental.next(n)) for _ in range(5)),
            }
            for n in (1, 288)
        }
        messages = conn.execute(b"select count(*) from realtime.messages").fetchone()
        _set_mode(conn, "broadcast")

    result: dict[str, Any] = {
        "benchmark": "forecast writes with the Realtime Broadcast trigger vs without vs with the table published",
        "command": "bench/realtime.py "
        + " ".join(
            f"--{k} {v}"
            for k, v in (
                ("persons", args.persons),
                ("rounds", args.rounds),
                ("writes", args.writes),
                ("backfills", args.backfills),
            )
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "wal_level": wal_level,
        "broadcast_messages_written": int(str(messages[0])) if messages else 0,
    }
    for n, label in ((1, "one_origin_per_write"), (288, "day_backfill_288_origins_per_write")):
        per_mode = {mode: _summary(timings[(mode, n)], cpu[(mode, n)], n) for mode in MODES}
        result[label] = {
            "writes_per_way": len(timings[("none", n)]),
            **per_mode,
            "broadcast_over_none_median": round(
                per_mode["broadcast"]["median_ms_per_write"] / per_mode["none"]["median_ms_per_write"], 3
            ),
            "published_over_none_median": round(
                per_mode["published"]["median_ms_per_write"] / per_mode["none"]["median_ms_per_write"], 3
            ),
            "broadcast_over_none_backend_cpu": round(
                per_mode["broadcast"]["backend_cpu_us_per_forecast"] / per_mode["none"]["backend_cpu_us_per_forecast"],
                3,
            ),
            "wal_bytes_forecast_write": wal[n]["forecast_write"],
            "wal_bytes_broadcasts": wal[n]["broadcasts"],
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
