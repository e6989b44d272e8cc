"""Ingest throughput: FHIR readings per second into the database, validation included, beside the database's limit.

    .venv/bin/python bench/ingest.py [--persons 10] [--readings 100000] [--writers 2]

Builds a scratch database on the embedded server, migrated like any other, with
--persons persons for the real path and as many for the limit (one user each),
writes --readings CGM readings (5 minutes apart) as one NDJSON file, and then,
person by person, alternating so that both see the same machine:
- the limit: a plain binary COPY of the same rows (validated beforehand, outside
  the timing) straight into public.observation, as the table owner, in one
  transaction: the same partitioned, indexed, constrained table with its
  trigger, without row-level security, validation or idempotency, and the same
  shape of row (the resource null where the real path stores none);
- the real path, exactly as `glucokit ingest` runs it: as the owner, under
  row-level security, parsed and validated, staged with COPY and merged in
  batches over --writers connections, with quarantine and idempotency.
The ratio of the two is the target (at most 1.5), beside 50,000 readings/s.
Then one person's readings again as one FHIR Bundle, and the same NDJSON once
more (every reading already stored).

To show where the time goes it records the CPU per reading of this process and
of the writers' backends during the real path, and measures, on one file, the client's work
alone (parse + validate, the fast path and the full one) and the database's
alone (the staging COPY, and the INSERT from the staged rows into
public.observation, also once without the foreign key to person, which the
scratch database can afford to drop). Prints a JSON summary; the recorded
result is bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final
from uuid import UUID, uuid4

import orjson
import psycopg
from psycopg.types.json import Jsonb

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, as_user
from glucokit.fhir import resources as fhir
from glucokit.fhir.ingest import STAGE_TYPES, Ingest, IngestReport
from glucokit.fhir.stored import Templates, needs_resource
from glucokit.fhir.validation import ObservationValidator
from glucokit.units import CGM_CODE, KINDS, LOINC
from scratch import scratch_database

CGM = KINDS[(LOINC, CGM_CODE)]
LIMIT_COPY: Final = (
    "copy public.observation (person_id, status, category, code_system, code, value, unit, original_value, "
    "original_unit, effective_at, issued_at, device, source_system, source_id, resource) from stdin (format binary)"
)


def _write_readings(path: Path, count: int, end: datetime, *, bundle: bool) -> None:
    """``count`` CGM readings ending at ``end``, a smooth daily curve, as NDJSON or as one Bundle."""
    start = end - timedelta(minutes=5 * count)
    with path.open("wb") as out:
        if bundle:
            out.write(b'{"resourceType":"Bundle","type":"collection","entry":[')
        for n in range(count):
            moment = start + timedelta(minutes=5 * n)
            value = Decimal(110 + (n * 7) % 90)
            resource = fhir.observation(
                CGM, value, moment, source_system="urn:bench:cgm", source_id=f"{n}", device="Bench CGM"
            )
            if bundle:
                out.write((b"," if n else b"") + orjson.dumps({"resource": resource}))
            else:
                out.write(orjson.dumps(resource) + b"\n")
        if bundle:
            out.write(b"]}")


def _owners(conn: Connection, persons: int) -> list[tuple[UUID, UUID]]:
    owners = [(uuid4(), uuid4()) for _ in range(persons)]
    for user, person in owners:
        conn.execute("insert into auth.users (id, aud, role) values (%s, 'authenticated', 'authenticated')", (user,))
        conn.execute("insert into public.person (id, owner_id) values (%s, %s)", (person, user))
    conn.commit()
    return owners


def _cpu_s(pid: int) -> float:
    """CPU seconds (user and system) a process has used so far, from /proc (the embedded server runs here)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ingest(
    connections: list[Connection], owner: tuple[UUID, UUID], path: Path, cpu: dict[str, float] | None = None
) -> tuple[IngestReport, float]:
    """One ingest and its wall time; ``cpu`` adds the CPU seconds of this process and of the writers' backends."""
    backends = [conn.info.backend_pid for conn in connections]
    client, database = _own_cpu_s(), sum(map(_cpu_s, backends))
    began = time.perf_counter()
    report = Ingest(connections, user_id=owner[0], person_id=owner[1]).path(path)
    elapsed = time.perf_counter() - began
    if cpu is not None:
        cpu["client"] = cpu.get("client", 0.0) + _own_cpu_s() - client
        cpu["backends"] = cpu.get("backends", 0.0) + sum(map(_cpu_s, backends)) - database
    return report, elapsed


def _client_only(path: Path, now: datetime) -> dict[str, float]:
    """Microseconds per reading to parse and validate (no database): the way ingest reads an NDJSON line of a
    source it has seen (its template filled in: validated and the resource settled at once), the fast path
    for the compact shape otherwise (msgspec), and the full one (orjson, then the Python checks of the compact
    shape and the meaning); and to decide whether to store the resource after the fast path (rebuild it from
    the columns and compare)."""
    validator = ObservationValidator("R4B", now)
    lines = path.read_bytes().splitlines()
    templates = Templates(validator)
    first = validator.validate_json(lines[0])
    assert first is not None
    templates.learn(first, lines[0])
    began_templates = time.perf_counter()
    for line in lines:
        assert templates.read(line) is not None
    templated = time.perf_counter()
    readings = []
    began = time.perf_counter()
    for line in lines:
        reading = validator.validate_json(line.decode())
        assert reading is not None
        readings.append(reading)
    fast = time.perf_counter()
    for line in lines:
        validator.validate(orjson.loads(line))
    full = time.perf_counter()
    for reading, line in zip(readings, lines, strict=True):
        needs_resource(reading, line)
    decided = time.perf_counter()
    return {
        "read_from_the_source_template": round((templated - began_templates) / len(lines) * 1e6, 1),
        "parse_and_validate_fast_path": round((fast - began) / len(lines) * 1e6, 1),
        "parse_and_validate_full_path": round((full - fast) / len(lines) * 1e6, 1),
        "rebuild_and_compare_resource": round((decided - full) / len(lines) * 1e6, 1),
    }


def _copy_rows(path: Path, now: datetime) -> list[tuple[object, ...]]:
    """The file's readings as the limit's COPY writes them: validated, in the table's column order, with the
    resource where the real path stores it (null where the columns give it back)."""
    validator = ObservationValidator("R4B", now)
    rows: list[tuple[object, ...]] = []
    for line in path.read_bytes().splitlines():
        reading = validator.validate(orjson.loads(line))
        assert not isinstance(reading, list)
        rows.append((*reading, Jsonb(line.decode(), dumps=str) if needs_resource(reading, line) else None))
    return rows


def _limit(conn: Connection, person_id: UUID, rows: list[tuple[object, ...]]) -> float:
    """Seconds for a plain binary COPY of ``rows`` into public.observation as the table owner, one transaction."""
    began = time.perf_counter()
    with conn.cursor() as cursor, cursor.copy(LIMIT_COPY) as copy:
        copy.set_types(["uuid", *STAGE_TYPES[:-1], "jsonb"])
        for row in rows:
            copy.write_row((person_id, *row))
    conn.commit()
    return time.perf_counter() - began


def _database_only(conn: Connection, owner: tuple[UUID, UUID], path: Path, now: datetime) -> dict[str, float]:
    """Microseconds per reading for the staging COPY and for the INSERT into public.observation."""
    validator = ObservationValidator("R4B", now)
    rows = []
    for line in path.read_bytes().splitlines():
        reading = validator.validate(orjson.loads(line))
        assert not isinstance(reading, list)
        rows.append((*reading, line.decode() if needs_resource(reading, line) else None))
    with as_user(conn, owner[0]):
        conn.execute(query("ingest_create_stage"))
        began = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(query("ingest_copy_stage")) as copy:
            copy.set_types(STAGE_TYPES)
            for row in rows:
                copy.write_row(row)
        staged = time.perf_counter()
        conn.execute(query("ingest_insert_stage_new"), {"person_id": owner[1]})  # the person has none yet
        inserted = time.perf_counter()
    return {
        "stage_copy_us": round((staged - began) / len(rows) * 1e6, 1),
        "insert_us": round((inserted - staged) / len(rows) * 1e6, 1),
    }


def _fhir_resources_us(path: Path) -> float:
    """Microseconds for fhir.resources to validate one reading: a yardstick for comparing machines."""
    from fhir.resources.R4B.observation import Observation  # noqa: PLC0415

    resources = [orjson.loads(line) for line in path.read_bytes().splitlines()[:2000]]
    began = time.perf_counter()
    for item in resources:
        Observation.model_validate(item)
    return (time.perf_counter() - began) / len(resources) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=10)
    parser.add_argument("--readings", type=int, default=100_000, help="per person")
    parser.add_argument("--writers", type=int, default=2)
    args = parser.parse_args()

    now = datetime.now(UTC)
    end = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    with scratch_database() as url:
        connections = [psycopg.connect(url) for _ in range(args.writers)]
        owners = _owners(connections[0], 2 * args.persons + 3)
        limit_owners, real_owners, extra = (
            owners[: args.persons],
            owners[args.persons : 2 * args.persons],
            owners[2 * args.persons :],
        )
        copier = connections[0]
        as_owner = copier.execute(
            "select current_user = pg_get_userbyid(relowner) from pg_class where oid = 'public.observation'::regclass"
        ).fetchone()
        copier.commit()
        with tempfile.TemporaryDirectory() as scratch:
            ndjson, bundle = Path(scratch) / "readings.ndjson", Path(scratch) / "readings.json"
            _write_readings(ndjson, args.readings, end, bundle=False)
            _write_readings(bundle, args.readings, end, bundle=True)
            rows = _copy_rows(ndjson, now)
            limit_s: list[float] = []
            results: list[tuple[IngestReport, float]] = []
            cpu: dict[str, float] = {}
            # Side by side: the limit and the real path take turns, person by person.
            for limit_owner, real_owner in zip(limit_owners, real_owners, strict=True):
                limit_s.append(_limit(copier, limit_owner[1], rows))
                results.append(_ingest(connections, real_owner, ndjson, cpu))
            peak_rss_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            again, again_s = _ingest(connections, real_owners[0], ndjson)
            as_bundle, bundle_s = _ingest(connections, extra[0], bundle)
            client_us = _client_only(ndjson, now)
            yardstick_us = _fhir_resources_us(ndjson)
            database_us = _database_only(connections[0], extra[1], ndjson, now)
            # What the per-row foreign key check on person costs: the same INSERT without it (scratch database).
            connections[0].execute("alter table public.observation drop constraint observation_person_id_fkey")
            connections[0].commit()
            without_fk = _database_only(connections[0], extra[2], ndjson, now)["insert_us"]
            sizes = {
                "ndjson_mib": round(ndjson.stat().st_size / 2**20, 1),
                "bundle_mib": round(bundle.stat().st_size / 2**20, 1),
            }
        for conn in connections:
            conn.close()

    readings = sum(report.inserted for report, _ in results)
    seconds = sum(elapsed for _, elapsed in results)
    assert readings == args.persons * args.readings
    assert all(report.rejected == 0 for report, _ in results)
    limit_rate = len(rows) * args.persons / sum(limit_s)
    real_rate = readings / seconds
    pairs = [
        len(rows) / limit / (report.inserted / real) for limit, (report, real) in zip(limit_s, results, strict=True)
    ]
    print(
        json.dumps(
            {
                "benchmark": "FHIR CGM readings into public.observation as the owner, under RLS, validation included, "
                "beside a plain COPY of the same rows as the table owner",
                "command": f".venv/bin/python bench/ingest.py --persons {args.persons} --readings {args.readings} "
                f"--writers {args.writers}",
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "writers": args.writers,
                "limit_plain_copy_as_table_owner": {
                    "readings": len(rows) * args.persons,
                    "persons": args.persons,
                    "connections": 1,
                    "as_table_owner": bool(as_owner and as_owner[0]),
                    "seconds": round(sum(limit_s), 1),
                    "readings_per_s": round(limit_rate),
                },
                "ndjson": {
                    "readings": readings,
                    "persons": args.persons,
                    "seconds": round(seconds, 1),
                    "readings_per_s": round(real_rate),
                },
                "ratio_limit_to_real_path": round(limit_rate / real_rate, 2),
                # Where the real path's time goes: CPU per reading of this process (validation, batching, the
                # COPY's encoding) and of the writers' backends, beside the wall time per reading.
                "real_path_per_reading_us": {
                    "wall": round(seconds / readings * 1e6, 1),
                    "client_cpu": round(cpu["client"] / readings * 1e6, 1),
                    "backends_cpu": round(cpu["backends"] / readings * 1e6, 1),
                },
                "ratio_per_person_pair": {
                    "min": round(min(pairs), 2),
                    "median": round(sorted(pairs)[len(pairs) // 2], 2),
                    "max": round(max(pairs), 2),
                },
                "bundle_one_person": {
                    "readings": as_bundle.inserted,
                    "readings_per_s": round(as_bundle.inserted / bundle_s),
                },
                "ndjson_again_all_unchanged": {
                    "readings": again.unchanged,
                    "readings_per_s": round(again.unchanged / again_s),
                },
                "files": sizes,
                "per_reading_us": {
                    **client_us,
                    **database_us,
                    "insert_without_person_foreign_key_us": without_fk,
                },
                "peak_rss_mib_while_ingesting": peak_rss_mib,
                # fhir.resources' own speed on this machine: a yardstick for comparing machines.
                "yardstick_fhir_resources_validate_us": round(yardstick_us, 1),
                "targets": {
                    "ratio_at_most": 1.5,
                    "ratio_met": limit_rate / real_rate <= 1.5,
                    "readings_per_s_at_least": 50_000,
                    "readings_per_s_met": real_rate >= 50_000,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
