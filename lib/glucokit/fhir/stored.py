"""A stored reading: its columns, and the received resource only where the columns do not give it back.

Most readings (the compact CGM shape, as glucokit, the simulator and the importers write it) say nothing
their columns do not hold, and their resource is most of their row (~720 of ~975 bytes). So ingest keeps
the received resource in ``observation.resource`` only when ``rebuilt``, the Observation that export makes
of the columns, is not *exactly* that resource, and stores null otherwise; export rebuilds a reading with
a null resource with the same function. Exporting therefore gives back what was received either way.

*Exactly* means equal as parsed JSON: the same object members (in any order: JSON objects are unordered,
and ``jsonb`` never kept their order), arrays in the same order, the same strings, and numbers of the same
value and kind: an integer and a number with a fraction differ, so ``120.0`` is not ``120`` (nor ``true``
``1``). A different unit spelling, a time with an offset or more digits, a subject, an id, a note, an
extension, a second identifier or coding: each makes the resource differ, and it is kept.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import orjson

from glucokit.fhir.resources import decimal_json, instant, observation
from glucokit.fhir.validation import ObservationValidator, Reading
from glucokit.units import KINDS

# Stand-ins for what differs between the readings of one source, in the text a template is cut from.
_HOLE_ID: Final = "\x01"
_HOLE_EFFECTIVE: Final = datetime(1, 1, 1, tzinfo=UTC)
_HOLE_VALUE: Final = Decimal("-0.125")
# What each hole may hold: a string without escapes, a time, a number; Templates.read checks them exactly.
_HOLE_PATTERNS: Final = (rb'"([^"\\\x00-\x1f]*)"', rb'"([0-9T:.Z-]*)"', rb"(-?[0-9.eE+]+)")


def rebuilt(reading: Reading) -> dict[str, Any]:
    """The Observation glucokit makes of a reading's columns, in the unit and value it was received in."""
    return observation(
        KINDS[(reading.code_system, reading.code)],
        reading.original_value if reading.original_value is not None else reading.value,
        reading.effective_at,
        source_system=reading.source_system,
        source_id=reading.source_id,
        unit=reading.original_unit or reading.unit,
        status=reading.status,
        category=reading.category,
        device=reading.device,
        issued_at=reading.issued_at,
    )


def _template(reading: Reading) -> re.Pattern[bytes] | None:
    """The text ``rebuilt`` gives every reading like this one (without ``issued``), as orjson writes it, with a
    group where the identifier value, the time and the value go; None where a stand-in is not found once, in
    that order (a fixed part that holds one)."""
    value = _HOLE_VALUE if reading.original_value is None else reading.value
    text = orjson.dumps(
        rebuilt(
            reading._replace(
                source_id=_HOLE_ID,
                effective_at=_HOLE_EFFECTIVE,
                value=value,
                original_value=None if reading.original_value is None else _HOLE_VALUE,
            )
        )
    )
    holes = (orjson.dumps(_HOLE_ID), orjson.dumps(instant(_HOLE_EFFECTIVE)), orjson.dumps(decimal_json(_HOLE_VALUE)))
    pattern = b""
    for hole, group in zip(holes, _HOLE_PATTERNS, strict=True):
        if text.count(hole) != 1:
            return None
        before, text = text.split(hole)
        pattern += re.escape(before) + group
    return re.compile(pattern + re.escape(text))


class Templates:
    """The texts ``rebuilt`` gives the readings of the sources seen so far (``_template``): a received line
    that is one of them filled in is read from its three holes alone (``ObservationValidator.reading_like``,
    the same checks as ``validate_json``), and needs no resource stored, since the columns give it back byte
    for byte. Any other line is parsed and judged whole; its template is learnt when it is one."""

    HELD: Final = 16  # templates held at once; the oldest goes first
    LEARNT: Final = 64  # templates made in one ingest at most (each costs a compiled pattern)

    def __init__(self, validator: ObservationValidator) -> None:
        self._validator = validator
        self._known: dict[re.Pattern[bytes], Reading] = {}
        self._learnt = 0

    def read(self, line: bytes) -> Reading | None:
        """The reading of ``line`` when it is a known template filled in (what ``validate_json`` gives it, and
        ``needs_resource`` false); None otherwise."""
        for pattern, model in self._known.items():
            found = pattern.fullmatch(line)
            if found is not None:
                return self._filled(model, *found.groups())
        return None

    def learn(self, reading: Reading, line: bytes) -> None:
        """Keeps the template of ``line``, which ``validate_json`` read as ``reading`` and ``needs_resource``
        found given back by the columns."""
        if reading.issued_at is not None or self._learnt >= self.LEARNT:
            return
        self._learnt += 1
        pattern = _template(reading)
        found = None if pattern is None else pattern.fullmatch(line)
        if pattern is None or found is None or self._filled(reading, *found.groups()) != reading:
            return
        if len(self._known) >= self.HELD:
            del self._known[next(iter(self._known))]
        self._known[pattern] = reading

    def _filled(self, model: Reading, source_id: bytes, effective: bytes, value: bytes) -> Reading | None:
        try:
            reading = self._validator.reading_like(model, source_id.decode(), effective.decode(), orjson.loads(value))
        except (UnicodeDecodeError, orjson.JSONDecodeError):
            return None
        if reading is None:
            return None
        received = reading.value if reading.original_value is None else reading.original_value
        # The line is the rebuilt text only where each hole is written as orjson writes the reading's.
        exact = (
            orjson.dumps(reading.source_id)[1:-1] == source_id
            and instant(reading.effective_at).encode() == effective
            and orjson.dumps(decimal_json(received)) == value
        )
        return reading if exact else None


def same_json(left: object, right: object) -> bool:
    """Whether two parsed JSON values are exactly equal (see the module's docstring)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same_json(item, right[key]) for key, item in left.items())
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same_json, left, right))
    return left == right


def needs_resource(reading: Reading, received: bytes | dict[str, Any]) -> bool:
    """Whether the received resource (its JSON text, or parsed) must be stored: ``rebuilt`` does not give it back.

    Text that is byte for byte the rebuilt resource as orjson writes it (what glucokit's own files hold)
    is settled without parsing it."""
    again = rebuilt(reading)
    if isinstance(received, bytes):
        if orjson.dumps(again) == received:
            return False
        received = orjson.loads(received)
    return not same_json(again, received)
