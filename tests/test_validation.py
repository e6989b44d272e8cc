"""The compact-shape check never accepts what fhir.resources rejects (unit tests: no database)."""

from __future__ import annotations

import gzip
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_samples import carbs, cgm, changed, insulin
from glucokit.fhir.resources import FHIR_VERSIONS, FhirVersion
from glucokit.fhir.stored import Templates, needs_resource, rebuilt
from glucokit.fhir.validation import ObservationValidator, Problem, Reading, is_compact, structure_problems

VALID: dict[str, dict[str, Any]] = {
    "cgm": cgm(0),
    "cgm in mmol/L": cgm(1, 6.5, code="105272-9"),
    "carbs": carbs(2, 30),
    "insulin": insulin(3, 0.4),
    "instant": changed(cgm(4), effectiveDateTime=None, effectiveInstant="2026-10-01T08:20:00.123+01:00"),
    "issued and id": changed(cgm(5), id="a-1.b", issued="2026-10-01T08:26:00Z"),
    "minimal": {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "99504-3"}]},
    },
}

# Changes to one element of a valid resource: many are invalid FHIR, some are valid but unusual.
BAD_STRINGS = ["", " ", "\u0001", 12, None, True, [], {}]
MUTATIONS: list[tuple[str, Any]] = [
    *[
        ("effectiveDateTime", value)
        for value in [
            "2026-10-01T08:00Z",
            "2026-13-01T08:00:00Z",
            "2026-10-32",
            "2026-10-01T24:00:00Z",
            "2026-10-01T08:00:00+15:00",
            "2026-10-01T08:00:00.1234567890Z",
            "2026-10-01 08:00:00Z",
            "0000-10-01",
            "2026-10-01T08:00:60Z",
            "2026-10-01T08:00:00",
            "2026",
            "2026-10",
            20261001,
            *BAD_STRINGS,
        ]
    ],
    *[("effectiveInstant", value) for value in ["2026-10-01", "2026-10-01T08:00:00", "2026-10-01T08:00:00Z", ""]],
    *[("issued", value) for value in ["2026-10-01", "2026-10-01T08:00:00", "2026-10-01T08:00:00-03:30", ""]],
    *[("id", value) for value in ["x" * 64, "x" * 65, "a_b", "a b", "", 5]],
    *[("status", value) for value in ["final", "done", "", None, 1]],
    *[
        ("identifier", value)
        for value in [
            [],
            {},
            [{}],
            [{"system": "urn:x"}],
            [{"system": "urn:x", "value": ""}],
            [{"system": "urn x", "value": "1"}],
            [{"system": "urn:x", "value": "1", "use": "usual"}],
            [{"value": " 1 "}],
            [{"value": 1}],
        ]
    ],
    *[("category", value) for value in [[], [{}], [{"text": ""}], [{"coding": []}], [{"coding": [{"code": "a  b"}]}]]],
    *[
        ("code", value)
        for value in [
            {},
            {"coding": []},
            {"coding": [{}]},
            {"coding": [{"code": " x"}]},
            {"coding": [{"system": ""}]},
            {"text": "glucose"},
            {"coding": [{"code": "99504-3", "userSelected": "yes"}]},
        ]
    ],
    *[("subject", value) for value in [{}, {"reference": ""}, {"display": 1}, {"identifier": {}}, "Patient/1"]],
    *[("device", value) for value in [{}, {"display": ""}, {"reference": "Device/1", "type": "Device"}]],
    *[
        ("valueQuantity", value)
        for value in [
            {},
            {"value": "120"},
            {"value": True},
            {"value": None},
            {"value": 120, "code": ""},
            {"value": 120, "unit": ""},
            {"value": 120, "system": "http ://x"},
            {"value": 120, "comparator": "<"},
            {"value": 1e400},
            {"value": 120, "extra": 1},
        ]
    ],
    ("resourceType", "Observation "),
    ("meta", {"versionId": "1"}),
    ("note", [{"text": "hello"}]),
    ("valueString", "high"),
]


def mutated() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for base_name, base in VALID.items():
        for element, value in MUTATIONS:
            resource = dict(base)
            resource[element] = value
            cases.append((f"{base_name}: {element}={value!r}"[:120], resource))
        both = changed(base, effectiveDateTime="2026-10-01T08:00:00Z", effectiveInstant="2026-10-01T08:00:00Z")
        cases.append((f"{base_name}: two effective[x]", both))
    return cases


@pytest.mark.parametrize("version", FHIR_VERSIONS)
def test_the_compact_check_agrees_with_fhir_resources(version: FhirVersion) -> None:
    accepted_wrongly = []
    used = 0
    for name, resource in mutated():
        if is_compact(resource):
            used += 1
            if structure_problems(resource, version):
                accepted_wrongly.append(name)
    assert accepted_wrongly == []
    assert used > 50  # the fast path is taken for the common shapes, not only in theory


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_samples_take_the_compact_path_and_are_valid_fhir(name: str) -> None:
    assert is_compact(VALID[name])
    for version in FHIR_VERSIONS:
        assert structure_problems(VALID[name], version) == []


def test_structure_problems_name_the_fhir_path() -> None:
    resource = changed(cgm(0), identifier=[{"system": "urn:x", "value": 7}])
    assert structure_problems(resource, "R4B") == [Problem("identifier[0].value", "Input should be a valid string")]


def test_a_reading_is_normalised() -> None:
    validator = ObservationValidator("R4B", datetime(2026, 11, 1, tzinfo=UTC))
    reading = validator.validate(VALID["cgm in mmol/L"])
    assert isinstance(reading, Reading)
    assert (str(reading.value), reading.unit, str(reading.original_value), reading.original_unit) == (
        "117.1040",
        "mg/dL",
        "6.5",
        "mmol/L",
    )


def test_a_reading_is_checked_against_the_clock_it_was_given() -> None:
    early = ObservationValidator("R4B", datetime(2026, 9, 1, tzinfo=UTC))
    problems = early.validate(cgm(0))
    assert isinstance(problems, list)
    assert [problem.field for problem in problems] == ["effectiveDateTime"]


# --- The fast path (msgspec) gives exactly what the full path gives ------------------------------------


def _fixture_observations() -> list[dict[str, Any]]:
    """Every fourth Observation of the simulated fixtures (CGM readings, carbohydrates, insulin)."""
    observations = []
    for path in sorted((Path(__file__).parents[1] / "data" / "simulated").glob("*.json.gz")):
        entries = orjson.loads(gzip.decompress(path.read_bytes()))["entry"]
        observations += [entry["resource"] for entry in entries[::4]]
    return observations


# Changes deeper inside a valid CGM reading, combined at random below.
NESTED: list[tuple[tuple[str | int, ...], Any]] = [
    *[(("valueQuantity", "value"), value) for value in [9, 10, 10.0, 39.99, 1000, 1000.5, 1001, -0, 120.25, 2**70]],
    *[(("valueQuantity", "code"), value) for value in ["mg/dl", "mmol/L", "[IU]", "g", " mg/dL", ""]],
    *[(("valueQuantity", "system"), value) for value in ["http://unitsofmeasure.org/", "", None, 1]],
    *[(("valueQuantity", "unit"), value) for value in ["mg/dL", "", None, "\t"]],
    *[(("code", "coding", 0, "system"), value) for value in ["http://loinc.org/", "http://snomed.info/sct", ""]],
    *[(("code", "coding", 0, "code"), value) for value in ["15074-8", "2339-0", "105272-9", "99504-3 ", "x"]],
    *[(("code", "coding", 0, "display"), value) for value in ["", "\u0001", None, "g\u00fcltig"]],
    (("code", "coding"), [{"system": "urn:other", "code": "1"}, {"system": "http://loinc.org", "code": "99504-3"}]),
    (("code", "text"), "Glucose"),
    *[(("category", 0, "coding", 0, "code"), value) for value in ["vital-signs", "Laboratory", "lab_x", "a" * 65]],
    *[(("category", 0, "coding", 0, "system"), value) for value in ["urn:other", ""]],
    (("category",), [{"coding": [{"system": "urn:a", "code": "x-y"}]}, {"coding": [{"code": "survey"}]}]),
    *[(("identifier", 0, "value"), value) for value in ["x" * 255, "x" * 256, " a", "a\nb"]],
    *[(("identifier", 0, "system"), value) for value in ["u" * 256, "urn:x y"]],
    (("identifier",), [{"system": "urn:a", "value": "1"}, {"system": "urn:b"}]),
    (("identifier",), [{"value": "1"}, {"system": "urn:b", "value": "2"}]),
    *[(("device", "display"), value) for value in ["d" * 256, "", None]],
    (("device",), {"reference": "Device/1"}),
    (("device",), {"reference": "Device/1", "display": "CGM"}),
    *[(("subject", "reference"), value) for value in ["Patient/1", "", None]],
    *[(("effectiveDateTime",), value) for value in ["2026-10-01T08:00:00+14:00", "2099-01-01T00:00:00Z", "2026-10"]],
    (("issued",), "2099-01-01T00:00:00Z"),
    (("status",), "entered-in-error"),
]


def _nested_change(resource: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    result = changed(resource)
    target: Any = result
    for step in path[:-1]:
        target = target[step]
    if value is None and isinstance(target, dict):
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return result


def _dumps(resource: object) -> bytes:
    """JSON text of any Python value (orjson refuses integers beyond 64 bits)."""
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode()


def _variants() -> list[tuple[str, bytes]]:
    """JSON texts: the fixtures, the samples and their mutations above, random combinations of nested changes,
    and spellings of the same JSON that a decoder might read differently."""
    texts = [(f"fixture {n}", orjson.dumps(resource)) for n, resource in enumerate(_fixture_observations())]
    texts += [(name, _dumps(resource)) for name, resource in [*VALID.items(), *mutated()]]
    chance = random.Random(16)  # noqa: S311 (reproducible variants, no secrets)
    for n in range(1500):
        resource = chance.choice([cgm(n), cgm(n, 6.5, code="105272-9"), insulin(n, 0.4), carbs(n, 30)])
        for path, value in chance.sample(NESTED, chance.randint(1, 3)):
            try:
                resource = _nested_change(resource, path, value)
            except (KeyError, IndexError, TypeError):
                continue
        texts.append((f"random {n}", _dumps(resource)))
    line = orjson.dumps(cgm(7)).decode()
    spellings = [
        line.replace('"value":120', '"value":1.2e2'),
        line.replace('"value":120', '"value":120.000'),
        line.replace('"value":120', '"value":-120'),
        line.replace('"value":120', '"value":1e400'),
        line.replace('"value":120', '"value":"120"'),
        line.replace('"status":"final"', '"status":"final","status":"done"'),
        line.replace('"status":"final"', '"status":"done","status":"final"'),
        line.replace('"status":"final"', '"status":"\\u0066inal"'),
        line.replace('"status":"final"', '"status" : "final" '),
        line.replace("Example CGM", "Example\\u0000CGM"),
        line.replace("Example CGM", "Example \\ud800 CGM"),
        line.replace("Example CGM", "Example \\uD83D\\uDE00 CGM"),
        "\ufeff" + line,
        " " + line + " ",
        line + "x",
        line[:-1],
        "[" + line + "]",
        "null",
        "{}",
    ]
    texts += [(f"spelling {n}", text.encode()) for n, text in enumerate(spellings)]
    texts += [("invalid UTF-8", orjson.dumps(cgm(8)).replace(b"Example", b"Ex\xffample"))]
    return texts


@pytest.mark.parametrize("version", FHIR_VERSIONS)
def test_the_fast_path_accepts_and_rejects_exactly_what_the_full_path_does(version: FhirVersion) -> None:
    """What ``validate_json`` takes is read exactly as ``validate`` reads it, and valid FHIR; what it does not
    take goes to ``validate``, so ingest accepts and rejects the same entries with the same problems."""
    validator = ObservationValidator(version, datetime(2030, 1, 1, tzinfo=UTC))
    differ, invalid_fhir, fast_taken, full_taken = [], [], 0, 0
    for name, text in _variants():
        fast = validator.validate_json(text)
        try:
            resource = orjson.loads(text)
        except orjson.JSONDecodeError:
            assert fast is None, name  # malformed JSON is reported as such by the full path
            continue
        full = validator.validate(resource)
        full_taken += isinstance(full, Reading)
        if fast is None:
            continue
        fast_taken += 1
        if fast != full:
            differ.append(name)
        if structure_problems(resource, version):
            invalid_fhir.append(name)
    assert differ == []
    assert invalid_fhir == []
    # The fast path is taken for the fixtures and most valid variants, not only in theory.
    assert fast_taken > 1000
    assert fast_taken >= 0.9 * full_taken


def test_the_fast_path_reads_the_same_reading_with_its_types() -> None:
    validator = ObservationValidator("R4B", datetime(2030, 1, 1, tzinfo=UTC))
    for resource in [cgm(0), cgm(1, 6.5, code="105272-9"), insulin(2, 0.4), carbs(3, 30.5)]:
        fast = validator.validate_json(orjson.dumps(resource))
        assert fast is not None
        full = validator.validate(resource)
        assert fast == full
        assert not isinstance(full, list)
        assert [type(part) for part in fast] == [type(part) for part in full]


# --- A known source's template (glucokit.fhir.stored.Templates) reads exactly what the fast path reads -------

HOLE_IDS = ["", " ", "a", " a", "a\nb", 'a"b', "a\\b", "x" * 255, "x" * 256, "g\u00fcltig", "\u2028", "\x7f", "\x01"]
HOLE_TIMES = [
    "2026-10-01T08:00:00+01:00", "2026-10-01T08:00:00-00:00", "2026-10-01T08:00:00.5Z", "2026-10-01T08:00:00.500000Z",
    "2026-10-01T08:00:00.000001Z", "2026-10-01T08:00Z", "2026-10-01T08:00:00", "2026-10-01", "2026-02-30T00:00:00Z",
    "2026-10-01T24:00:00Z", "0001-01-01T00:00:00Z", "2030-01-01T00:04:59Z", "2030-01-01T00:05:01Z",
    "2099-01-01T00:00:00Z",
]  # fmt: skip
HOLE_VALUES = [0, 9, 10, 39.99, 40, 120, 120.0, 120.5, 1000, 1000.5, 1001, -1, -0.0, 6.5, 0.4, 1e-7, 1.5e300, 2**70]
HOLE_SPELLINGS = ["1.2e2", "120.000", "-0", "1E2", "01", "1e400", "120.", ".5"]


def _hole_variants(line: bytes) -> list[bytes]:
    """``line`` (a rebuilt CGM-like Observation) with its identifier value, time or value changed, one at a time."""
    resource = orjson.loads(line)
    variants = [_dumps(_nested_change(resource, ("identifier", 0, "value"), value)) for value in HOLE_IDS]
    variants += [_dumps(_nested_change(resource, ("effectiveDateTime",), value)) for value in HOLE_TIMES]
    variants += [_dumps(_nested_change(resource, ("valueQuantity", "value"), value)) for value in HOLE_VALUES]
    number = orjson.dumps(resource["valueQuantity"]["value"])
    variants += [line.replace(b'"value":' + number, b'"value":' + spelling.encode()) for spelling in HOLE_SPELLINGS]
    return variants


def test_a_known_source_template_reads_exactly_what_the_fast_path_reads() -> None:
    """For every reading the fast path takes among the variants above, written back as glucokit writes it, the
    template learnt from that text reads any text with its holes changed exactly as ``validate_json`` does, and
    only texts that are the rebuilt resource byte for byte (so that storing no resource loses nothing)."""
    validator = ObservationValidator("R4B", datetime(2030, 1, 1, tzinfo=UTC))
    learnt = taken = declined = 0
    for _, text in _variants():
        model = validator.validate_json(text)
        if model is None or model.issued_at is not None:
            continue
        line = orjson.dumps(rebuilt(model))
        if validator.validate_json(line) != model:
            continue
        templates = Templates(validator)
        templates.learn(model, line)
        first = templates.read(line)
        if first is None:  # an identifier that JSON escapes: the template takes no such hole
            assert "\\" in orjson.dumps(model.source_id).decode()
            continue
        assert first == model
        learnt += 1
        for variant in _hole_variants(line):
            reading = templates.read(variant)
            if reading is None:
                declined += 1
                continue
            taken += 1
            assert reading == validator.validate_json(variant), variant
            assert orjson.dumps(rebuilt(reading)) == variant
            assert not needs_resource(reading, variant)
    assert learnt > 1000
    assert taken > 10 * learnt
    assert declined > 10 * learnt


def test_a_template_holds_only_what_a_source_repeats() -> None:
    """A text that needs its resource stored, or says ``issued``, teaches no template; one with another device or
    status is read by its own template."""
    validator = ObservationValidator("R4B", datetime(2030, 1, 1, tzinfo=UTC))
    templates = Templates(validator)
    subject = orjson.dumps(cgm(0))  # a subject: the columns do not give it back
    reading = validator.validate_json(subject)
    assert reading is not None
    templates.learn(reading, subject)
    assert templates.read(subject) is None
    issued = changed(rebuilt(reading), issued="2026-10-01T08:26:00Z")
    with_issued = validator.validate_json(orjson.dumps(issued))
    assert with_issued is not None
    templates.learn(with_issued, orjson.dumps(issued))
    assert templates.read(orjson.dumps(issued)) is None
    plain = reading._replace(device=None, source_id="reading-1")
    templates.learn(plain, orjson.dumps(rebuilt(plain)))
    other = plain._replace(source_id="reading-2", status="preliminary")
    assert templates.read(orjson.dumps(rebuilt(other))) is None
    templates.learn(other, orjson.dumps(rebuilt(other)))
    for model in (plain, other):
        again = model._replace(source_id="reading-9", effective_at=model.effective_at + timedelta(minutes=5))
        assert templates.read(orjson.dumps(rebuilt(again))) == again
