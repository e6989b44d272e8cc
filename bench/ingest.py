"""Ingest throughput: FHIR readings per second into the database, validation included.

    .venv/bin/python bench/ingest.py [--persons 10] [--readings 100000] [--writers 2]

Builds a scratch database on the embedded server, migrated like any other, with
--persons persons (one user each), writes each person's --readings CGM readings
(5 minutes apart, a year's worth at the default) as an NDJSON file, and ingests
the files one after the other exactly as `glucokit ingest` does: as the owner,
under row-level security, parsed and validated, staged with COPY and merged in
batches over --writers connections. Then one person's readings again as one
FHIR Bundle, and the same NDJSON once more (every reading already stored).

To show where the time goes it also measures, on one file, the client's work
alone (parse + validate) and the database's alone (the staging COPY, and the
INSERT from the staged rows into public.observation, also once without the
foreign key to person, which the scratch database can afford to drop). Prints a JSON summary; the recorded result is
bench/results/ingest.json. Target: 50,000 readings/s on 2 cores (bulk path).
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
from uuid import UUID, uuid4

import orjson
import psycopg

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, as_user
from glucokit.fhir import resources as fhir
from glucokit.fhir.ingest import STAGE_TYPES, Ingest, IngestReport
from glucokit.fhir.validation import ObservationValidator
from glucokit.units import CGM_CODE, KINDS, LOINC
from scratch import scratch_database

CGM = KINDS[(LOINC, CGM_CODE)]


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


def _ingest(connections: list[Connection], owner: tuple[UUID, UUID], path: Path) -> tuple[IngestReport, float]:
    began = time.perf_counter()
    report = Ingest(connections, user_id=owner[0], person_id=owner[1]).path(path)
    return report, time.perf_counter() - began


def _client_only(path: Path, now: datetime) -> float:
    """Microseconds per reading to parse and validate (no database)."""
    validator = ObservationValidator("R4B", now)
    lines = path.read_bytes().splitlines()
    began = time.perf_counter()
    for line in lines:
        validator.validate(orjson.loads(line))
    return (time.perf_counter() - began) / len(lines) * 1e6


def _database_only(conn: Connection, owner: tuple[UUID, UUID], path: Path, now: datetime) -> dict[str, float]:
    """Microseconds per reading for the staging COPY and for the INSERT into public.observation."""
    validator = ObservationValidator("R4B", now)
    rows = []
    for line in path.read_bytes().splitlines():
        reading = validator.validate(orjson.loads(line))
        assert not isinstance(reading, list)
        rows.append((*reading, line.decode()))
    with as_user(conn, owner[0]):
        conn.execute(query("ingest_create_stage"))
        began = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(query("ingest_copy_stage")) as copy:
            copy.set_types(STAGE_TYPES)
            for row in rows:
                copy.write_row(row)
        staged = time.perf_counter()
        conn.execute(query("ingest_insert_stage"), {"person_id": owner[1]})
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
        owners = _owners(connections[0], args.persons + 3)
        with tempfile.TemporaryDirectory() as scratch:
            ndjson, bundle = Path(scratch) / "readings.ndjson", Path(scratch) / "readings.json"
            _write_readings(ndjson, args.readings, end, bundle=False)
            _write_readings(bundle, args.readings, end, bundle=True)
            results = [_ingest(connections, owner, ndjson) for owner in owners[: args.persons]]
            peak_rss_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            again, again_s = _ingest(connections, owners[0], ndjson)
            as_bundle, bundle_s = _ingest(connections, owners[args.persons], bundle)
            client_us = _client_only(ndjson, now)
            yardstick_us = _fhir_resources_us(ndjson)
            database_us = _database_only(connections[0], owners[args.persons + 1], ndjson, now)
            # What the per-row foreign key check on person costs: the same INSERT without it (scratch database).
            connections[0].execute("alter table public.observation drop constraint observation_person_id_fkey")
            connections[0].commit()
            without_fk = _database_only(connections[0], owners[args.persons + 2], ndjson, now)["insert_us"]
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
    print(
        json.dumps(
            {
                "benchmark": "FHIR CGM readings into public.observation as the owner, under RLS, validation included",
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "writers": args.writers,
                "ndjson": {
                    "readings": readings,
                    "persons": args.persons,
                    "seconds": round(seconds, 1),
                    "readings_per_s": round(readings / seconds),
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
                    "parse_and_validate": round(client_us, 1),
                    **database_us,
                    "insert_without_person_foreign_key_us": without_fk,
                },
                "peak_rss_mib_while_ingesting": peak_rss_mib,
                # fhir.resources' own speed on this machine: a yardstick for comparing machines.
                "yardstick_fhir_resources_validate_us": round(yardstick_us, 1),
                "target_readings_per_s": 50_000,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
