"""Export: a person's observations as FHIR, and the round trip export -> ingest into another person."""

from __future__ import annotations

import io
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from fhir.resources.bundle import Bundle as R5Bundle
from fhir.resources.R4B.bundle import Bundle as R4BBundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_samples import bundle, carbs, cgm, changed, insulin
from glucokit.db.sessions import Connection
from glucokit.errors import GlucokitError
from glucokit.fhir import export
from glucokit.fhir.ingest import Ingest
from glucokit.fhir.stored import same_json
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


# --- What is stored: the resource only where the columns do not give it back -------------------------


def compact(resource: dict[str, Any]) -> dict[str, Any]:
    """A sample as glucokit, the simulator and the importers write readings: no subject."""
    return changed(resource, subject=None)


def exported_resources(conn: Connection, owner: Owner) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in exported(conn, owner, "ndjson").splitlines()]


@pytest.mark.parametrize("form", export.EXPORT_FORMATS)
def test_compact_readings_are_stored_without_their_resource_and_exported_unchanged(
    conn: Connection, owner: Owner, form: export.ExportFormat
) -> None:
    sent = [
        compact(cgm(0)),
        compact(cgm(1, 142.5)),
        compact(cgm(2, 6.4, code="105272-9")),
        carbs(3, 42.5),
        insulin(4, 0.35),
        changed(compact(cgm(5)), status="amended", issued="2026-10-01T08:26:00Z"),
    ]
    run = Ingest([conn], user_id=owner.user, person_id=owner.person)
    if form == "ndjson":
        run.ndjson(b"".join(orjson.dumps(resource) + b"\n" for resource in sent), source="compact.ndjson")
    else:
        run.document(orjson.dumps(bundle(*sent)), source="compact.json")

    assert rows(conn, owner, "resource") == [(None,)] * len(sent)
    # Rebuilt from the columns: what was sent (the amended one's issued comes in FHIR's order, after the time).
    assert same_json(exported_resources(conn, owner), sent)


EXTRAS = {
    "an extension": {"extension": [{"url": "http://example.org/fhir/sensor-age", "valueInteger": 3}]},
    "a note": {"note": [{"text": "sensor warm-up"}]},
    "a performer": {"performer": [{"reference": "Patient/example"}]},
    "a subject": {"subject": {"reference": "Patient/example"}},
    "an id": {"id": "reading-0"},
    "an offset time": {"effectiveDateTime": "2026-10-01T10:00:00+02:00"},
    "fractional seconds": {"effectiveDateTime": "2026-10-01T08:00:00.000Z"},
    "an effectiveInstant": {"effectiveDateTime": None, "effectiveInstant": "2026-10-01T08:00:00Z"},
    "a value spelled as a fraction": {
        "valueQuantity": {"value": 120.0, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    },
    "another unit text": {
        "valueQuantity": {"value": 120, "unit": "mg/dl", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    },
    "no unit text": {"valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mg/dL"}},
    "no display": {"code": {"coding": [{"system": "http://loinc.org", "code": "99504-3"}]}},
    "a code text": {
        "code": {"coding": [{"system": "http://loinc.org", "code": "99504-3", "display": "Glucose"}], "text": "CGM"}
    },
    "no category": {"category": None},
    "a device reference": {"device": {"reference": "Device/cgm-1"}},
    "a second identifier": {
        "identifier": [
            {"system": "urn:example:cgm-cloud", "value": "reading-0"},
            {"system": "urn:example:other", "value": "r0"},
        ]
    },
}


@pytest.mark.parametrize("extra", EXTRAS.values(), ids=EXTRAS.keys())
def test_a_reading_with_anything_more_or_different_keeps_its_resource(
    conn: Connection, owner: Owner, extra: dict[str, Any]
) -> None:
    sent = changed(compact(cgm(0)), **extra)
    report = ingest(conn, owner, bundle(sent))
    assert (report.inserted, report.rejected) == (1, 0)
    assert rows(conn, owner, "resource") == [(sent,)]
    assert same_json(exported_resources(conn, owner)[0], sent)


def test_a_different_unit_spelling_keeps_its_resource(conn: Connection, owner: Owner) -> None:
    sent = insulin(0, 1.25, unit="[IU]")  # stored in [iU], UCUM's case-sensitive spelling
    ingest(conn, owner, bundle(sent))
    assert rows(conn, owner, "unit, resource") == [("[iU]", sent)]
    assert exported_resources(conn, owner) == [sent]


def test_a_new_version_that_the_columns_give_back_drops_the_kept_resource(conn: Connection, owner: Owner) -> None:
    ingest(conn, owner, bundle(changed(compact(cgm(0)), note=[{"text": "sensor warm-up"}])))
    corrected = changed(compact(cgm(0, 125)), status="corrected")
    report = ingest(conn, owner, bundle(corrected))
    assert report.updated == 1
    assert rows(conn, owner, "value, resource") == [(Decimal(125), None)]
    assert exported_resources(conn, owner) == [corrected]


def test_exactly_means_equal_as_parsed_json_with_the_kind_of_number() -> None:
    assert same_json({"a": [1, "x"], "b": 2.5}, {"b": 2.5, "a": [1, "x"]})  # members in any order
    assert not same_json({"value": 120}, {"value": 120.0})
    assert not same_json([True], [1])
    assert not same_json(["a", "b"], ["b", "a"])
    assert not same_json({"a": None}, {})


# Variants of a reading, each alone or together: what ingest accepts must come back from export as sent.
_VARIANT_CHANGES: dict[str, Any] = {
    **EXTRAS,
    "preliminary": {"status": "preliminary"},
    "issued": {"issued": "2026-10-01T09:00:00Z"},
    "issued with an offset": {"issued": "2026-10-01T11:00:00+02:00"},
    "no device": {"device": None},
    "an unknown code": {"code": {"coding": [{"system": "http://loinc.org", "code": "0000-0"}]}},  # rejected
}


@st.composite
def _readings(draw: st.DrawFn, n: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["mg/dL", "mmol/L", "carbs", "insulin"]))
    resource = {
        "mg/dL": lambda: compact(cgm(n)),
        "mmol/L": lambda: compact(cgm(n, 6.5, code="105272-9")),
        "carbs": lambda: carbs(n, 40),
        "insulin": lambda: insulin(n, 1),
    }[kind]()
    # The value as a JSON number of either kind: 120, 120.0, 120.5 (the samples would write 120.0 as 120).
    low, high = {"mg/dL": (40, 400), "mmol/L": (2, 25), "carbs": (1, 150), "insulin": (1, 30)}[kind]
    tenths = draw(st.integers(low * 10, high * 10))
    value = draw(st.sampled_from([tenths // 10, tenths / 10, float(tenths // 10)]))
    resource["valueQuantity"] = {**resource["valueQuantity"], "value": value}
    changes = draw(st.lists(st.sampled_from(sorted(_VARIANT_CHANGES)), max_size=2, unique=True))
    for name in changes:
        resource = changed(resource, **_VARIANT_CHANGES[name])
    # A change names the first reading's identifier and time (on the hour): each reading keeps its own.
    resource["identifier"][0]["value"] = f"variant-{n}"
    for time in ("effectiveDateTime", "effectiveInstant"):
        if time in resource:
            resource[time] = f"{resource[time][:14]}{5 * n:02d}{resource[time][16:]}"
    return dict(draw(st.permutations(list(resource.items()))))  # members in any order


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), form=st.sampled_from(export.EXPORT_FORMATS))
def test_export_gives_back_every_accepted_reading(
    conn: Connection, owner: Owner, data: st.DataObject, form: export.ExportFormat
) -> None:
    conn.execute("delete from public.observation where person_id = %s", (owner.person,))
    conn.commit()
    count = data.draw(st.integers(1, 12), label="readings")
    sent = [data.draw(_readings(n), label=f"reading {n}") for n in range(count)]
    run = Ingest([conn], user_id=owner.user, person_id=owner.person)
    if form == "ndjson":
        report = run.ndjson(b"".join(orjson.dumps(resource) + b"\n" for resource in sent), source="variants.ndjson")
    else:
        report = run.document(orjson.dumps(bundle(*sent)), source="variants.json")
    rejected = {rejection.entry_index for rejection in report.rejections}
    # A bundle's entries count from 0, NDJSON's lines from 1.
    first = 1 if form == "ndjson" else 0
    accepted = [resource for index, resource in enumerate(sent, start=first) if index not in rejected]
    assert report.inserted == len(accepted)
    back = exported_resources(conn, owner)
    assert len(back) == len(accepted)
    for resource, again in zip(accepted, back, strict=True):
        assert same_json(again, resource), (again, resource)
