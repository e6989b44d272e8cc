"""Ingest against the real database: valid entries kept, every rejection exact and quarantined, idempotent."""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg.types.json import Jsonb

from fhir_samples import SOURCE, START, bundle, carbs, cgm, changed, insulin
from glucokit.db.sessions import Connection
from glucokit.errors import GlucokitError
from glucokit.fhir.ingest import Ingest, IngestReport, Limits, _Document, _ndjson_entries, _Writers
from glucokit.units import MG_DL, MMOL_L
from owners import Owner, ingest, quarantined, rows


def only_rejection(report: IngestReport) -> tuple[str, str, str]:
    (rejection,) = report.rejections
    (problem,) = rejection.problems
    return rejection.position, problem.field, problem.reason


# --- Every bad-input case: the exact error, the valid entries kept, the rejected one quarantined ------

MIX_UP_TO_MMOL = (
    "99504-3 (Glucose [Mass/volume] in Interstitial fluid) is reported in mg/dL, got mmol/L: "
    "a mg/dL-mmol/L mix-up? Readings in mmol/L use 105272-9 or 14745-4 or 15074-8"
)
BAD_ENTRIES: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown code": (
        changed(cgm(1), code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}),
        "code",
        "unknown code (http://loinc.org|8867-4); glucokit keeps 99504-3 (Glucose [Mass/volume] in Interstitial "
        "fluid), 105272-9 (Glucose [Moles/volume] in Interstitial fluid), 14745-4 (Glucose [Moles/volume] in Body "
        "fluid), 15074-8 (Glucose [Moles/volume] in Blood), 2339-0 (Glucose [Mass/volume] in Blood), 9059-7 "
        "(Carbohydrate intake Estimated), 67866001 (Insulin (substance))",
    ),
    "missing unit": (
        changed(cgm(1), valueQuantity={"value": 120}),
        "valueQuantity.code",
        "missing unit: 99504-3 is reported in mg/dL",
    ),
    "wrong unit": (
        cgm(1, unit="mg"),
        "valueQuantity.code",
        "99504-3 (Glucose [Mass/volume] in Interstitial fluid) is reported in mg/dL, got mg",
    ),
    "not UCUM": (
        changed(cgm(1), valueQuantity={"value": 120, "system": "http://example.org/units", "code": "mg/dL"}),
        "valueQuantity.system",
        "units must be UCUM (http://unitsofmeasure.org), got http://example.org/units",
    ),
    "mmol/L on a mg/dL code": (cgm(1, 6.7, unit=MMOL_L), "valueQuantity.code", MIX_UP_TO_MMOL),
    "mmol/L value sent as mg/dL": (
        cgm(1, 6.7),
        "valueQuantity.value",
        "6.7 mg/dL is outside the plausible range 10-1000 mg/dL (a value in mmol/L sent as mg/dL?)",
    ),
    "mg/dL value sent as mmol/L": (
        cgm(1, 121, code="105272-9"),
        "valueQuantity.value",
        "121 mmol/L (2179.936 mg/dL) is outside the plausible range 10-1000 mg/dL (a value in mg/dL sent as mmol/L?)",
    ),
    "above the physiological range": (
        cgm(1, 1500),
        "valueQuantity.value",
        "1500 mg/dL is outside the plausible range 10-1000 mg/dL",
    ),
    "censored value": (
        changed(
            cgm(1), valueQuantity={"value": 40, "comparator": "<", "system": "http://unitsofmeasure.org", "code": MG_DL}
        ),
        "valueQuantity.comparator",
        "a value reported as <40 is a bound, not a reading",
    ),
    "missing effective[x]": (
        changed(cgm(1), effectiveDateTime=None),
        "effective[x]",
        "missing: a reading needs the time it was taken (effectiveDateTime)",
    ),
    "time without a time zone": (
        changed(cgm(1), effectiveDateTime="2026-10-01T08:05:00"),
        "effectiveDateTime",
        "2026-10-01T08:05:00 has no time zone; add Z or an offset such as +01:00",
    ),
    "date without a time": (
        changed(cgm(1), effectiveDateTime="2026-10-01"),
        "effectiveDateTime",
        "2026-10-01 has no time of day; glucokit needs a date, time and time zone",
    ),
    "missing identifier": (
        changed(cgm(1), identifier=None),
        "identifier",
        "missing: an identifier with system and value from the source makes the reading idempotent to ingest",
    ),
    "not an Observation": (
        {"resourceType": "Patient", "id": "example"},
        "resourceType",
        "glucokit ingests Observation resources, got 'Patient'",
    ),
    "not FHIR (unknown element)": (changed(cgm(1), glucose=120), "glucose", "Extra inputs are not permitted"),
    "not FHIR (status)": (
        changed(cgm(1), status="done"),
        "status",
        "'done' is not an Observation status (registered, preliminary, final, amended, corrected, cancelled, "
        "entered-in-error, unknown)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_a_bad_entry_is_rejected_exactly_and_quarantined_and_its_neighbours_are_kept(
    conn: Connection, owner: Owner, case: str
) -> None:
    bad, field, reason = BAD_ENTRIES[case]
    report = ingest(conn, owner, bundle(cgm(0), bad, cgm(2)))

    assert only_rejection(report) == ("entry 1", field, reason)
    assert (report.entries, report.inserted, report.rejected) == (3, 2, 1)
    assert [row[0] for row in rows(conn, owner)] == ["reading-0", "reading-2"]
    ((index, errors, payload),) = quarantined(conn, owner)
    assert (index, errors) == (1, [{"field": field, "reason": reason}])
    assert orjson.loads(payload) == bad


def test_a_time_in_the_future_is_rejected(conn: Connection, owner: Owner) -> None:
    future = changed(cgm(1), effectiveDateTime="2099-01-01T00:00:00Z")
    report = ingest(conn, owner, bundle(cgm(0), future))
    position, field, reason = only_rejection(report)
    assert (position, field) == ("entry 1", "effectiveDateTime")
    assert reason.startswith("2099-01-01T00:00:00Z is in the future (the server's clock says 2")
    assert len(rows(conn, owner)) == 1


def test_several_problems_of_one_entry_are_all_reported(conn: Connection, owner: Owner) -> None:
    bad = changed(cgm(1, 1500), effectiveDateTime="2099-10-01T08:05:00Z", identifier=None)
    report = ingest(conn, owner, bundle(bad))
    (rejection,) = report.rejections
    assert [problem.field for problem in rejection.problems] == [
        "effectiveDateTime",
        "identifier",
        "valueQuantity.value",
    ]


def test_a_duplicate_inside_one_bundle_is_rejected_and_the_first_kept(conn: Connection, owner: Owner) -> None:
    report = ingest(conn, owner, bundle(cgm(0), cgm(1, 130), cgm(1, 140)))
    second_reading = (START + timedelta(minutes=5)).isoformat()
    assert only_rejection(report) == (
        "entry 2",
        "identifier",
        f"duplicate: an earlier entry has identifier {SOURCE}|reading-1 at {second_reading}",
    )
    assert rows(conn, owner)[1][:2] == ("reading-1", Decimal(130))
    assert len(quarantined(conn, owner)) == 1


def test_the_same_instant_in_another_time_zone_is_a_duplicate(conn: Connection, owner: Owner) -> None:
    elsewhere = changed(cgm(1), effectiveDateTime="2026-10-01T10:05:00+02:00")
    report = ingest(conn, owner, bundle(cgm(1), elsewhere))
    assert [rejection.position for rejection in report.rejections] == ["entry 1"]


def test_malformed_json_rejects_and_quarantines_the_document(conn: Connection, owner: Owner) -> None:
    body = b'{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": '
    report = Ingest([conn], user_id=owner.user, person_id=owner.person).document(body, source="broken.json")
    (rejection,) = report.rejections
    assert (rejection.position, rejection.entry_index) == ("document", None)
    assert rejection.problems[0].field == "(json)"
    assert rejection.problems[0].reason.startswith("malformed JSON: ")
    assert quarantined(conn, owner) == [(None, [rejection.problems[0].as_json()], body.decode())]
    assert rows(conn, owner) == []


def test_a_malformed_ndjson_line_is_rejected_and_the_other_lines_kept(conn: Connection, owner: Owner) -> None:
    lines = [orjson.dumps(cgm(0)), b'{"resourceType": "Observation", "status": ', orjson.dumps(cgm(2))]
    report = Ingest([conn], user_id=owner.user, person_id=owner.person).ndjson(b"\n".join(lines), source="x.ndjson")
    position, field, reason = only_rejection(report)
    assert (position, field) == ("line 2", "(json)")
    assert reason.startswith("malformed JSON: ")
    assert [row[0] for row in rows(conn, owner)] == ["reading-0", "reading-2"]
    assert quarantined(conn, owner)[0][2] == lines[1].decode()


def test_a_bundle_above_the_size_limit_is_refused_whole(conn: Connection, owner: Owner) -> None:
    body = orjson.dumps(bundle(*(cgm(n) for n in range(50))))
    run = Ingest([conn], user_id=owner.user, person_id=owner.person, limits=Limits(max_document_bytes=len(body) - 1))
    with pytest.raises(
        GlucokitError,
        match=r"request.json is larger than the 0 MiB limit for one JSON document.*"
        r"send NDJSON \(one resource per line\), which has no total limit: nothing was stored",
    ):
        run.document(body, source="request.json")
    assert rows(conn, owner) == []
    assert quarantined(conn, owner) == []


def test_an_ndjson_line_above_the_entry_limit_is_rejected(conn: Connection, owner: Owner) -> None:
    long_line = orjson.dumps(changed(cgm(1), id="x" * 64))
    limit = len(long_line) - 10
    body = orjson.dumps(cgm(0)) + b"\n" + long_line + b"\n" + orjson.dumps(cgm(2))
    run = Ingest([conn], user_id=owner.user, person_id=owner.person, limits=Limits(max_entry_bytes=limit))
    report = run.ndjson(body, source="x.ndjson")
    assert only_rejection(report) == (
        "line 2",
        "(line)",
        f"{len(long_line)} bytes, above the limit of {limit} per resource "
        f"(the quarantine keeps its first {limit} bytes)",
    )
    assert [row[0] for row in rows(conn, owner)] == ["reading-0", "reading-2"]
    assert quarantined(conn, owner)[0][2] == long_line[:limit].decode()


def test_a_person_the_caller_does_not_own_is_refused(
    conn: Connection, owner: Owner, make_owner: Callable[[], Owner]
) -> None:
    other = make_owner()
    run = Ingest([conn], user_id=owner.user, person_id=other.person)
    with pytest.raises(GlucokitError, match=f"person {other.person} does not exist or is not one of yours"):
        run.document(orjson.dumps(bundle(cgm(0))), source="request.json")
    assert rows(conn, other) == []
    assert quarantined(conn, other) == []


def test_a_bundle_of_another_type_is_rejected(conn: Connection, owner: Owner) -> None:
    report = ingest(conn, owner, bundle(cgm(0), kind="document"))
    assert only_rejection(report) == (
        "document",
        "type",
        "glucokit reads bundles of type batch, collection, searchset, transaction, got 'document'",
    )
    assert rows(conn, owner) == []


# --- What is kept, and how ------------------------------------------------------------------------


def test_mmol_per_litre_is_stored_in_mg_dl_with_the_original_kept(conn: Connection, owner: Owner) -> None:
    report = ingest(conn, owner, bundle(cgm(0, 6.5, code="105272-9")))
    assert report.inserted == 1
    assert rows(conn, owner, "value, unit, original_value, original_unit, code") == [
        (Decimal("117.1040"), MG_DL, Decimal("6.5"), MMOL_L, "105272-9")
    ]


def test_carbohydrate_intake_and_insulin_are_kept(conn: Connection, owner: Owner) -> None:
    report = ingest(conn, owner, bundle(cgm(0), carbs(1, 45), insulin(2, 1.25, unit="[IU]")))
    assert report.inserted == 3
    assert rows(conn, owner, "code, value, unit, category, device") == [
        ("99504-3", Decimal(120), MG_DL, "laboratory", "Example CGM"),
        ("9059-7", Decimal(45), "g", "survey", None),
        ("67866001", Decimal("1.25"), "[iU]", "therapy", "Example pump"),
    ]


def test_the_resource_is_kept_as_received(conn: Connection, owner: Owner) -> None:
    noted = changed(cgm(0), note=[{"text": "sensor warm-up"}])
    ingest(conn, owner, bundle(noted))
    assert rows(conn, owner, "resource") == [(noted,)]


def test_fhir_r5_elements_need_the_r5_version(conn: Connection, owner: Owner) -> None:
    r5_only = changed(cgm(0), instantiatesCanonical="http://example.org/PlanDefinition/cgm")
    report = ingest(conn, owner, bundle(r5_only))
    assert only_rejection(report) == ("entry 0", "instantiatesCanonical", "Extra inputs are not permitted")
    assert ingest(conn, owner, bundle(r5_only), fhir_version="R5").inserted == 1


def test_a_single_observation_document_is_ingested(conn: Connection, owner: Owner) -> None:
    report = ingest(conn, owner, cgm(0))
    assert (report.entries, report.inserted) == (1, 1)


# --- Idempotency and corrections --------------------------------------------------------------------


def test_the_same_readings_twice_are_stored_once(conn: Connection, owner: Owner) -> None:
    document = bundle(*(cgm(n, 100 + n) for n in range(5)))
    first, second = ingest(conn, owner, document), ingest(conn, owner, document)
    assert (first.inserted, first.unchanged) == (5, 0)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 5)
    assert len(rows(conn, owner)) == 5


def test_a_corrected_reading_replaces_the_stored_one_and_keeps_its_status(conn: Connection, owner: Owner) -> None:
    ingest(conn, owner, bundle(cgm(0), cgm(1, 130)))
    report = ingest(conn, owner, bundle(changed(cgm(1, 135), status="corrected")))
    assert (report.inserted, report.updated) == (0, 1)
    assert rows(conn, owner) == [
        ("reading-0", Decimal(120), MG_DL, "final"),
        ("reading-1", Decimal(135), MG_DL, "corrected"),
    ]


def test_a_correction_may_move_a_reading_in_time(conn: Connection, owner: Owner) -> None:
    ingest(conn, owner, bundle(cgm(0), cgm(1, 130)))
    moved = changed(cgm(1, 130), status="amended", effectiveDateTime="2026-10-01T08:07:00Z")
    report = ingest(conn, owner, bundle(moved))
    assert report.inserted == 1
    assert rows(conn, owner, "source_id, effective_at, status")[1][1:] == (
        START + timedelta(minutes=7),
        "amended",
    )
    assert len(rows(conn, owner)) == 2


def test_a_reading_entered_in_error_keeps_its_row_with_that_status(conn: Connection, owner: Owner) -> None:
    ingest(conn, owner, bundle(cgm(0)))
    ingest(conn, owner, bundle(changed(cgm(0), status="entered-in-error")))
    assert rows(conn, owner) == [("reading-0", Decimal(120), MG_DL, "entered-in-error")]


# --- Streaming: batches, writers, files ---------------------------------------------------------------


def test_batches_over_two_writers_keep_every_entry_and_count_right(
    database_url: str, owner: Owner, conn: Connection
) -> None:
    resources = [cgm(n, 90 + n) for n in range(23)]
    resources[7] = cgm(7, 5000)
    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        run = Ingest([first, second], user_id=owner.user, person_id=owner.person, limits=Limits(batch_size=4))
        report = run.document(orjson.dumps(bundle(*resources)), source="batched.json")
    assert (report.entries, report.inserted, report.rejected) == (23, 22, 1)
    assert len(rows(conn, owner)) == 22
    assert [row[0] for row in quarantined(conn, owner)] == [7]


def test_a_reading_stored_by_another_writer_meanwhile_is_not_an_error(
    database_url: str, owner: Owner, conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plain INSERT of new readings meets a reading that another transaction stores while the batch is
    written: the batch is written again with ON CONFLICT, and nothing fails or is stored twice."""
    attempts: list[bool] = []
    write_on = _Writers._write_on

    def spy(self: _Writers, conn: Connection, batch: Any, *, careful: bool) -> tuple[int, int]:
        attempts.append(careful)
        return write_on(self, conn, batch, careful=careful)

    monkeypatch.setattr(_Writers, "_write_on", spy)
    resources = [cgm(n) for n in range(6)]
    with psycopg.connect(database_url) as other, psycopg.connect(database_url) as writer:
        other.execute(
            "insert into public.observation (person_id, code, value, unit, effective_at, device, source_system, "
            "source_id, resource) values (%s, '99504-3', 120, 'mg/dL', %s, 'Example CGM', %s, 'reading-3', %s)",
            (owner.person, START + timedelta(minutes=15), SOURCE, Jsonb(resources[3])),
        )  # not committed yet
        run = Ingest([writer], user_id=owner.user, person_id=owner.person)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(run.document, orjson.dumps(bundle(*resources)), source="meanwhile.json")
            for _ in range(200):  # until the writer waits for the other transaction's reading
                waiting = conn.execute(
                    "select wait_event_type from pg_stat_activity where pid = %s", (writer.info.backend_pid,)
                ).fetchone()
                conn.commit()
                if waiting == ("Lock",):
                    break
                time.sleep(0.05)
            assert waiting == ("Lock",)
            other.commit()
            report = pending.result(timeout=30)
    assert attempts == [False, True]  # the plain INSERT, then ON CONFLICT
    assert (report.inserted, report.updated + report.unchanged, report.rejected) == (5, 1, 0)
    assert [row[0] for row in rows(conn, owner)] == [f"reading-{n}" for n in range(6)]


@pytest.mark.parametrize("name", ["readings.json", "readings.json.gz", "readings.ndjson", "readings.ndjson.gz"])
def test_files_plain_and_compressed(conn: Connection, owner: Owner, tmp_path: Path, name: str) -> None:
    resources = [cgm(n) for n in range(6)]
    if ".ndjson" in name:
        content = b"\n".join(orjson.dumps(resource) for resource in resources) + b"\n"
    else:
        content = orjson.dumps(bundle(*resources))
    path = tmp_path / name
    path.write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
    report = Ingest([conn], user_id=owner.user, person_id=owner.person).path(path)
    assert (report.source, report.entries, report.inserted) == (name, 6, 6)


def test_an_unknown_file_type_is_refused(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    path = tmp_path / "readings.xml"
    path.write_text("<Bundle/>")
    with pytest.raises(GlucokitError, match=r"readings.xml: glucokit reads .json \(a Bundle or an Observation\)"):
        Ingest([conn], user_id=owner.user, person_id=owner.person).path(path)


class _Tracked(io.BytesIO):
    """A stream that remembers how far it has been read."""

    furthest = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        _Tracked.furthest = max(_Tracked.furthest, self.tell())
        return data


def test_a_large_bundle_streams_entry_by_entry() -> None:
    body = orjson.dumps(bundle(*(cgm(n) for n in range(5000))))
    document = _Document("large.json", lambda: _Tracked(body), len(body))
    entries = document.entries(Limits(), "R4B")
    _Tracked.furthest = 0
    first = next(entries)
    assert first.value["identifier"][0]["value"] == "reading-0"
    assert _Tracked.furthest < len(body) / 4  # the first entry came before most of the document was read
    assert sum(1 for _ in entries) == 4999


def test_ndjson_streams_line_by_line() -> None:
    body = b"".join(orjson.dumps(cgm(n)) + b"\n" for n in range(5000))
    stream = _Tracked(body)
    _Tracked.furthest = 0
    entries = _ndjson_entries(stream, Limits())
    assert next(entries).position == "line 1"
    assert _Tracked.furthest < len(body) / 4
