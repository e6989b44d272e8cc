"""The compact-shape check never accepts what fhir.resources rejects (unit tests: no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fhir_samples import carbs, cgm, changed, insulin
from glucokit.fhir.resources import FHIR_VERSIONS, FhirVersion
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
