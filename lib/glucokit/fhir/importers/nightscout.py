"""Nightscout: ``entries`` and ``treatments`` as its REST API (v1) returns them, from a file or pulled from a site.

An entry: ``{"_id", "type": "sgv", "sgv": 120, "date": <ms since 1970>, "dateString", "direction",
"device"}`` (``mbg``: a meter's reading; ``cal``: a calibration, counted and not stored). Nightscout keeps
glucose in mg/dL, and writes sensor states as ``sgv`` codes below 40 (e.g. 39 for LOW, 1-12 for sensor
errors), which are rejected as not readings. A treatment: ``{"_id", "eventType", "created_at", "carbs",
"insulin"}``; one with neither carbohydrates nor insulin (a temporary basal, a site change, a note) is counted
and not stored. The entry's ``_id`` is the Observation's identifier, so importing again stores nothing twice.

Pulled from ``/api/v1/entries.json`` and ``/api/v1/treatments.json`` with an access token (``?token=``), in
windows of time from the newest reading already stored (``find[date][$gt]``/``$lte``, ``count``), oldest
window first and each window oldest first: a pull that stops midway leaves what it stored before, and the
next pull resumes after the newest of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO, Any, Final, Literal
from uuid import UUID

import httpx
import orjson

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, as_user
from glucokit.errors import GlucokitError
from glucokit.fhir.importers.common import BLOOD_BY_UNIT, CGM_BY_UNIT, Converter, Where, raw_json, rejected, skipped
from glucokit.fhir.ingest import Limits, Record, array_items
from glucokit.units import MG_DL

ENTRIES: Final = "urn:glucokit:import:nightscout:entries"
TREATMENTS: Final = "urn:glucokit:import:nightscout:treatments"
PAGE: Final = 1000  # entries asked for at once (count=)
WINDOW: Final = timedelta(days=2)  # the first window of a pull; halved while a window fills a page
MIN_WINDOW: Final = timedelta(minutes=1)
TIMEOUT: Final = httpx.Timeout(30.0)
MAX_PAGE_BYTES: Final = 16 * 1024 * 1024  # a page of 1,000 entries is about 300 KB
_LOWEST_READING: Final = 40  # mg/dL: sgv below it is a sensor code, not a glucose value
Kind = Literal["entries", "treatments"]


def records(stream: IO[bytes], limits: Limits | None = None) -> Iterator[Record]:
    """The entries and treatments of a Nightscout JSON export (one array; entries and treatments may mix)."""
    for index, value, problem in array_items(stream, limits or Limits()):
        position = f"entry {index}" if index >= 0 else "document"
        if problem is not None:
            yield Record(position, index, "", problem=problem)
        else:
            yield from convert(index, position, value)


def convert(index: int, position: str, item: Any) -> Iterator[Record]:
    """One entry or treatment as Records (a treatment with carbohydrates and insulin gives two)."""
    where = Where(index, position, raw_json(item))
    if not isinstance(item, dict):
        yield rejected(where, "(entry)", f"expected a JSON object, got {type(item).__name__}")
        return
    identifier = item.get("_id")
    if not isinstance(identifier, str) or not identifier:
        yield rejected(where, "_id", "missing: Nightscout's _id makes the import idempotent")
        return
    if "eventType" in item or "created_at" in item:
        yield from _treatment(where, item, identifier)
    else:
        yield _entry(where, item, identifier)


def _moment(item: dict[str, Any], field: str) -> datetime | str:
    value = item.get(field)
    if field == "date":
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e14:
            return datetime.fromtimestamp(value / 1000, UTC)
        return f"{value!r} is not a time in milliseconds since 1970"
    if not isinstance(value, str):
        return f"missing: a time such as 2024-03-01T08:05:00.000Z, got {value!r}"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return f"{value!r} is not an ISO 8601 time"
    return moment if moment.tzinfo is not None else f"{value!r} has no time zone"


def _entry(where: Where, item: dict[str, Any], identifier: str) -> Record:
    kind = item.get("type", "sgv")
    if kind not in ("sgv", "mbg"):
        return skipped(where, "calibration" if kind == "cal" else f"entry type {kind}")
    field = "date" if "date" in item else "dateString"
    moment = _moment(item, field)
    if isinstance(moment, str):
        return rejected(where, field, moment)
    value = item.get(kind)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return rejected(where, kind, f"expected a glucose value in mg/dL, got {value!r}")
    if value < _LOWEST_READING:
        return rejected(
            where, kind,
            f"{value} is a Nightscout sensor code (LOW, or a sensor error), not a reading: nothing to store",
        )  # fmt: skip
    device = item.get("device") if isinstance(item.get("device"), str) else None
    code = (CGM_BY_UNIT if kind == "sgv" else BLOOD_BY_UNIT)[MG_DL]
    return Converter(ENTRIES).glucose(where, code, Decimal(repr(value)), moment, identifier, device=device)


def _treatment(where: Where, item: dict[str, Any], identifier: str) -> Iterator[Record]:
    amounts = {name: item.get(name) for name in ("carbs", "insulin") if item.get(name) is not None}
    if not amounts:
        yield skipped(where, f"treatment {item.get('eventType') or '(no eventType)'}")
        return
    moment = _moment(item, "created_at")
    if isinstance(moment, str):
        yield rejected(where, "created_at", moment)
        return
    convert = Converter(TREATMENTS)
    for name, amount in amounts.items():
        if not isinstance(amount, int | float) or isinstance(amount, bool):
            yield rejected(where, name, f"expected a number, got {amount!r}")
            continue
        value = Decimal(repr(amount))
        source_id = f"{identifier}/{name}"
        if name == "carbs":
            yield convert.carbohydrate(where, value, moment, source_id)
        else:
            yield convert.insulin(where, value, moment, source_id)


# --- The pull ------------------------------------------------------------------------


def newest(conn: Connection, user_id: UUID, person_id: UUID, system: str) -> datetime | None:
    """The newest reading already stored from ``system``, as the user sees it: where a pull resumes."""
    with as_user(conn, user_id):
        row = conn.execute(query("import_newest_reading"), {"person_id": person_id, "source_system": system}).fetchone()
    moment = row[0] if row else None
    assert moment is None or isinstance(moment, datetime)
    return moment


class Site:
    """A Nightscout site's API v1, read with an access token (which never appears in what glucokit reports)."""

    def __init__(self, url: str, token: str, transport: httpx.BaseTransport | None = None) -> None:
        if not url.startswith(("https://", "http://")):
            raise GlucokitError(f"{url!r} is not a Nightscout site's address (https://...)")
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url, params={"token": token}, timeout=TIMEOUT, transport=transport, follow_redirects=False
        )

    def close(self) -> None:
        self._client.close()

    def records(self, kind: Kind, since: datetime, until: datetime) -> Iterator[Record]:
        """Every entry (or treatment) after ``since`` up to ``until``, oldest window first, as Records."""
        window, start, number = WINDOW, since, 0
        while start < until:
            end = min(start + window, until)
            page = self._page(kind, start, end)
            if len(page) >= PAGE and end - start > MIN_WINDOW:
                window = max((end - start) / 2, MIN_WINDOW)
                continue
            if len(page) >= PAGE:
                yield rejected(
                    Where(number, f"{kind} after {start.isoformat()}", ""), "count",
                    f"{PAGE} or more {kind} within {MIN_WINDOW}: some may be missing",
                )  # fmt: skip
            for item in sorted(page, key=lambda item: _sort_key(kind, item)):
                yield from convert(number, f"{kind} {number}", item)
                number += 1
            start, window = end, WINDOW
        return

    def _page(self, kind: Kind, start: datetime, end: datetime) -> list[Any]:
        if kind == "entries":
            bounds: dict[str, str | int] = {"find[date][$gt]": _millis(start), "find[date][$lte]": _millis(end)}
        else:
            bounds = {"find[created_at][$gt]": _iso(start), "find[created_at][$lte]": _iso(end)}
        try:
            with self._client.stream("GET", f"/api/v1/{kind}.json", params={**bounds, "count": PAGE}) as response:
                if response.status_code in (401, 403):
                    raise GlucokitError(
                        f"{self.url} refused the token ({response.status_code}): it needs the readable role"
                    )
                if response.status_code != 200:
                    raise GlucokitError(f"{self.url} answered {response.status_code} for {kind}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_PAGE_BYTES:
                        raise GlucokitError(f"{self.url} answered {kind} with more than {MAX_PAGE_BYTES} bytes")
        except httpx.HTTPError as error:
            raise GlucokitError(f"{self.url} did not answer for {kind} ({type(error).__name__})") from None
        try:
            page = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise GlucokitError(f"{self.url} answered {kind} with something that is not JSON") from None
        if not isinstance(page, list):
            raise GlucokitError(f"{self.url} answered {kind} with a JSON {type(page).__name__}, not an array")
        return page


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _iso(moment: datetime) -> str:
    # Nightscout compares created_at as text: its own form, UTC with milliseconds and Z.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _sort_key(kind: Kind, item: Any) -> str:
    if not isinstance(item, dict):
        return ""
    if kind == "entries":
        return f"{item.get('date', 0):020.0f}" if isinstance(item.get("date"), int | float) else ""
    return str(item.get("created_at", ""))
