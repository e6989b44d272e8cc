"""Dexcom Clarity's CSV export.

The first row names the columns: ``Index, Timestamp (YYYY-MM-DDThh:mm:ss), Event Type, Event Subtype, Patient
Info, Device Info, Source Device ID, Glucose Value (mg/dL)`` (or ``(mmol/L)``), ``Insulin Value (u), Carb Value
(grams), Duration (hh:mm:ss), Glucose Rate of Change (...), Transmitter Time (Long Integer), Transmitter ID``.
Metadata rows without a time follow (FirstName, LastName, DateOfBirth, Device, the alert settings), then the
events in local time without zone: ``EGV`` (a sensor reading; ``Low``/``High`` beyond the sensor's range),
``Carbs``, ``Insulin``, ``Calibration``, ``Alert`` and others (Health, Exercise, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import IO, Final
from zoneinfo import ZoneInfo

from glucokit.fhir.importers.common import (
    CGM_BY_UNIT,
    Converter,
    Where,
    columns,
    csv_lines,
    local_instant,
    number,
    rejected,
    skipped,
    unit_of,
)
from glucokit.fhir.ingest import Record
from glucokit.units import MG_DL, MMOL_L

SYSTEM: Final = "urn:glucokit:import:dexcom-clarity"
_COLUMNS: Final = {
    "time": "Timestamp",
    "event": "Event Type",
    "subtype": "Event Subtype",
    "device": "Source Device ID",
    "glucose": "Glucose Value",
    "insulin": "Insulin Value",
    "carbs": "Carb Value",
    "transmitter": "Transmitter ID",
}
# What Clarity writes beyond the sensor's range (Dexcom G6/G7: 40-400 mg/dL, 2.2-22.2 mmol/L), as FHIR bounds.
_LIMITS: Final = {
    "low": ("<", {MG_DL: Decimal(40), MMOL_L: Decimal("2.2")}),
    "high": (">", {MG_DL: Decimal(400), MMOL_L: Decimal("22.2")}),
}


def records(stream: IO[bytes], zone: ZoneInfo) -> Iterator[Record]:
    """The export's rows as Records; the header row must come before the first event."""
    lines = csv_lines(stream)
    at: dict[str, int] = {}
    unit = ""
    for line in lines:
        position = f"row {line.number}"
        if line.fields is None:
            yield rejected(Where(line.number, position, line.text), "(row)", line.problem or "unreadable")
            continue
        if not at:
            at = columns(line.fields, _COLUMNS)
            unit = (unit_of(line.fields[at["glucose"]]) if "glucose" in at else None) or ""
            if not {"time", "event", "glucose"} <= at.keys() or not unit:
                yield rejected(
                    Where(line.number, position, line.text), "(header)",
                    "not a Dexcom Clarity export: its first row names the columns Timestamp (YYYY-MM-DDThh:mm:ss), "
                    "Event Type and Glucose Value (mg/dL or mmol/L)",
                )  # fmt: skip
                return
            continue
        yield _row(Where(line.number, position, line.text), line.fields, at=at, unit=unit, zone=zone)


def _row(  # noqa: PLR0911 - one answer per kind of row
    where: Where, fields: list[str], *, at: dict[str, int], unit: str, zone: ZoneInfo
) -> Record:
    def cell(name: str) -> str:
        index = at.get(name)
        return fields[index] if index is not None and index < len(fields) else ""

    event, stamp = cell("event"), cell("time")
    if event not in ("EGV", "Carbs", "Insulin"):
        # Metadata rows, calibrations, alerts and other events are read and counted, never stored.
        kind = "metadata" if not stamp else (event.lower() or "untyped event")
        return skipped(where, kind)
    try:
        local = datetime.fromisoformat(stamp)
    except ValueError:
        return rejected(where, "Timestamp", f"{stamp!r} is not a time YYYY-MM-DDThh:mm:ss")
    if local.tzinfo is not None:
        moment: datetime | str = local
    else:
        moment = local_instant(local, zone)
    if isinstance(moment, str):
        return rejected(where, "Timestamp", moment)
    device = cell("transmitter") or cell("device") or None
    source_id = f"{event}/{device or '-'}/{stamp}"
    convert = Converter(SYSTEM)
    if event == "Carbs":
        grams = number(cell("carbs"))
        if grams is None:
            return rejected(where, "Carb Value", f"{cell('carbs')!r} is not a number of grams")
        return convert.carbohydrate(where, grams, moment, source_id)
    if event == "Insulin":
        units = number(cell("insulin"))
        if units is None:
            return rejected(where, "Insulin Value", f"{cell('insulin')!r} is not a number of units")
        return convert.insulin(where, units, moment, f"{source_id}/{cell('subtype')}")
    text = cell("glucose")
    code = CGM_BY_UNIT[unit]
    if text.lower() in _LIMITS:
        comparator, bounds = _LIMITS[text.lower()]
        return convert.glucose(where, code, bounds[unit], moment, source_id, device=device, comparator=comparator)
    value = number(text)
    if value is None:
        return rejected(where, "Glucose Value", f"{text!r} is not a glucose value in {unit}")
    return convert.glucose(where, code, value, moment, source_id, device=device)
