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

from typing import Any

import orjson

from glucokit.fhir.resources import observation
from glucokit.fhir.validation import Reading
from glucokit.units import KINDS


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
