"""Importers of the exports people have: Nightscout, Dexcom Clarity, LibreView, Apple Health.

Each turns its source's records into FHIR R4B Observations with glucokit's builder (fhir.resources) and hands
them to ``Ingest.resources``: the same validation, quarantine and idempotency as ``glucokit ingest``.
May import: fhir, db and the shared facts (the fhir package's rule).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Final, Literal
from zoneinfo import ZoneInfo

from glucokit.fhir.importers import apple_health, dexcom_clarity, libreview, nightscout
from glucokit.fhir.ingest import Record

Format = Literal["nightscout", "dexcom-clarity", "libreview", "apple-health"]
FORMATS: Final[tuple[Format, ...]] = ("nightscout", "dexcom-clarity", "libreview", "apple-health")


def records(form: Format, stream: IO[bytes], zone: ZoneInfo) -> Iterator[Record]:
    """An export's records, read from ``stream`` as they are needed; ``zone`` reads local times without zone."""
    match form:
        case "nightscout":
            return nightscout.records(stream)
        case "dexcom-clarity":
            return dexcom_clarity.records(stream, zone)
        case "libreview":
            return libreview.records(stream, zone)
        case "apple-health":
            return apple_health.records(stream)
