"""FHIR in: Observations, Bundles and NDJSON files into a person's observations, as the signed-in user.

Ingest runs under row-level security as the user who owns the person (never
as ``service_role``). Input streams through in batches: each batch is staged
with a binary COPY and merged into ``public.observation`` by the source's
identifier, so the same reading sent twice is stored once and a new version of
a reading replaces the old one. The received resource is stored beside the
columns only where they do not give it back exactly (glucokit.fhir.stored).
Every entry that cannot be stored is reported with its position, field and
reason, and quarantined in the same transaction as the batch it belongs to;
the valid entries around it are kept.

Formats: a JSON document (a Bundle, or one Observation) up to
``Limits.max_document_bytes``, read entry by entry without loading it whole;
NDJSON (one resource per line, FHIR Bulk Data's format) of any length, with
``Limits.max_entry_bytes`` per line. Both may be gzip-compressed. And records of other
exports (Nightscout, Dexcom Clarity, LibreView, Apple Health: glucokit.fhir.importers), each already
turned into an Observation or into the problem that stopped it (``Ingest.resources``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import queue
import struct
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import IO, Any, Final, NamedTuple, cast
from uuid import UUID

import ijson
import orjson
import psycopg
from psycopg.types.json import Jsonb

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, as_user, require_person
from glucokit.errors import GlucokitError
from glucokit.fhir.resources import FHIR_VERSIONS, FhirVersion
from glucokit.fhir.stored import Templates, needs_resource
from glucokit.fhir.validation import ObservationValidator, Problem, Reading

MIB: Final = 1024 * 1024
READ_CHUNK: Final = 16 * 1024  # bytes the JSON parser reads at a time
# Bundle types that carry resources to keep (a transaction or batch is taken
# entry by entry: valid entries are kept even when others are rejected).
BUNDLE_TYPES: Final = frozenset({"collection", "batch", "transaction", "searchset"})
NDJSON_SUFFIXES: Final = (".ndjson", ".jsonl")
JSON_SUFFIXES: Final = (".json",)
_CORRECTIONS: Final = frozenset({"amended", "corrected", "entered-in-error"})
_REPORTED_REJECTIONS: Final = 100
_FIRST_BATCH: Final = 500  # entries in an ingest's first batch (see _Run.next_size)
# Column types of the staging table, in ingest_copy_stage's order (binary COPY needs them).
STAGE_TYPES: Final = [
    "text", "text", "text", "text", "numeric", "text", "numeric", "text", "timestamptz", "timestamptz",
    "text", "text", "text", "text",
]  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """How much ingest takes at once."""

    max_document_bytes: int = 64 * MIB  # one JSON document (Bundle or Observation); larger ones are refused whole
    max_entry_bytes: int = MIB  # one resource (an NDJSON line, a Bundle entry); a larger one is rejected
    max_depth: int = 64  # JSON nesting (a CGM Observation in a Bundle is about 8 deep); a deeper entry is rejected
    batch_size: int = 5000  # entries per staged batch and transaction (the first batches fewer)...
    batch_bytes: int = 4 * MIB  # ...or fewer, once their resources' JSON adds up to this


@dataclass(frozen=True)
class Rejection:
    """An entry that was not stored: where it was and why (its payload is in the quarantine)."""

    position: str  # "entry 3" (0-based, in a bundle), "line 4" (1-based, NDJSON) or "document"
    entry_index: int | None
    problems: tuple[Problem, ...]

    def __str__(self) -> str:
        return f"{self.position}: " + "; ".join(map(str, self.problems))


@dataclass
class IngestReport:
    """What one ingest did."""

    source: str
    person_id: UUID
    entries: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)  # the first 100
    # Records of an export that were read and deliberately not stored (calibrations, alerts), by kind.
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def stored(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def summary(self) -> str:
        return (
            f"{self.source}: {self.entries} entries for person {self.person_id}: "
            f"{self.stored} stored ({self.inserted} new, {self.updated} updated, {self.unchanged} unchanged), "
            f"{self.rejected} rejected and quarantined"
            + "".join(f", {count} {kind} skipped" for kind, count in sorted(self.skipped.items()))
        )


@dataclass(frozen=True)
class Record:
    """One record of an export (a CSV row, a Nightscout entry, an XML element) as an importer hands it to
    ``Ingest.resources``: the Observation made of it, or the problem that stopped it, or the kind of record
    that is read and not stored (``skip``). ``raw`` is the record as received: the quarantine keeps it."""

    position: str  # "row 12" (1-based, in the file), "entry 3", "record 7"
    ordinal: int
    raw: str
    resource: dict[str, Any] | None = None
    problem: Problem | None = None
    skip: str | None = None


class _Entry(NamedTuple):
    position: str
    ordinal: int  # entry or line number; -1 for the whole document
    value: Any  # the parsed JSON, or None when it could not be parsed
    text: str | None  # the resource's JSON text when it is at hand (NDJSON)
    problem: Problem | None
    raw: str | None = None  # an imported record as received, which the quarantine keeps instead of the resource
    line: bytes | None = None  # an NDJSON line not parsed yet: ``_Run`` parses and checks it in one pass


@dataclass
class _Batch:
    rows: list[tuple[object, ...]] = field(default_factory=list)
    corrections: bool = False
    quarantine: list[dict[str, object]] = field(default_factory=list)
    size: int = 0  # bytes of resource JSON held: rows' and quarantined payloads'
    first: datetime | None = None  # the span of the rows' effective times
    last: datetime | None = None


def payload_text(raw: bytes | str) -> str:
    """Received bytes as storable text: PostgreSQL text holds neither NUL nor invalid UTF-8, so those are escaped."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="backslashreplace")
    return text.replace("\x00", "\\x00")


# --- Reading documents ---------------------------------------------------------


def _malformed(error: Exception) -> Problem:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return Problem("(json)", f"malformed JSON: {first_line}")


def _ndjson_entries(stream: IO[bytes], limits: Limits) -> Iterator[_Entry]:
    number = 0
    while received := stream.readline(limits.max_entry_bytes + 1):
        number += 1
        line = received.rstrip(b"\r\n")
        position = f"line {number}"
        if len(line) > limits.max_entry_bytes:
            # Read on to the end of the line without holding it: only its start is kept.
            length = len(line)
            while not received.endswith(b"\n") and (received := stream.readline(MIB)):
                length += len(received.rstrip(b"\r\n"))
            problem = Problem(
                "(line)",
                f"{length} bytes, above the limit of {limits.max_entry_bytes} per resource "
                f"(the quarantine keeps its first {limits.max_entry_bytes} bytes)",
            )
            yield _Entry(position, number, None, payload_text(line[: limits.max_entry_bytes]), problem)
            continue
        if not line.strip():
            continue
        yield _Entry(position, number, None, None, None, line=line)


class _Refused(Exception):
    """A JSON value that is not read on: the problem that stopped it."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


_OPENS: Final = frozenset({"start_map", "start_array"})
_CLOSES: Final = frozenset({"end_map", "end_array"})


class _Events:
    """A JSON document's parse events with the nesting depth after each, from ijson's ``basic_parse``.

    ``basic_parse`` is used because its events carry no path: ``ijson.parse`` and ``ijson.items`` attach
    each event's full path, so a document nested n levels deep costs O(n²) memory before any check can
    run (a 40 KB Bundle nested 20,000 deep took ~1 GB). Here each event is a few bytes and the parser
    reads ``READ_CHUNK`` bytes at a time, so what a document can make the reader hold is bounded by the
    chunk and by what the caller builds.
    """

    def __init__(self, stream: IO[bytes] | io.RawIOBase) -> None:
        self._events = ijson.basic_parse(stream, buf_size=READ_CHUNK, use_float=True)
        self.depth = 0

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return self

    def __next__(self) -> tuple[str, Any]:
        event, value = next(self._events)
        if event in _OPENS:
            self.depth += 1
        elif event in _CLOSES:
            self.depth -= 1
        return event, value


def _build_value(events: _Events, first: tuple[str, Any], limits: Limits, field: str) -> Any:
    """The JSON value that starts with ``first``, built from ``events``; raises _Refused (after reading past
    the value) when it nests deeper than ``limits.max_depth`` or holds more than ``limits.max_entry_bytes``."""
    builder = ijson.ObjectBuilder()
    base = events.depth - (first[0] in _OPENS)
    size, problem = 0, None
    event, value = first
    while True:
        if problem is None:
            size += len(value) if isinstance(value, str) else 8
            if events.depth > limits.max_depth:
                problem = Problem(field, f"nested deeper than {limits.max_depth} levels")
            elif size > limits.max_entry_bytes:
                problem = Problem(field, f"more than {limits.max_entry_bytes} bytes in one resource")
            else:
                builder.event(event, value)
        if events.depth == base:
            break
        event, value = next(events)
    if problem is not None:
        raise _Refused(problem)
    return builder.value


def _document_head(events: _Events, limits: Limits) -> tuple[dict[str, Any], bool]:
    """The top-level properties of a JSON document up to its ``entry`` array, and whether one follows.

    FHIR's element order puts a Bundle's ``entry`` after every property glucokit reads, so the head is
    small; the entries are then read one at a time from the same events.
    """
    first = next(events)
    if first[0] != "start_map":
        raise ValueError(f"expected a JSON object, got {'an array' if first[0] == 'start_array' else first[0]}")
    head: dict[str, Any] = {}
    size = 0
    for event, key in events:
        if event == "end_map":
            return head, False
        if key == "entry":
            return head, True
        value = _build_value(events, next(events), limits, key)
        size += len(key) + len(orjson.dumps(value))
        if size > limits.max_entry_bytes:
            raise _Refused(Problem("(json)", f"more than {limits.max_entry_bytes} bytes in one resource"))
        head[key] = value
    raise ValueError("the document ends inside its object")


def _bundle_entries(events: _Events, limits: Limits) -> Iterator[_Entry]:
    """A Bundle's entries, one at a time, from the events just after its ``entry`` key; then the rest is read
    through, so that malformed JSON anywhere in the document is reported."""
    event, _ = next(events)
    if event != "start_array":
        yield _Entry("document", -1, None, None, Problem("entry", "expected an array of entries"))
        return
    index = 0
    while (item := next(events))[0] != "end_array":
        try:
            yield _bundle_entry(index, _build_value(events, item, limits, f"entry[{index}]"))
        except _Refused as refused:
            yield _Entry(f"entry {index}", index, None, None, refused.problem)
        index += 1
    for _ in events:
        pass


class _Bounded(io.RawIOBase):
    """A stream that refuses to yield more than ``limit`` bytes (for compressed input, whose size shows late)."""

    def __init__(self, inner: IO[bytes], limit: int, error: str) -> None:
        self._inner, self._left, self._error = inner, limit, error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        self._left -= len(data)
        if self._left < 0:
            raise GlucokitError(self._error)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


class _Document:
    """A JSON document that can be read more than once (a file, or a request body)."""

    def __init__(self, name: str, opener: Callable[[], AbstractContextManager[IO[bytes]]], size: int) -> None:
        self.name, self.open, self.size = name, opener, size

    def text(self, limit: int) -> str:
        """The document as the quarantine keeps it: its first ``limit`` bytes (a rejected document may be junk
        of any size, or a small gzip that unpacks to far more than it says)."""
        with self.open() as stream:
            return payload_text(stream.read(limit))

    def entries(self, limits: Limits, version: FhirVersion) -> Iterator[_Entry]:
        too_large = (
            f"{self.name} is larger than the {limits.max_document_bytes / MIB:.0f} MiB limit for one JSON document. "
            "Split it, or send NDJSON (one resource per line), which has no total limit"
        )
        if self.size > limits.max_document_bytes:
            raise GlucokitError(f"{too_large}: nothing was stored ({self.size / MIB:.1f} MiB)")
        try:
            with self.open() as stream:
                events = _Events(_Bounded(stream, limits.max_document_bytes, too_large))
                try:
                    head, has_entries = _document_head(events, limits)
                except _Refused as refused:
                    yield _Entry("document", -1, None, None, refused.problem)
                    return
                kind = head.get("resourceType")
                if kind != "Bundle":
                    if has_entries:
                        yield _Entry(
                            "document", -1, None, None, Problem("resourceType", f"expected Bundle, got {kind!r}")
                        )
                    else:
                        yield _Entry("entry 0", 0, head, None, None)
                    return
                problems = _bundle_problems(head, version)
                if problems:
                    yield _Entry("document", -1, None, None, problems[0])
                    return
                if has_entries:
                    yield from _bundle_entries(events, limits)
        except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError, ValueError, StopIteration) as error:
            yield _Entry("document", -1, None, None, _malformed(error))


def _bundle_problems(head: dict[str, Any], version: FhirVersion) -> list[Problem]:
    if head.get("type") not in BUNDLE_TYPES:
        return [
            Problem(
                "type", f"glucokit reads bundles of type {', '.join(sorted(BUNDLE_TYPES))}, got {head.get('type')!r}"
            )
        ]
    from fhir.resources import get_fhir_model_class  # noqa: PLC0415
    from fhir.resources.R4B import get_fhir_model_class as get_r4b_model_class  # noqa: PLC0415
    from pydantic import ValidationError  # noqa: PLC0415

    bundle = (get_fhir_model_class if version == "R5" else get_r4b_model_class)("Bundle")
    try:
        bundle.model_validate(head)
    except ValidationError as invalid:
        error = invalid.errors()[0]
        return [Problem(".".join(str(part) for part in error["loc"]) or "Bundle", error["msg"])]
    return []


def _bundle_entry(index: int, entry: Any) -> _Entry:
    position = f"entry {index}"
    if not isinstance(entry, dict) or "resource" not in entry:
        return _Entry(position, index, entry, None, Problem(f"entry[{index}].resource", "missing"))
    return _Entry(position, index, entry["resource"], None, None)


def array_items(stream: IO[bytes], limits: Limits) -> Iterator[tuple[int, Any, Problem | None]]:
    """The items of a JSON array (a Nightscout export) one at a time, each bounded like a Bundle entry: (index,
    value, None), or (index, None, the problem) for an item refused, or (-1, None, the problem) when the
    document is malformed or no array (the items before are already given)."""
    events = _Events(stream)
    try:
        if next(events)[0] != "start_array":
            yield -1, None, Problem("(json)", "expected a JSON array")
            return
        index = 0
        while (item := next(events))[0] != "end_array":
            try:
                yield index, _build_value(events, item, limits, f"[{index}]"), None
            except _Refused as refused:
                yield index, None, refused.problem
            index += 1
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError, ValueError, StopIteration) as error:
        yield -1, None, _malformed(error)


# --- Writing batches -------------------------------------------------------------

# While ingest runs, the thread that validates holds the GIL almost always; a writer thread whose round trip to
# the database has returned (several a batch) waits for it up to the interpreter's switch interval, 5 ms by
# default, and the database idles meanwhile. The interval is shortened for as long as any ingest runs in the
# process (bench/README.md, "Ingest throughput", measures it).
_SWITCH_INTERVAL: Final = 0.0002


class _PromptWriters:
    """Shortens the switch interval while any ingest of the process runs; the last to end puts it back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._before = 0.0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._running:
                self._before = sys.getswitchinterval()
                sys.setswitchinterval(min(self._before, _SWITCH_INTERVAL))
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    sys.setswitchinterval(self._before)


_prompt_writers = _PromptWriters()


class _Writers:
    """One writer thread per connection; validation of the next batch overlaps the database's work on this one."""

    def __init__(self, connections: Sequence[Connection], user_id: UUID, person_id: UUID, report: IngestReport):
        self._free: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        for conn in connections:
            self._free.put(conn)
        self._slots = len(connections)
        self._pool = ThreadPoolExecutor(self._slots, thread_name_prefix="glucokit-ingest")
        self._pending: deque[Future[tuple[int, int]]] = deque()
        self._user_id, self._person_id, self._report = user_id, person_id, report
        self._staged: set[int] = set()

    def submit(self, batch: _Batch) -> None:
        while len(self._pending) >= self._slots:
            self._collect(self._pending.popleft())
        self._pending.append(self._pool.submit(self._write, batch))

    def finish(self) -> None:
        """Waits for every batch; raises the first failure."""
        while self._pending:
            self._collect(self._pending.popleft())
        self._pool.shutdown()

    def finish_quietly(self) -> None:
        """Stops after a failure: batches not yet started are dropped, running ones end."""
        self._pool.shutdown(cancel_futures=True)

    def _collect(self, future: Future[tuple[int, int]]) -> None:
        inserted, updated = future.result()
        self._report.inserted += inserted
        self._report.updated += updated

    def _write(self, batch: _Batch) -> tuple[int, int]:
        conn = self._free.get()
        try:
            try:
                return self._write_on(conn, batch, careful=False)
            except psycopg.errors.UniqueViolation:
                # Another transaction stored some of these readings while this batch was written: the batch
                # (rolled back whole, with the staging table if this transaction made it) is written again,
                # and ON CONFLICT leaves those readings to the update.
                self._staged.discard(id(conn))
                return self._write_on(conn, batch, careful=True)
        finally:
            self._free.put(conn)

    def _write_on(self, conn: Connection, batch: _Batch, *, careful: bool) -> tuple[int, int]:
        parameters = {"person_id": self._person_id}
        inserted = updated = 0
        with as_user(conn, self._user_id):
            if batch.rows:
                if id(conn) not in self._staged:
                    conn.execute(query("ingest_create_stage"))
                    self._staged.add(id(conn))
                with conn.cursor() as cursor, cursor.copy(query("ingest_copy_stage")) as copy:
                    copy.set_types(STAGE_TYPES)
                    for row in batch.rows:
                        copy.write_row(row)
                if batch.corrections:
                    conn.execute(query("ingest_move_corrections"), parameters)
                # A batch of new readings (the person has none in its span) goes in by a plain INSERT.
                span = {**parameters, "first": batch.first, "last": batch.last}
                new = not careful and _fetch_bool(conn.execute(query("ingest_batch_is_new"), span).fetchone())
                insert = query("ingest_insert_stage_new") if new else query("ingest_insert_stage")
                inserted = conn.execute(insert, parameters).rowcount
                if inserted < len(batch.rows):
                    updated = conn.execute(query("ingest_update_stage"), parameters).rowcount
            if batch.quarantine:
                with conn.cursor() as cursor:
                    cursor.executemany(query("quarantine_entry"), batch.quarantine)
        return inserted, updated


# --- The ingest ----------------------------------------------------------------------


class Ingest:
    """Ingests documents for one person, as the user ``user_id``, over ``connections`` (one writer each)."""

    def __init__(
        self,
        connections: Sequence[Connection],
        *,
        user_id: UUID,
        person_id: UUID,
        fhir_version: FhirVersion = "R4B",
        limits: Limits | None = None,
    ) -> None:
        if not connections:
            raise ValueError("ingest needs at least one connection")
        if fhir_version not in FHIR_VERSIONS:
            raise GlucokitError(f"unknown FHIR version {fhir_version!r}: glucokit reads {' and '.join(FHIR_VERSIONS)}")
        self.connections = connections
        self.user_id, self.person_id = user_id, person_id
        self.fhir_version: FhirVersion = fhir_version
        self.limits = limits or Limits()

    def path(self, path: Path) -> IngestReport:
        """Ingests a file: ``.json``/``.ndjson`` (or ``.jsonl``), optionally ``.gz``."""
        name = path.name
        plain = name.removesuffix(".gz")
        compressed = name.endswith(".gz")
        if not path.is_file():
            raise GlucokitError(f"{path}: no such file")

        def opener() -> IO[bytes]:
            return cast(IO[bytes], gzip.open(path, "rb")) if compressed else path.open("rb")

        if plain.endswith(NDJSON_SUFFIXES):
            with opener() as stream:
                return self._run(name, _ndjson_entries(stream, self.limits), None)
        if plain.endswith(JSON_SUFFIXES):
            document = _Document(name, opener, _gzip_size(path) if compressed else path.stat().st_size)
            return self._run(name, document.entries(self.limits, self.fhir_version), document)
        raise GlucokitError(
            f"{name}: glucokit reads .json (a Bundle or an Observation) and .ndjson files, optionally .gz"
        )

    def document(self, body: bytes, *, source: str) -> IngestReport:
        """Ingests one JSON document (a Bundle or an Observation) held in memory, such as a request body."""
        document = _Document(source, lambda: io.BytesIO(body), len(body))
        return self._run(source, document.entries(self.limits, self.fhir_version), document)

    def ndjson(self, body: bytes, *, source: str) -> IngestReport:
        """Ingests NDJSON held in memory."""
        return self._run(source, _ndjson_entries(io.BytesIO(body), self.limits), None)

    def received(self, body: IO[bytes], *, source: str, ndjson: bool) -> IngestReport:
        """Ingests a received body kept in a seekable file (a request spooled to disk), NDJSON or one JSON
        document; the file is left open for its owner to close."""
        if ndjson:
            body.seek(0)
            return self._run(source, _ndjson_entries(body, self.limits), None)

        def rewound() -> AbstractContextManager[IO[bytes]]:
            body.seek(0)
            return nullcontext(body)

        document = _Document(source, rewound, body.seek(0, io.SEEK_END))
        return self._run(source, document.entries(self.limits, self.fhir_version), document)

    def resources(self, records: Iterable[Record], *, source: str) -> IngestReport:
        """Ingests an export's records, streamed: each Observation is validated, stored or quarantined like an
        NDJSON line's; a record the importer could not convert is rejected with its problem and quarantined as
        received; a skipped one is counted. ``records`` is read only after the person is checked."""
        return self._run(source, iter(()), None, records)

    def _run(
        self,
        source: str,
        entries: Iterator[_Entry],
        document: _Document | None,
        records: Iterable[Record] = (),
    ) -> IngestReport:
        now = self._check_person()
        run = _Run(self, source, document, ObservationValidator(self.fhir_version, now))
        writers = _Writers(self.connections, self.user_id, self.person_id, run.report)
        try:
            with _prompt_writers():
                for entry in chain(entries, _record_entries(records, run.report)):
                    run.take(entry)
                    if run.batch_full():
                        writers.submit(run.next_batch())
                writers.submit(run.next_batch())
                writers.finish()
        except psycopg.Error as error:
            writers.finish_quietly()
            raise GlucokitError(
                f"the database refused a batch of {source} ({error.sqlstate}: {str(error).strip().splitlines()[0]}); "
                f"{run.report.stored} entries of earlier batches are stored, and sending the input again is safe"
            ) from error
        except BaseException:
            writers.finish_quietly()
            raise
        run.report.unchanged = run.staged - run.report.inserted - run.report.updated
        return run.report

    def _check_person(self) -> datetime:
        """The database's clock, once the caller is known to own the person."""
        conn = self.connections[0]
        try:
            with as_user(conn, self.user_id):
                return require_person(conn, self.person_id)
        except GlucokitError as refused:
            raise type(refused)(f"{refused}: nothing was stored") from None


class _Run:
    """The state of one ingest: the report, the batch being filled and the identities seen so far."""

    def __init__(self, ingest: Ingest, source: str, document: _Document | None, validator: ObservationValidator):
        self.ingest, self.source, self.document, self.validator = ingest, source, document, validator
        self.report = IngestReport(source=source, person_id=ingest.person_id)
        self.batch = _Batch()
        # The first batches are small and each is twice the last, up to Limits.batch_size: the writers start
        # soon after the input does instead of idling while a whole first batch is validated.
        self.next_size = min(_FIRST_BATCH, ingest.limits.batch_size)
        self.staged = 0
        # Identities of the readings taken so far: 16-byte hashes, 83 MB for a million (measured with tracemalloc).
        self.seen: set[bytes] = set()
        self.templates = Templates(validator)

    def take(self, entry: _Entry) -> None:
        if entry.ordinal >= 0:
            self.report.entries += 1
        problems = self._check(entry)
        if problems:
            self._reject(entry, problems)

    def batch_full(self) -> bool:
        limits = self.ingest.limits
        return (
            len(self.batch.rows) + len(self.batch.quarantine) >= self.next_size or self.batch.size >= limits.batch_bytes
        )

    def next_batch(self) -> _Batch:
        full, self.batch = self.batch, _Batch()
        self.staged += len(full.rows)
        self.next_size = min(2 * self.next_size, self.ingest.limits.batch_size)
        return full

    def _check(self, entry: _Entry) -> list[Problem]:
        if entry.problem is not None:
            return [entry.problem]
        templated = None
        checked: Reading | list[Problem]
        received: bytes | dict[str, Any]
        text: str | None
        if entry.line is not None:
            templated = self.templates.read(entry.line)
            checked, received, text = self._line(entry.line, templated)
        else:
            checked, received, text = self.validator.validate(entry.value), entry.value, entry.text
        if isinstance(checked, list):
            return checked
        key = _identity(checked)
        if key in self.seen:
            return [
                Problem(
                    "identifier",
                    f"duplicate: an earlier entry has identifier {checked.source_system}|{checked.source_id} "
                    f"at {checked.effective_at.isoformat()}",
                )
            ]
        text = text if text is not None else orjson.dumps(entry.value).decode()
        if "\\u0000" in text:
            return [Problem("(json)", "contains a NUL character (\\u0000), which PostgreSQL cannot store")]
        self.seen.add(key)
        # The resource is stored only where the columns do not give it back (glucokit.fhir.stored).
        kept = None if checked is templated or not needs_resource(checked, received) else text
        if checked is not templated and kept is None and isinstance(received, bytes):
            self.templates.learn(checked, received)  # a line decoded by the fast path, given back by the columns
        self.batch.rows.append((*checked, kept))
        self.batch.size += len(kept or "")
        self.batch.corrections = self.batch.corrections or checked.status in _CORRECTIONS
        moment = checked.effective_at
        if self.batch.first is None or moment < self.batch.first:
            self.batch.first = moment
        if self.batch.last is None or moment > self.batch.last:
            self.batch.last = moment
        return []

    def _line(
        self, line: bytes, templated: Reading | None
    ) -> tuple[Reading | list[Problem], bytes | dict[str, Any], str]:
        """An NDJSON line's reading (or problems), what was received and its text: a known source's rebuilt text
        filled in (``templated``) is read from its holes; the compact CGM shape is decoded and checked in one
        pass; any other line is parsed and judged in full, like a Bundle's entry."""
        fast = templated if templated is not None else self.validator.validate_json(line)
        try:
            text = line.decode()
        except UnicodeDecodeError:
            fast, text = None, payload_text(line)
        if fast is not None:
            return fast, line, text
        try:
            received = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            return [_malformed(error)], line, text
        return self.validator.validate(received), received, text

    def _reject(self, entry: _Entry, problems: list[Problem]) -> None:
        rejection = Rejection(entry.position, entry.ordinal if entry.ordinal >= 0 else None, tuple(problems))
        self.report.rejected += 1
        if len(self.report.rejections) < _REPORTED_REJECTIONS:
            self.report.rejections.append(rejection)
        whole_document = rejection.entry_index is None and self.document is not None
        limit = self.ingest.limits.max_entry_bytes
        payload = self.document.text(limit) if whole_document else _entry_payload(entry)  # type: ignore[union-attr]
        self.batch.size += len(payload)
        self.batch.quarantine.append(
            {
                "person_id": self.ingest.person_id,
                "source": self.source[:1024],
                "entry_index": rejection.entry_index,
                "errors": Jsonb([problem.as_json() for problem in problems]),
                "payload": payload,
            }
        )


def _identity(reading: Reading) -> bytes:
    """The idempotency key of a reading (source identifier and time), hashed to keep the seen-set small."""
    moment = reading.effective_at.timestamp()
    return hashlib.blake2b(
        f"{reading.source_system}\x1f{reading.source_id}\x1f{moment!r}".encode(), digest_size=16
    ).digest()


def _fetch_bool(row: tuple[Any, ...] | None) -> bool:
    return bool(row and row[0])


def _record_entries(records: Iterable[Record], report: IngestReport) -> Iterator[_Entry]:
    for record in records:
        if record.skip is not None:
            report.skipped[record.skip] += 1
            continue
        raw = payload_text(record.raw)
        yield _Entry(record.position, record.ordinal, record.resource, None, record.problem, raw)


def _entry_payload(entry: _Entry) -> str:
    if entry.raw is not None:
        return entry.raw
    if entry.line is not None:
        return payload_text(entry.line)
    if entry.text is not None:
        return entry.text
    return payload_text(orjson.dumps(entry.value)) if entry.value is not None else ""


def _gzip_size(path: Path) -> int:
    """The uncompressed size gzip records in its trailer (modulo 4 GiB: ``_Bounded`` catches larger ones)."""
    with path.open("rb") as stream:
        stream.seek(-4, io.SEEK_END)
        size: int = struct.unpack("<I", stream.read(4))[0]
    return size
