"""What every importer shares: local times in the person's zone, numbers as exports write them, bounded CSV
lines, and the Observations an export's readings, carbohydrates and insulin become."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import IO, Any, Final, NamedTuple
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, as_user
from glucokit.errors import GlucokitError, NotFound
from glucokit.fhir.ingest import Record
from glucokit.fhir.resources import observation
from glucokit.fhir.validation import Problem
from glucokit.units import CARBOHYDRATE_CODE, GRAM, INSULIN_CODE, INSULIN_UNIT, KINDS, LOINC, MG_DL, MMOL_L, SNOMED

# A CSV line longer than this is no export's row: it is rejected, and only its start is kept.
MAX_LINE: Final = 64 * 1024
# LOINC codes by unit: interstitial glucose (CGM) and blood glucose (a meter's strip).
CGM_BY_UNIT: Final = {MG_DL: "99504-3", MMOL_L: "105272-9"}
BLOOD_BY_UNIT: Final = {MG_DL: "2339-0", MMOL_L: "15074-8"}


def person_time_zone(conn: Connection, user_id: UUID, person_id: UUID) -> ZoneInfo:
    """The person's time zone, as the user who owns the person sees it; local times of an export are read in it."""
    with as_user(conn, user_id):
        row = conn.execute(query("import_person_time_zone"), {"person_id": person_id}).fetchone()
    if row is None:
        raise NotFound(f"person {person_id} does not exist or is not one of yours: nothing was stored")
    try:
        return ZoneInfo(str(row[0]))
    except (ZoneInfoNotFoundError, ValueError):
        raise GlucokitError(f"person {person_id} has time zone {row[0]!r}, which is not an IANA zone") from None


def local_instant(local: datetime, zone: ZoneInfo) -> datetime | str:
    """A wall-clock time without zone as an instant in ``zone``, or why it cannot be one.

    A time the clocks skipped (spring forward) is no time at all there: rejected. A time the clocks showed twice
    (fall back) is taken at its first occurrence (``fold=0``, PEP 495), the offset before the change.
    """
    first = local.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local:
        return f"{local.isoformat()} does not exist in {zone.key} (the clocks skipped it when daylight saving began)"
    return first


def number(text: str) -> Decimal | None:
    """A number as an export writes it: a decimal point or, in some locales, a decimal comma; None if it is none."""
    cleaned = text.strip().replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, in the file
    fields: list[str] | None  # None: too long or unreadable as CSV
    text: str
    problem: str | None = None


def csv_lines(stream: IO[bytes]) -> Iterator[Line]:
    """An export's lines, one at a time, each parsed as CSV on its own (neither export quotes line breaks):
    a byte-order mark and CRLF are taken, bytes that are not UTF-8 are replaced, and a line never holds more
    than ``MAX_LINE`` characters in memory. The delimiter (comma, semicolon or tab) is the one of the first
    line that has any."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
    delimiter: str | None = None
    number_ = 0
    while line := text.readline(MAX_LINE + 1):
        number_ += 1
        if len(line) > MAX_LINE and not line.endswith("\n"):
            while (more := text.readline(MAX_LINE)) and not more.endswith("\n"):
                pass
            yield Line(number_, None, line[:1024], f"longer than {MAX_LINE} characters: no row of this export")
            continue
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if delimiter is None:
            delimiter = max((",", ";", "\t"), key=line.count)
        try:
            fields = next(csv.reader([line], delimiter=delimiter, strict=True))
        except csv.Error as error:
            yield Line(number_, None, line, f"not a CSV row ({error})")
            continue
        yield Line(number_, [field.strip() for field in fields], line)
    # The stream is its owner's to close (a request body may be read again).
    text.detach()


def columns(header: list[str], wanted: dict[str, str]) -> dict[str, int]:
    """Where each wanted column is: ``wanted`` maps a name to the text its header starts with."""
    found: dict[str, int] = {}
    for index, title in enumerate(header):
        for name, prefix in wanted.items():
            if name not in found and title.lower().startswith(prefix.lower()):
                found[name] = index
    return found


def unit_of(title: str) -> str | None:
    """The glucose unit a column's title names (``Glucose Value (mmol/L)``, ``Historic Glucose mg/dL``)."""
    lowered = title.lower()
    return MG_DL if "mg/dl" in lowered else MMOL_L if "mmol/l" in lowered else None


class Where(NamedTuple):
    """Where a record was in its export, and the record as received (the quarantine keeps it)."""

    ordinal: int
    position: str
    raw: str


class Converter:
    """Turns one export's records into Records for ``Ingest.resources``, under one identifier system."""

    def __init__(self, system: str) -> None:
        self.system = system

    def glucose(
        self, where: Where, code: str, value: Decimal, at: datetime, source_id: str,
        *, device: str | None = None, comparator: str | None = None,
    ) -> Record:  # fmt: skip
        kind = KINDS[(LOINC, code)]
        resource = observation(
            kind, value, at, source_system=self.system, source_id=source_id, device=device, comparator=comparator
        )
        return Record(where.position, where.ordinal, where.raw, resource=resource)

    def carbohydrate(self, where: Where, grams: Decimal, at: datetime, source_id: str) -> Record:
        kind = KINDS[(LOINC, CARBOHYDRATE_CODE)]
        resource = observation(kind, grams, at, source_system=self.system, source_id=source_id, unit=GRAM)
        return Record(where.position, where.ordinal, where.raw, resource=resource)

    def insulin(self, where: Where, units: Decimal, at: datetime, source_id: str) -> Record:
        kind = KINDS[(SNOMED, INSULIN_CODE)]
        resource = observation(kind, units, at, source_system=self.system, source_id=source_id, unit=INSULIN_UNIT)
        return Record(where.position, where.ordinal, where.raw, resource=resource)


def rejected(where: Where, field: str, reason: str) -> Record:
    return Record(where.position, where.ordinal, where.raw, problem=Problem(field, reason))


def skipped(where: Where, kind: str) -> Record:
    return Record(where.position, where.ordinal, where.raw, skip=kind)


def raw_json(value: Any) -> str:
    return orjson.dumps(value).decode()
