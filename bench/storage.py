"""Storage per stored row, measured on demo-like data: what each growing table group costs on disk.

    .venv/bin/python bench/storage.py > bench/results/storage.json

Builds a scratch database on the embedded server, migrated like any other, and measures one table group
per function below; each returns its figures under one key of the JSON it prints (``MEASURES``). Sizes
are PostgreSQL's own: ``pg_column_size`` of rows and columns, ``pg_relation_size`` and
``pg_total_relation_size`` (heap, TOAST and indexes) summed over a partitioned table's partitions.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from uuid import UUID, uuid4

import orjson
import psycopg
from psycopg.types.json import Jsonb

from glucokit.db.sessions import Connection
from glucokit.fhir.ingest import STAGE_TYPES, Ingest
from glucokit.fhir.stored import needs_resource
from glucokit.fhir.validation import ObservationValidator, Reading
from scratch import scratch_database

DEMO_DATA: Final = Path(__file__).resolve().parent.parent / "data" / "simulated"
OBSERVATION_COPY: Final = (
    "copy public.observation (person_id, status, category, code_system, code, value, unit, original_value, "
    "original_unit, effective_at, issued_at, device, source_system, source_id, resource) from stdin (format binary)"
)
# The observation columns that repeat the same few values on every row of a source.
_REPEATED_COLUMNS: Final = ("status", "category", "code_system", "code", "unit", "device", "source_system", "source_id")


def _owners(conn: Connection, count: int) -> list[tuple[UUID, UUID]]:
    owners = [(uuid4(), uuid4()) for _ in range(count)]
    for user, person in owners:
        conn.execute("insert into auth.users (id, aud, role) values (%s, 'authenticated', 'authenticated')", (user,))
        conn.execute("insert into public.person (id, owner_id) values (%s, %s)", (person, user))
    conn.commit()
    return owners


def _table_bytes(conn: Connection, table: str) -> dict[str, int]:
    """Heap, TOAST and index bytes of ``table``, summed over its partitions when it has any."""
    row: tuple[Any, ...] | None = conn.execute(
        "select coalesce(sum(pg_relation_size(relid)), 0)::bigint,"
        " coalesce(sum(pg_table_size(relid) - pg_relation_size(relid)), 0)::bigint,"
        " coalesce(sum(pg_indexes_size(relid)), 0)::bigint,"
        " coalesce(sum(pg_total_relation_size(relid)), 0)::bigint"
        " from pg_partition_tree(%s::regclass)",
        (table,),
    ).fetchone()
    assert row is not None
    heap, toast, indexes, total = row
    return {"heap": heap, "toast_and_maps": toast, "indexes": indexes, "total": total}


def _observation_figures(conn: Connection) -> dict[str, Any]:
    figures: tuple[Any, ...] | None = conn.execute(
        "select count(*), count(resource), avg(pg_column_size(o.*)), coalesce(avg(pg_column_size(resource)), 0)"
        " from public.observation o"
    ).fetchone()
    assert figures is not None
    rows, kept, row_bytes, resource_bytes = figures
    sizes = _table_bytes(conn, "public.observation")
    indexes: list[tuple[Any, ...]] = conn.execute(
        "select i.indexrelid::regclass::text,"
        " (select sum(pg_relation_size(relid)) from pg_partition_tree(i.indexrelid))"
        " from pg_index i where i.indrelid = 'public.observation'::regclass order by 1"
    ).fetchall()
    return {
        "rows": rows,
        "rows_with_resource": kept,
        "row_bytes_per_reading": round(float(row_bytes), 1),
        "resource_bytes_per_reading": round(float(resource_bytes) * kept / rows, 1),
        "resource_bytes_per_kept_resource": round(float(resource_bytes), 1),
        "bytes_per_reading": {part: round(size / rows, 1) for part, size in sizes.items()},
        "index_bytes_per_reading": {str(name): round(float(size) / rows, 1) for name, size in indexes},
    }


def _demo_readings(now: datetime) -> list[list[tuple[Reading, bytes]]]:
    """The demo persons' readings (data/simulated), validated: per person, each reading's columns and JSON."""
    validator = ObservationValidator("R4B", now)
    persons = []
    for path in sorted(DEMO_DATA.glob("*.json.gz")):
        readings = []
        for entry in orjson.loads(gzip.decompress(path.read_bytes()))["entry"]:
            reading = validator.validate(entry["resource"])
            assert not isinstance(reading, list), reading
            readings.append((reading, orjson.dumps(entry["resource"])))
        persons.append(readings)
    return persons


def _copy(
    conn: Connection, owners: list[tuple[UUID, UUID]], persons: list[list[tuple[Reading, bytes]]], *, every: bool
) -> None:
    """One COPY of every person's readings, with every resource or only those ingest keeps."""
    with conn.cursor() as cursor, cursor.copy(OBSERVATION_COPY) as copy:
        copy.set_types(["uuid", *STAGE_TYPES[:-1], "jsonb"])
        for (_, person), readings in zip(owners, persons, strict=True):
            for reading, text in readings:
                keep = every or needs_resource(reading, text)
                copy.write_row((person, *reading, Jsonb(text.decode(), dumps=str) if keep else None))
    conn.commit()


def observation_storage(url: str) -> dict[str, Any]:
    """Bytes per stored reading of public.observation, on the demo persons' 14 days of simulated data.

    ``before``: every row keeps its FHIR resource, as ingest stored it until now; ``after``: the resource only
    where the columns do not give it back (glucokit.fhir.stored). Both are the same readings written by one
    plain COPY as the table owner, so only the resource column differs; ``after_real_ingest`` is the same data
    through `glucokit ingest`'s path (as the owner, under RLS, batched), which must store the same shape."""
    now = datetime.now(UTC)
    persons = _demo_readings(now)
    with psycopg.connect(url) as conn:
        owners = _owners(conn, len(persons))
        figures: dict[str, Any] = {"persons": len(persons), "days_per_person": 14}
        for label, every_resource in (("before", True), ("after", False)):
            _copy(conn, owners, persons, every=every_resource)
            figures[label] = _observation_figures(conn)
            if label == "after":
                columns = ", ".join(f"avg(pg_column_size({name}))" for name in _REPEATED_COLUMNS)
                averages: tuple[Any, ...] = conn.execute(f"select {columns} from public.observation").fetchone() or ()  # noqa: S608
                figures["after"]["repeated_column_bytes_per_reading"] = {
                    name: round(float(size or 0), 1) for name, size in zip(_REPEATED_COLUMNS, averages, strict=True)
                }
            conn.execute("truncate public.observation cascade")
            conn.commit()
        for (user, person), path in zip(owners, sorted(DEMO_DATA.glob("*.json.gz")), strict=True):
            Ingest([conn], user_id=user, person_id=person).path(path)
        figures["after_real_ingest"] = _observation_figures(conn)
    before, after = figures["before"], figures["after"]
    figures["saved"] = {
        "row_bytes_per_reading": round(before["row_bytes_per_reading"] - after["row_bytes_per_reading"], 1),
        "total_bytes_per_reading": round(before["bytes_per_reading"]["total"] - after["bytes_per_reading"]["total"], 1),
        "total_ratio_before_to_after": round(
            before["bytes_per_reading"]["total"] / after["bytes_per_reading"]["total"], 2
        ),
    }
    return figures


# The forecast tables as they were before the forecast origin (supabase/migrations/20261122120400_prediction.sql,
# 20261122120900, 20261122121100: the same columns, keys and indexes; foreign keys and policies cost no bytes).
_FORECASTS_BEFORE: Final = """
create schema forecast_before;
create table forecast_before.prediction (
  id uuid primary key default gen_random_uuid(), person_id uuid not null, model_id uuid not null,
  generated_at timestamptz not null, target_at timestamptz not null, horizon_minutes smallint not null,
  value_mg_dl real not null, lower_mg_dl real not null, upper_mg_dl real not null, coverage real not null,
  disclaimer_version text not null, model_version text not null, training_run_id uuid, data_from timestamptz not null,
  data_to timestamptz not null, code_version text not null, created_at timestamptz not null default now(),
  unique (model_id, generated_at, horizon_minutes), unique (id, person_id));
create index on forecast_before.prediction (person_id, generated_at desc);
create index on forecast_before.prediction (model_id, person_id);
create index on forecast_before.prediction (training_run_id, person_id);
create index on forecast_before.prediction (model_id, generated_at desc);
create index on forecast_before.prediction (person_id, target_at);
create table forecast_before.prediction_source (
  prediction_id uuid not null, person_id uuid not null, observation_id uuid not null,
  observation_effective_at timestamptz not null, role public.prediction_source_role not null default 'input_window',
  primary key (prediction_id, observation_id));
create index on forecast_before.prediction_source (prediction_id, person_id);
create index on forecast_before.prediction_source (person_id);
create index on forecast_before.prediction_source (observation_id, observation_effective_at);
"""

# A day of forecasts (2026-10-07, FORECAST_DAY) as the writer makes them: one from every CGM reading of the day,
# 12 points (5-60 min), anchored to the glucose readings of the input hour and the carbohydrate and insulin records
# of the 4-hour event look-back (glucokit.forecast.windows: 57.5 and 237.5 minutes back), with the writer's
# provenance.
FORECAST_DAY: Final = datetime(2026, 10, 7, tzinfo=UTC)
_FORECAST_DAY: Final = """
create temporary table day_forecast as
select gen_random_uuid() as id, o.person_id, pe.owner_id, m.id as model_id, o.effective_at as generated_at
from public.observation o
join public.person pe on pe.id = o.person_id
join public.ml_model m on m.person_id = o.person_id
where o.code = '99504-3' and o.effective_at >= timestamptz '2026-10-07'
  and o.effective_at < timestamptz '2026-10-07' + interval '1 day';
create temporary table day_anchor as
select f.id as forecast_id, o.id as observation_id, o.effective_at,
  case when o.code = '99504-3' then 'input_window' else 'covariate' end::public.prediction_source_role as role
from day_forecast f
join public.observation o on o.person_id = f.person_id and o.effective_at <= f.generated_at
  and o.effective_at > f.generated_at - case when o.code = '99504-3' then interval '57.5 minutes'
    else interval '237.5 minutes' end;
insert into public.forecast (id, person_id, owner_id, model_id, generated_at, coverage, disclaimer_version,
  model_version, data_from, data_to, code_version)
select id, person_id, owner_id, model_id, generated_at, 0.8, 'v1', '1.0.0',
  timestamptz '2026-10-07' - interval '6 days', timestamptz '2026-10-07',
  '0.1.0'
from day_forecast;
insert into public.prediction (forecast_id, person_id, owner_id, model_id, generated_at, target_at,
  horizon_minutes, value_mg_dl, lower_mg_dl, upper_mg_dl)
select f.id, f.person_id, f.owner_id, f.model_id, f.generated_at, f.generated_at + make_interval(mins => h), h,
  120 + h / 5.0, 100, 140 + h
from day_forecast f cross join generate_series(5, 60, 5) as h;
insert into public.prediction_source (forecast_id, person_id, owner_id, model_id, generated_at, observation_id,
  observation_effective_at, role)
select f.id, f.person_id, f.owner_id, f.model_id, f.generated_at, a.observation_id, a.effective_at, a.role
from day_forecast f join day_anchor a on a.forecast_id = f.id;
insert into forecast_before.prediction (person_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl,
  lower_mg_dl, upper_mg_dl, coverage, disclaimer_version, model_version, data_from, data_to, code_version)
select f.person_id, f.model_id, f.generated_at, f.generated_at + make_interval(mins => h), h, 120 + h / 5.0, 100,
  140 + h, 0.8, 'v1', '1.0.0', timestamptz '2026-10-07' - interval '6 days', timestamptz '2026-10-07', '0.1.0'
from day_forecast f cross join generate_series(5, 60, 5) as h;
insert into forecast_before.prediction_source (prediction_id, person_id, observation_id, observation_effective_at,
  role)
select p.id, p.person_id, a.observation_id, a.effective_at, a.role
from forecast_before.prediction p
join day_forecast f on f.model_id = p.model_id and f.generated_at = p.generated_at
join day_anchor a on a.forecast_id = f.id;
analyze;
"""


def _plain_table_bytes(conn: Connection, table: str) -> dict[str, int]:
    """Heap, TOAST and index bytes of ``table``, a table without partitions (``_table_bytes`` sums partitions)."""
    row: tuple[Any, ...] | None = conn.execute(
        "select pg_relation_size(%(t)s::regclass), pg_table_size(%(t)s::regclass) - pg_relation_size(%(t)s::regclass),"
        " pg_indexes_size(%(t)s::regclass), pg_total_relation_size(%(t)s::regclass)",
        {"t": table},
    ).fetchone()
    assert row is not None
    heap, toast, indexes, total = row
    return {"heap": heap, "toast_and_maps": toast, "indexes": indexes, "total": total}


def _rows_and_bytes(conn: Connection, tables: list[str], person_days: int) -> dict[str, Any]:
    """Rows, bytes per row (pg_column_size) and bytes on disk (heap, TOAST, indexes) per person-day of each table."""
    figures: dict[str, Any] = {}
    for table in tables:
        row: tuple[Any, ...] | None = conn.execute(
            f"select count(*), coalesce(avg(pg_column_size(t.*)), 0) from {table} t"  # noqa: S608
        ).fetchone()
        assert row is not None
        rows, row_bytes = row
        sizes = _table_bytes(conn, table) if table.startswith("public.") else _plain_table_bytes(conn, table)
        figures[table] = {
            "rows_per_person_day": round(rows / person_days, 1),
            "row_bytes": round(float(row_bytes), 1),
            "bytes_per_person_day": {part: round(size / person_days) for part, size in sizes.items()},
        }
    figures["total"] = {
        "rows_per_person_day": round(sum(figures[table]["rows_per_person_day"] for table in tables), 1),
        "bytes_per_person_day": sum(figures[table]["bytes_per_person_day"]["total"] for table in tables),
    }
    return figures


def forecast_storage(url: str) -> dict[str, Any]:
    """Rows and bytes per person-day of forecasts and their source anchors, before and after the forecast origin.

    The demo persons' readings are ingested for real; one day of forecasts (one from every CGM reading, as the
    forecast job writes them) is written twice from the same origins and anchors: into the tables as they are
    (``after``: public.forecast, prediction and prediction_source, in their day partition) and into copies of
    the tables as they were (``before``: provenance on every point, anchors per point). ``input_window_as_range``
    estimates what storing the glucose input window as a range (from, to, count, digest) would save on top."""
    day = FORECAST_DAY
    with psycopg.connect(url) as conn:
        owners = _owners(conn, len(sorted(DEMO_DATA.glob("*.json.gz"))))
        for _, person in owners:
            conn.execute(
                "insert into public.ml_model (person_id, version, algorithm, data_from, data_to)"
                " values (%s, '1.0.0', 'ridge', %s, %s)",
                (person, day.replace(day=1), day),
            )
        conn.commit()
        with psycopg.connect(url) as writer:  # ingest takes the owner's role in its transactions
            for (user, person), path in zip(owners, sorted(DEMO_DATA.glob("*.json.gz")), strict=True):
                Ingest([writer], user_id=user, person_id=person).path(path)
        conn.execute("select private.create_forecast_partitions(%s::date, %s::date + 1)", (day, day))
        conn.execute(_FORECASTS_BEFORE)
        conn.execute(_FORECAST_DAY)
        conn.commit()
        person_days = len(owners)
        before = _rows_and_bytes(conn, ["forecast_before.prediction", "forecast_before.prediction_source"], person_days)
        after = _rows_and_bytes(conn, ["public.forecast", "public.prediction", "public.prediction_source"], person_days)
        window: tuple[Any, ...] | None = conn.execute(
            "select count(*) filter (where role = 'input_window'), count(*) from public.prediction_source"
        ).fetchone()
        assert window is not None
        input_rows, anchor_rows = window
        conn.execute("drop schema forecast_before cascade")
        conn.commit()
    anchors = after["public.prediction_source"]
    per_anchor = anchors["bytes_per_person_day"]["total"] / max(anchors["rows_per_person_day"], 1)
    forecasts_per_day = after["public.forecast"]["rows_per_person_day"]
    # A range on the forecast row: two timestamps, a smallint count and a 32-byte digest (8 + 8 + 2 + 33 bytes).
    range_bytes = 51 * forecasts_per_day
    input_bytes = per_anchor * input_rows / person_days
    return {
        "persons": person_days,
        "forecasts_per_person_day": forecasts_per_day,
        "before": before,
        "after": after,
        "saved": {
            "rows_ratio_before_to_after": round(
                before["total"]["rows_per_person_day"] / after["total"]["rows_per_person_day"], 1
            ),
            "bytes_ratio_before_to_after": round(
                before["total"]["bytes_per_person_day"] / after["total"]["bytes_per_person_day"], 1
            ),
        },
        "input_window_as_range": {
            "input_window_anchor_rows_per_person_day": round(input_rows / person_days, 1),
            "covariate_anchor_rows_per_person_day": round((anchor_rows - input_rows) / person_days, 1),
            "input_window_anchor_bytes_per_person_day": round(input_bytes),
            "range_columns_bytes_per_person_day": round(range_bytes),
            "would_save_bytes_per_person_day": round(input_bytes - range_bytes),
            "would_save_share_of_after": round((input_bytes - range_bytes) / after["total"]["bytes_per_person_day"], 3),
        },
    }


# One function per measured table group, each under its key of the output.
MEASURES: Final[dict[str, Callable[[str], dict[str, Any]]]] = {
    "observation": observation_storage,
    "forecasts": forecast_storage,
}


def main() -> None:
    results: dict[str, Any] = {
        "benchmark": "bytes on disk per stored row of the tables that grow per reading, on demo-like data",
        "command": ".venv/bin/python bench/storage.py > bench/results/storage.json",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    with scratch_database() as url:
        for key, measure in MEASURES.items():
            results[key] = measure(url)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
