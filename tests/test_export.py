"""Export: a person's observations as FHIR, and the round trip export -> ingest into another person."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fhir.resources.bundle import Bundle as R5Bundle
from fhir.resources.R4B.bundle import Bundle as R4BBundle

from fhir_samples import bundle, carbs, cgm, changed, insulin
from glucokit.db.sessions import Connection
from glucokit.errors import GlucokitError
from glucokit.fhir import export
from glucokit.fhir.ingest import Ingest
from owners import Owner, ingest, rows

# Everything a row holds except its own id, person and bookkeeping times.
COLUMNS = (
    "status, category, code_system, code, value, unit, original_value, original_unit, effective_at, issued_at, "
    "device, source_system, source_id, resource"
)


def mixed_history() -> dict[str, Any]:
    return bundle(
        cgm(0),
        cgm(1, 6.4, code="105272-9"),
        changed(cgm(2, 140), status="corrected", note=[{"text": "recalibrated"}]),
        carbs(3, 42.5),
        insulin(4, 0.35),
        changed(cgm(5), effectiveDateTime="2026-10-01T10:25:00+02:00", issued="2026-10-01T08:26:00Z"),
    )


def exported(conn: Connection, owner: Owner, form: export.ExportFormat) -> bytes:
    out = io.BytesIO()
    export.export(conn, out, user_id=owner.user, person_id=owner.person, form=form)
    return out.getvalue()


@pytest.mark.parametrize("form", export.EXPORT_FORMATS)
def test_round_trip_through_export_changes_nothing(
    conn: Connection, make_owner: Callable[[], Owner], form: export.ExportFormat
) -> None:
    first, second = make_owner(), make_owner()
    ingest(conn, first, mixed_history())
    data = exported(conn, first, form)

    run = Ingest([conn], user_id=second.user, person_id=second.person)
    report = run.ndjson(data, source="export.ndjson") if form == "ndjson" else run.document(data, source="export.json")

    assert (report.entries, report.inserted, report.rejected) == (6, 6, 0)
    assert rows(conn, second, COLUMNS) == rows(conn, first, COLUMNS)
    assert exported(conn, second, "ndjson") == exported(conn, first, "ndjson")


def test_the_exported_bundle_is_valid_fhir(conn: Connection, owner: Owner) -> None:
    ingest(conn, owner, mixed_history())
    document = orjson.loads(exported(conn, owner, "bundle"))
    for model in (R4BBundle, R5Bundle):
        model.model_validate(document)
    assert [entry["resource"]["identifier"][0]["value"] for entry in document["entry"]] == [
        "reading-0", "reading-1", "reading-2", "meal-3", "dose-4", "reading-5",
    ]  # fmt: skip
    assert all(entry["fullUrl"].startswith("urn:uuid:") for entry in document["entry"])


def test_a_person_without_observations_exports_a_bundle_without_entries(conn: Connection, owner: Owner) -> None:
    document = orjson.loads(exported(conn, owner, "bundle"))
    R4BBundle.model_validate(document)
    assert "entry" not in document
    assert exported(conn, owner, "ndjson") == b""


def test_observations_stored_without_a_resource_are_written_in_their_received_unit(
    conn: Connection, owner: Owner
) -> None:
    ingest(conn, owner, bundle(cgm(0, 6.4, code="105272-9")))
    conn.execute("update public.observation set resource = null where person_id = %s", (owner.person,))
    conn.commit()
    (line,) = exported(conn, owner, "ndjson").splitlines()
    resource = orjson.loads(line)
    assert resource["valueQuantity"] == {
        "value": 6.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L",
    }  # fmt: skip
    assert resource["code"]["coding"][0]["code"] == "105272-9"


def test_export_of_a_person_the_caller_does_not_own_is_refused(
    conn: Connection, owner: Owner, make_owner: Callable[[], Owner]
) -> None:
    other = make_owner()
    ingest(conn, other, bundle(cgm(0)))
    with pytest.raises(GlucokitError, match=f"person {other.person} does not exist or is not one of yours"):
        export.export(conn, io.BytesIO(), user_id=owner.user, person_id=other.person)
