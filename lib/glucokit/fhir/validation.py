"""One FHIR Observation in, one reading to store or the precise reasons it cannot be stored.

Two questions are asked of every entry, in this order:

1. Structure: is it a valid FHIR Observation of the chosen version (R4B or R5)?
   fhir.resources answers this, but it costs several times everything else
   ingest does for a reading. So entries in the compact shape that CGM exports
   use (only the elements glucokit reads, see ``_COMPACT_KEYS``) are checked
   here against the same FHIR rules; anything else, and anything this check
   does not accept, goes to fhir.resources, whose errors are reported.
   tests/test_validation.py checks that this check never accepts what
   fhir.resources rejects. Ingest of NDJSON asks msgspec first
   (``ObservationValidator.validate_json``): it decodes a line straight into the
   compact shape's types with the same rules, and a line it does not take whole
   goes the way above, so every rejection is reported by the same code.
2. Meaning: a code glucokit keeps, in the unit that code is reported in, within
   a physiological range, at a time with a time zone that is not in the
   future, with an identifier that makes ingest idempotent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Final, Literal, NamedTuple

import msgspec
from msgspec import UNSET, Meta, UnsetType
from pydantic import BaseModel, ValidationError

from glucokit.fhir.resources import OBSERVATION_CATEGORY, FhirVersion
from glucokit.units import CGM_CODES, GLUCOSE_CODES, KINDS, MG_DL, MMOL_L, UCUM, UNIT_SYNONYMS, ObservationKind

# How far ahead of the server's clock a reading may be (device clocks drift).
FUTURE_TOLERANCE: Final = timedelta(minutes=5)

_TIME_ELEMENTS: Final = frozenset({"effectiveDateTime", "effectiveInstant", "issued"})

# Limits of the observation table's columns (see the observation migration).
_MAX_TEXT: Final = 255
_CATEGORY: Final = re.compile(r"[a-z][a-z-]{0,63}")


@dataclass(frozen=True)
class Problem:
    """Why an entry cannot be stored: the FHIR path of the offending element and the reason."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class Reading(NamedTuple):
    """A validated observation, normalised for the observation table (in its column order)."""

    status: str
    category: str
    code_system: str
    code: str
    value: Decimal
    unit: str
    original_value: Decimal | None
    original_unit: str | None
    effective_at: datetime
    issued_at: datetime | None
    device: str | None
    source_system: str
    source_id: str


# --- Structure: the compact shape, checked against FHIR's own rules ---------

# Regular expressions of FHIR's primitive types (FHIR R4B/R5, datatypes.html#primitive).
_DATE_TIME: Final = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
    r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
_INSTANT: Final = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
_CODE: Final = re.compile(r"[^\s]+(\s[^\s]+)*")
_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_URI: Final = re.compile(r"\S+")
_STRING: Final = re.compile(r"[ \r\n\t\S]+")
_STATUS_ORDER: Final = (
    "registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown",
)  # fmt: skip
_STATUS: Final = frozenset(_STATUS_ORDER)
# Statuses of readings that are not (or no longer) valid results: kept as rows, never used as data.
WITHDRAWN: Final = frozenset({"entered-in-error", "cancelled"})


def cgm_filter() -> dict[str, list[str]]:
    """The parameters (``codes``, ``withdrawn``) the named queries take to pick a person's valid CGM readings."""
    return {"codes": sorted(CGM_CODES), "withdrawn": sorted(WITHDRAWN)}


def _pattern_match(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _string(value: object) -> bool:
    return _pattern_match(_STRING, value)


def _uri(value: object) -> bool:
    return _pattern_match(_URI, value)


def _code(value: object) -> bool:
    return _pattern_match(_CODE, value)


def _number(value: object) -> bool:
    # bool is an int in Python but never a JSON number; 1e400 parses as infinity but is no FHIR decimal.
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and math.isfinite(value)
    )


_CODING_KEYS: Final = frozenset({"system", "code", "display"})
_CONCEPT_KEYS: Final = frozenset({"coding", "text"})
_REFERENCE_KEYS: Final = frozenset({"reference", "display"})
_IDENTIFIER_KEYS: Final = frozenset({"system", "value"})
_QUANTITY_KEYS: Final = frozenset({"value", "unit", "system", "code"})
# The compact shape: only the elements glucokit reads (each checked below with its FHIR type).
_COMPACT_KEYS: Final = frozenset(
    {
        "resourceType", "id", "identifier", "status", "category", "code", "subject",
        "effectiveDateTime", "effectiveInstant", "issued", "valueQuantity", "device",
    }
)  # fmt: skip


def _fields(value: object, allowed: frozenset[str], checks: dict[str, Callable[[object], bool]]) -> bool:
    """A non-empty JSON object with only ``allowed`` keys, each present one passing its check."""
    if not isinstance(value, dict) or not value or not value.keys() <= allowed:
        return False
    return all(checks[key](item) for key, item in value.items())


def _filled_list_of(value: object, item: Callable[[object], bool]) -> bool:
    return isinstance(value, list) and bool(value) and all(map(item, value))


def _coding(value: object) -> bool:
    return _fields(value, _CODING_KEYS, {"system": _uri, "code": _code, "display": _string})


def _concept(value: object) -> bool:
    return _fields(value, _CONCEPT_KEYS, {"coding": lambda codings: _filled_list_of(codings, _coding), "text": _string})


def _reference(value: object) -> bool:
    return _fields(value, _REFERENCE_KEYS, {"reference": _string, "display": _string})


def _identifier(value: object) -> bool:
    return _fields(value, _IDENTIFIER_KEYS, {"system": _uri, "value": _string})


def _quantity_shape(value: object) -> bool:
    return _fields(value, _QUANTITY_KEYS, {"value": _number, "unit": _string, "system": _uri, "code": _code})


_ELEMENT_CHECKS: Final[dict[str, Callable[[object], bool]]] = {
    "resourceType": lambda value: value == "Observation",
    "id": lambda value: _pattern_match(_ID, value),
    "identifier": lambda value: _filled_list_of(value, _identifier),
    "status": lambda value: value in _STATUS,
    "category": lambda value: _filled_list_of(value, _concept),
    "code": _concept,
    "subject": _reference,
    "effectiveDateTime": lambda value: _pattern_match(_DATE_TIME, value),
    "effectiveInstant": lambda value: _pattern_match(_INSTANT, value),
    "issued": lambda value: _pattern_match(_INSTANT, value),
    "valueQuantity": _quantity_shape,
    "device": _reference,
}


def is_compact(resource: dict[str, Any]) -> bool:
    """True when ``resource`` uses only the compact shape's elements, all valid FHIR (status and code required)."""
    return (
        "status" in resource
        and "code" in resource
        and not ("effectiveDateTime" in resource and "effectiveInstant" in resource)
        and _fields(resource, _COMPACT_KEYS, _ELEMENT_CHECKS)
    )


# --- The same shape decoded by msgspec in one pass (the fast path of NDJSON ingest) ---------------------
# Each type below takes no more than ``is_compact`` takes (some take less: a coding needs a system and a
# code, an identifier a system and a value, a quantity UCUM's system, code and a value), and each pattern
# is the one above, anchored: msgspec searches, ``is_compact`` matches whole. What msgspec refuses goes
# the full way, which reports it; tests/test_validation.py checks both ways agree.


def _whole(pattern: re.Pattern[str]) -> str:
    return rf"\A(?:{pattern.pattern})\Z"


_FastString = Annotated[str, Meta(pattern=_whole(_STRING))]
_FastUri = Annotated[str, Meta(pattern=_whole(_URI))]
_FastCode = Annotated[str, Meta(pattern=_whole(_CODE))]
_FastId = Annotated[str, Meta(pattern=_whole(_ID))]
_FastDateTime = Annotated[str, Meta(pattern=_whole(_DATE_TIME))]
_FastInstant = Annotated[str, Meta(pattern=_whole(_INSTANT))]


class _FastCoding(msgspec.Struct, forbid_unknown_fields=True):
    system: _FastUri
    code: _FastCode
    display: _FastString | UnsetType = UNSET


class _FastConcept(msgspec.Struct, forbid_unknown_fields=True):
    coding: Annotated[list[_FastCoding], Meta(min_length=1)]
    text: _FastString | UnsetType = UNSET


class _FastReference(msgspec.Struct, forbid_unknown_fields=True):
    reference: _FastString | UnsetType = UNSET
    display: _FastString | UnsetType = UNSET


class _FastIdentifier(msgspec.Struct, forbid_unknown_fields=True):
    system: _FastUri
    value: _FastString


class _FastQuantity(msgspec.Struct, forbid_unknown_fields=True):
    value: int | float
    system: Literal["http://unitsofmeasure.org"]
    code: _FastCode
    unit: _FastString | UnsetType = UNSET


class _FastObservation(msgspec.Struct, forbid_unknown_fields=True):
    resourceType: Literal["Observation"]
    identifier: Annotated[list[_FastIdentifier], Meta(min_length=1)]
    status: Literal[
        "registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"
    ]
    code: _FastConcept
    valueQuantity: _FastQuantity
    id: _FastId | UnsetType = UNSET
    category: Annotated[list[_FastConcept], Meta(min_length=1)] | UnsetType = UNSET
    subject: _FastReference | UnsetType = UNSET
    effectiveDateTime: _FastDateTime | UnsetType = UNSET
    effectiveInstant: _FastInstant | UnsetType = UNSET
    issued: _FastInstant | UnsetType = UNSET
    device: _FastReference | UnsetType = UNSET


_FAST_DECODER: Final = msgspec.json.Decoder(_FastObservation)
_KINDS_GET: Final = KINDS.get


def _fast_value(kind: ObservationKind, factor: Decimal, value: float) -> tuple[Decimal, Decimal] | None:
    """A decoded quantity's value as received and as stored (times ``factor``, the kind's), when it is a
    finite number in the kind's range; None otherwise."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    received = Decimal(repr(value))
    stored = received * factor
    if not kind.low <= stored <= kind.high:
        return None
    return received, stored


@cache
def _observation_model(version: FhirVersion) -> type[BaseModel]:
    if version == "R5":
        from fhir.resources.observation import Observation as R5Observation  # noqa: PLC0415

        return R5Observation
    from fhir.resources.R4B.observation import Observation as R4BObservation  # noqa: PLC0415

    return R4BObservation


def _path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith("__") and not part[:1].isupper():
            path += f".{part}" if path else part
    return path or "(resource)"


def structure_problems(resource: dict[str, Any], version: FhirVersion) -> list[Problem]:
    """fhir.resources' verdict on ``resource`` as an Observation of ``version`` (empty when valid)."""
    try:
        _observation_model(version).model_validate(resource)
    except ValidationError as invalid:
        return [Problem(_path(error["loc"]), error["msg"]) for error in invalid.errors()]
    return []


# --- Meaning ------------------------------------------------------------------


def _known_kinds() -> str:
    return ", ".join(f"{kind.code} ({kind.display})" for kind in KINDS.values())


def _kind(code: dict[str, Any]) -> ObservationKind | Problem:
    codings = [(coding.get("system"), coding.get("code")) for coding in code.get("coding", [])]
    for key in codings:
        if key in KINDS:
            return KINDS[key]
    named = ", ".join(f"{system}|{value}" for system, value in codings) or "no coding"
    return Problem("code", f"unknown code ({named}); glucokit keeps {_known_kinds()}")


def _quantity(resource: dict[str, Any], kind: ObservationKind) -> tuple[Decimal, str] | Problem:  # noqa: PLR0911
    quantity = resource.get("valueQuantity")
    if quantity is None:
        others = sorted(key for key in resource if key.startswith("value"))
        if others:
            return Problem(others[0], f"{kind.code} needs a valueQuantity, got {others[0]}")
        return Problem("valueQuantity", f"missing: {kind.code} needs a value in {kind.received_unit}")
    if "comparator" in quantity:
        return Problem(
            "valueQuantity.comparator",
            f"a value reported as {quantity['comparator']}{quantity.get('value')} is a bound, not a reading",
        )
    value = quantity.get("value")
    if not _number(value):
        return Problem("valueQuantity.value", f"expected a number, got {value!r}")
    system = quantity.get("system")
    if system is not None and system != UCUM:
        return Problem("valueQuantity.system", f"units must be UCUM ({UCUM}), got {system}")
    unit = quantity.get("code") if system == UCUM else quantity.get("code", quantity.get("unit"))
    if unit is None:
        return Problem("valueQuantity.code", f"missing unit: {kind.code} is reported in {kind.received_unit}")
    unit = UNIT_SYNONYMS.get(unit, unit)
    if unit != kind.received_unit:
        return Problem("valueQuantity.code", _unit_mismatch(kind, unit))
    return Decimal(repr(value)), unit


def _unit_mismatch(kind: ObservationKind, unit: str) -> str:
    expected = f"{kind.code} ({kind.display}) is reported in {kind.received_unit}, got {unit}"
    if kind.is_glucose and unit in (MG_DL, MMOL_L):
        matching = sorted(code for code, code_unit in GLUCOSE_CODES.items() if code_unit == unit)
        return f"{expected}: a mg/dL-mmol/L mix-up? Readings in {unit} use {' or '.join(matching)}"
    return expected


def _range_problem(kind: ObservationKind, received: Decimal, stored: Decimal) -> Problem | None:
    if kind.low <= stored <= kind.high:
        return None
    shown = f"{received} {kind.received_unit}" + (f" ({stored} {kind.unit})" if kind.factor != 1 else "")
    reason = f"{shown} is outside the plausible range {kind.low}-{kind.high} {kind.unit}"
    if kind.is_glucose and kind.received_unit == MG_DL and stored < kind.low:
        reason += " (a value in mmol/L sent as mg/dL?)"
    elif kind.is_glucose and kind.received_unit == MMOL_L and stored > kind.high:
        reason += " (a value in mg/dL sent as mmol/L?)"
    return Problem("valueQuantity.value", reason)


def _moment(field: str, text: object, now: datetime) -> datetime | Problem:
    if not isinstance(text, str):
        # fhir.resources lets a JSON number through as a dateTime (20261001): it is no time.
        return Problem(field, f"expected a date, time and time zone as a string, got {text!r}")
    if "T" not in text:
        return Problem(field, f"{text} has no time of day; glucokit needs a date, time and time zone")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        return Problem(field, f"{text} is not a time glucokit can read ({error})")
    if moment.tzinfo is None:
        return Problem(field, f"{text} has no time zone; add Z or an offset such as +01:00")
    if moment > now + FUTURE_TOLERANCE:
        return Problem(field, f"{text} is in the future (the server's clock says {now.isoformat()})")
    return moment


def _effective(resource: dict[str, Any], now: datetime) -> datetime | Problem:
    for field in ("effectiveDateTime", "effectiveInstant"):
        if field in resource:
            return _moment(field, resource[field], now)
    if "effectivePeriod" in resource:
        start = resource["effectivePeriod"].get("start")
        if start is None:
            return Problem("effectivePeriod.start", "missing: glucokit files a period under its start")
        return _moment("effectivePeriod.start", start, now)
    others = sorted(key for key in resource if key.startswith("effective"))
    if others:
        return Problem(others[0], "glucokit reads effectiveDateTime, effectiveInstant or effectivePeriod")
    return Problem("effective[x]", "missing: a reading needs the time it was taken (effectiveDateTime)")


def _source(resource: dict[str, Any]) -> tuple[str, str] | Problem:
    for identifier in resource.get("identifier", []):
        system, value = identifier.get("system"), identifier.get("value")
        if system and value:
            if len(system) > _MAX_TEXT or len(value) > _MAX_TEXT:
                return Problem("identifier", f"system and value may have at most {_MAX_TEXT} characters")
            return system, value
    return Problem(
        "identifier",
        "missing: an identifier with system and value from the source makes the reading idempotent to ingest",
    )


def _category(resource: dict[str, Any], kind: ObservationKind) -> str | Problem:
    codings = [coding for concept in resource.get("category", []) for coding in concept.get("coding", [])]
    if not codings:
        return kind.category
    chosen = next((coding for coding in codings if coding.get("system") == OBSERVATION_CATEGORY), codings[0])
    code = chosen.get("code")
    if not isinstance(code, str) or _CATEGORY.fullmatch(code) is None:
        return Problem("category", f"category code {code!r} is not a FHIR observation category")
    return code


def _device(resource: dict[str, Any]) -> str | Problem | None:
    device = resource.get("device")
    if device is None:
        return None
    text: str | None = device.get("display") or device.get("reference")
    if text is not None and len(text) > _MAX_TEXT:
        return Problem("device", f"at most {_MAX_TEXT} characters")
    return text


class ObservationValidator:
    """Validates Observations of one FHIR version against the clock of one ingest."""

    def __init__(self, version: FhirVersion, now: datetime) -> None:
        self.version: FhirVersion = version
        self.now = now

    def validate(self, resource: object) -> Reading | list[Problem]:
        if not isinstance(resource, dict):
            return [Problem("(entry)", f"expected a JSON object, got {type(resource).__name__}")]
        if resource.get("resourceType") != "Observation":
            return [
                Problem("resourceType", f"glucokit ingests Observation resources, got {resource.get('resourceType')!r}")
            ]
        if not is_compact(resource):
            problems = structure_problems(resource, self.version)
            if problems:
                return [self._clearer(problem, resource) for problem in problems]
        return self._meaning(resource)

    def validate_json(self, text: bytes | str) -> Reading | None:
        """The reading of one Observation's JSON text when it is the compact shape and valid in every respect
        (the same reading ``validate`` gives); None for anything else, which ``validate`` then judges."""
        try:
            observation = _FAST_DECODER.decode(text)
        except msgspec.DecodeError:
            return None
        return self._fast_meaning(observation)

    def _fast_meaning(self, resource: _FastObservation) -> Reading | None:  # noqa: PLR0911, PLR0912
        """``_meaning`` for a decoded compact Observation, None wherever ``_meaning`` would find a problem."""
        subject, device_reference = resource.subject, resource.device
        if subject is not UNSET and subject.reference is UNSET and subject.display is UNSET:
            return None  # {}: not the compact shape
        if device_reference is not UNSET and device_reference.reference is UNSET and device_reference.display is UNSET:
            return None
        for coding in resource.code.coding:
            kind = _KINDS_GET((coding.system, coding.code))
            if kind is not None:
                break
        else:
            return None
        quantity = resource.valueQuantity
        unit = UNIT_SYNONYMS.get(quantity.code, quantity.code)
        if unit != kind.received_unit:
            return None
        factor = kind.factor
        values = _fast_value(kind, factor, quantity.value)
        if values is None:
            return None
        received, stored = values
        if isinstance(resource.effectiveDateTime, str):
            if isinstance(resource.effectiveInstant, str):
                return None
            effective = _moment("effectiveDateTime", resource.effectiveDateTime, self.now)
        elif isinstance(resource.effectiveInstant, str):
            effective = _moment("effectiveInstant", resource.effectiveInstant, self.now)
        else:
            return None
        issued = _moment("issued", resource.issued, self.now) if isinstance(resource.issued, str) else None
        if isinstance(effective, Problem) or isinstance(issued, Problem):
            return None
        identifier = resource.identifier[0]
        if len(identifier.system) > _MAX_TEXT or len(identifier.value) > _MAX_TEXT:
            return None
        category = kind.category
        if isinstance(resource.category, list):
            codings = [coding for concept in resource.category for coding in concept.coding]
            chosen = next((coding for coding in codings if coding.system == OBSERVATION_CATEGORY), codings[0])
            if _CATEGORY.fullmatch(chosen.code) is None:
                return None
            category = chosen.code
        device = None
        if device_reference is not UNSET:
            device = device_reference.display or device_reference.reference or None
            if device is not None and len(device) > _MAX_TEXT:
                return None
        converted = factor != 1
        return Reading(
            status=resource.status,
            category=category,
            code_system=kind.system,
            code=kind.code,
            value=stored,
            unit=kind.unit,
            original_value=received if converted else None,
            original_unit=unit if converted else None,
            effective_at=effective,
            issued_at=issued,
            device=device,
            source_system=identifier.system,
            source_id=identifier.value,
        )

    def reading_like(self, model: Reading, source_id: str, effective: str, value: object) -> Reading | None:
        """What ``validate_json`` reads from the Observation of ``model`` (one that ``validate_json`` gave, without
        ``issued``) with another identifier value, ``effectiveDateTime`` and value: the same checks of those three;
        None wherever ``validate_json`` would not take them (then it judges the whole)."""
        if not _string(source_id) or len(source_id) > _MAX_TEXT or not _pattern_match(_DATE_TIME, effective):
            return None
        moment = _moment("effectiveDateTime", effective, self.now)
        if isinstance(moment, Problem) or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        kind = _KINDS_GET((model.code_system, model.code))
        values = None if kind is None else _fast_value(kind, kind.factor, value)
        if values is None:
            return None
        received, stored = values
        status, category, code_system, code, _, unit, _, original_unit, _, issued, device, source_system, _ = model
        original_value = None if original_unit is None else received
        return Reading(
            status, category, code_system, code, stored, unit, original_value, original_unit, moment, issued, device,
            source_system, source_id,
        )  # fmt: skip

    def _clearer(self, problem: Problem, resource: dict[str, Any]) -> Problem:
        """fhir.resources says a time "does not match spec regex"; say what is wrong with it instead."""
        value = resource.get(problem.field)
        if problem.field in _TIME_ELEMENTS and isinstance(value, str):
            moment = _moment(problem.field, value, self.now)
            if isinstance(moment, Problem):
                return moment
        return problem

    def _meaning(self, resource: dict[str, Any]) -> Reading | list[Problem]:
        # fhir.resources checks that status is a code; FHIR binds it to ObservationStatus (required).
        if resource["status"] not in _STATUS:
            return [
                Problem("status", f"{resource['status']!r} is not an Observation status ({', '.join(_STATUS_ORDER)})")
            ]
        kind = _kind(resource["code"])
        if isinstance(kind, Problem):
            return [kind]
        quantity, effective = _quantity(resource, kind), _effective(resource, self.now)
        source, category, device = _source(resource), _category(resource, kind), _device(resource)
        issued = _moment("issued", resource["issued"], self.now) if "issued" in resource else None
        problems = [
            part for part in (quantity, effective, source, category, device, issued) if isinstance(part, Problem)
        ]
        if isinstance(quantity, tuple):
            out_of_range = _range_problem(kind, quantity[0], quantity[0] * kind.factor)
            if out_of_range is not None:
                problems.append(out_of_range)
        if (
            problems
            or isinstance(quantity, Problem)
            or isinstance(effective, Problem)
            or isinstance(source, Problem)
            or isinstance(category, Problem)
            or isinstance(device, Problem)
            or isinstance(issued, Problem)
        ):
            return problems
        received, unit = quantity
        converted = kind.factor != 1
        return Reading(
            status=resource["status"],
            category=category,
            code_system=kind.system,
            code=kind.code,
            value=received * kind.factor,
            unit=kind.unit,
            original_value=received if converted else None,
            original_unit=unit if converted else None,
            effective_at=effective,
            issued_at=issued,
            device=device,
            source_system=source[0],
            source_id=source[1],
        )
