"""Apple Health's ``export.xml``: its blood glucose records, streamed.

Each reading is a ``<Record type="HKQuantityTypeIdentifierBloodGlucose" sourceName=... unit="mg/dL"
startDate="2024-03-01 08:05:00 +0100" value="105"/>``; HealthKit writes mmol/L as ``mmol<180.15...>/L`` (the
molar mass it converted with). The file holds every kind of health record and runs to gigabytes, so it is
read with ``iterparse`` and every element is cleared once read: memory stays flat whatever its size. expat
resolves no external entity, and refuses entity expansion beyond its amplification limit (expat >= 2.4).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import IO, Final
from xml.etree.ElementTree import Element, ParseError, iterparse, tostring

from glucokit.fhir.importers.common import CGM_BY_UNIT, Converter, Where, number, rejected
from glucokit.fhir.ingest import Record
from glucokit.units import MG_DL, MMOL_L

SYSTEM: Final = "urn:glucokit:import:apple-health"
GLUCOSE_TYPE: Final = "HKQuantityTypeIdentifierBloodGlucose"
_MAX_RAW: Final = 4096  # characters of a rejected record that the quarantine keeps


def _unit(text: str) -> str | None:
    if text == MG_DL:
        return MG_DL
    if text == MMOL_L or (text.startswith("mmol<") and text.endswith(">/L")):
        return MMOL_L
    return None


def records(stream: IO[bytes]) -> Iterator[Record]:
    """The blood glucose records of an export.xml, in file order; the other records are passed over.

    HealthKit's blood glucose type carries what CGM apps (Dexcom's, Libre's companions) write as well as what
    meters' apps write, and the record does not say which: glucokit stores them as interstitial (CGM) readings,
    so that the forecaster reads them.
    """
    index = depth = 0
    root: Element | None = None
    convert = Converter(SYSTEM)
    try:
        # expat resolves no external entity and stops entity expansion past its amplification limit (2.4.1+).
        for event, element in iterparse(stream, events=("start", "end")):  # noqa: S314
            if event == "start":
                depth += 1
                root = element if root is None else root
                continue
            depth -= 1
            if depth != 1:
                continue
            # A direct child of <HealthData> has ended, with its children (metadata): read it, then drop it
            # from the tree, so that the tree never holds more than one record.
            if element.tag == "Record" and element.get("type") == GLUCOSE_TYPE:
                index += 1
                yield _record(index, element, convert)
            assert root is not None
            root.clear()
    except ParseError as error:
        yield rejected(Where(index + 1, "document", ""), "(xml)", f"malformed XML after record {index}: {error}")


def _record(index: int, element: Element, convert: Converter) -> Record:
    where = Where(index, f"record {index}", tostring(element, encoding="unicode")[:_MAX_RAW])
    unit = _unit(element.get("unit", ""))
    if unit is None:
        return rejected(where, "unit", f"{element.get('unit')!r} is neither mg/dL nor mmol/L")
    value = number(element.get("value", ""))
    if value is None:
        return rejected(where, "value", f"{element.get('value')!r} is not a number")
    stamp = element.get("startDate", "")
    try:
        moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        return rejected(where, "startDate", f"{stamp!r} is not a time YYYY-MM-DD hh:mm:ss ±hhmm")
    source = element.get("sourceName") or "-"
    return convert.glucose(where, CGM_BY_UNIT[unit], value, moment, f"{source}/{moment.isoformat()}", device=source)
