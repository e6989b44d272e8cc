"""Ingest's speed-ups change nothing: NDJSON read through known sources' templates stores exactly what the same
resources store as a Bundle; the switch interval is short only while ingest runs; the first batches grow."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_samples import START, carbs, cgm, changed, insulin
from glucokit.db.sessions import Connection
from glucokit.fhir import resources as fhir
from glucokit.fhir.ingest import _SWITCH_INTERVAL, Ingest, IngestReport, Record, _Batch, _prompt_writers, _Writers
from glucokit.fhir.stored import Templates
from glucokit.fhir.validation import Reading
from glucokit.units import CGM_CODE, KINDS, LOINC
from owners import Owner, ingest, quarantined, rows

COLUMNS = (
    "status, category, code_system, code, value, unit, original_value, original_unit, effective_at, issued_at, "
    "device, source_system, source_id, resource"
)


def _written(n: int, value: Any = 120, **options: Any) -> dict[str, Any]:
    """A CGM reading as glucokit writes it: the text a source's template is cut from."""
    options = {"source_system": "urn:example:cgm", "source_id": f"r-{n}", "device": "Example CGM", **options}
    return fhir.observation(KINDS[(LOINC, CGM_CODE)], Decimal(repr(value)), START + timedelta(minutes=5 * n), **options)


def _resources() -> list[dict[str, Any]]:
    written = [_written(n, 100 + n % 50) for n in range(40)]
    return [
        *written,
        *(_written(n, 100, device=None) for n in range(40, 45)),  # a second template
        *(_written(n, 100, status="preliminary") for n in range(45, 50)),  # a third
        _written(50, 120.5),
        _written(51, 10),  # the edge of the range
        _written(52, 9),  # below it: rejected
        _written(53, 1001),  # above it: rejected
        changed(_written(54), effectiveDateTime="2026-10-01T12:00:00+02:00"),  # an offset: the resource is kept
        changed(_written(55), effectiveDateTime="2026-10-01T12:00:00.500Z"),  # more digits: kept
        _written(56, source_id="r-\u00fc"),
        _written(57, source_id='r-"57"'),  # escaped: read the full way
        _written(58, source_id=" "),
        changed(_written(59), effectiveDateTime="2099-01-01T00:00:00Z"),  # the future: rejected
        written[3],  # a duplicate: rejected
        changed(_written(60), valueQuantity={**_written(60)["valueQuantity"], "value": 120.0}),  # 120.0: kept
        _written(61, status="entered-in-error"),
        cgm(62),  # a subject: kept
        carbs(63, 30),
        insulin(64, 0.5),
        *(_written(n, 6.5, unit="mmol/L") for n in range(65, 67)),  # a unit the code is not reported in: rejected
    ]


def _all(conn: Connection, owner: Owner) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    return rows(conn, owner, COLUMNS), [(errors, payload) for _, errors, payload in quarantined(conn, owner)]


def _clockless(problems: object) -> str:
    """Problems as text, without the server's clock that a time in the future is compared with."""
    return re.sub(r"the server's clock says [^)]*", "", str(problems))


def _counts(report: IngestReport) -> tuple[int, ...]:
    return report.entries, report.inserted, report.updated, report.unchanged, report.rejected


def test_ndjson_through_templates_stores_what_a_bundle_stores(
    conn: Connection, owner: Owner, make_owner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read, templated = Templates.read, []

    def counted(self: Templates, line: bytes) -> Reading | None:
        reading = read(self, line)
        templated.append(reading is not None)
        return reading

    monkeypatch.setattr(Templates, "read", counted)
    resources = _resources()
    path = tmp_path / "readings.ndjson"
    path.write_bytes(b"".join(orjson.dumps(resource) + b"\n" for resource in resources))
    as_ndjson = Ingest([conn], user_id=owner.user, person_id=owner.person).path(path)
    other = make_owner()
    as_bundle = ingest(conn, other, {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": resource} for resource in resources
    ]})  # fmt: skip
    assert _counts(as_ndjson) == _counts(as_bundle) == (len(resources), 62, 0, 0, 6)
    assert templated.count(True) == 52  # every valid line of a template learnt before it (the duplicate too)
    assert [(_clockless(rejection.problems), rejection.entry_index) for rejection in as_ndjson.rejections] == [
        (_clockless(rejection.problems), (rejection.entry_index or 0) + 1) for rejection in as_bundle.rejections
    ]
    stored, kept = _all(conn, owner)
    assert stored == _all(conn, other)[0]
    assert [row[-1] is not None for row in stored].count(True) == 4  # the offset, the digits, 120.0, the subject
    assert [_clockless(errors) for errors, _ in kept] == [_clockless(errors) for errors, _ in _all(conn, other)[1]]
    again = Ingest([conn], user_id=owner.user, person_id=owner.person).path(path)
    assert _counts(again) == (len(resources), 0, 0, 62, 6)
    assert rows(conn, owner, COLUMNS) == stored


def test_the_switch_interval_is_short_while_any_ingest_runs(conn: Connection, owner: Owner) -> None:
    """Writer threads get the GIL back promptly while ingest validates; the interval is restored after the last
    running ingest, not the first that ends."""
    before = sys.getswitchinterval()
    seen: list[float] = []

    def records() -> Iterator[Record]:
        seen.append(sys.getswitchinterval())
        yield Record("row 1", 1, "{}", resource=_written(0))

    report = Ingest([conn], user_id=owner.user, person_id=owner.person).resources(records(), source="export")
    assert report.inserted == 1
    assert seen == [pytest.approx(min(before, _SWITCH_INTERVAL))]
    assert sys.getswitchinterval() == before
    with _prompt_writers():
        with _prompt_writers():
            assert sys.getswitchinterval() == pytest.approx(min(before, _SWITCH_INTERVAL))
        assert sys.getswitchinterval() == pytest.approx(min(before, _SWITCH_INTERVAL))
    assert sys.getswitchinterval() == before


def test_the_first_batches_grow_up_to_the_batch_size(
    conn: Connection, owner: Owner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writers start soon: the first batch is small and each next one twice the last, up to the limit."""
    submit, sizes = _Writers.submit, []

    def recorded(self: _Writers, batch: _Batch) -> None:
        sizes.append(len(batch.rows))
        submit(self, batch)

    monkeypatch.setattr(_Writers, "submit", recorded)
    path = tmp_path / "readings.ndjson"
    path.write_bytes(b"".join(orjson.dumps(_written(n)) + b"\n" for n in range(12_000)))
    report = Ingest([conn], user_id=owner.user, person_id=owner.person).path(path)
    assert report.inserted == 12_000
    assert sizes == [500, 1000, 2000, 4000, 4500]
