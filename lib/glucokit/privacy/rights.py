"""GDPR: consent per purpose, the audit log, model removal, erasure and the export of everything.

The database enforces consent (migration 20261122121200): a worker reaches a
person's rows only through ``private.begin_person_scope(person, purpose,
reason)``, which refuses a purpose the person does not consent to and writes
the audit log. This module is what owners and the privacy job
(``jobs.privacy_job``) call:

- owners (as the signed-in user, under row-level security) grant and
  withdraw consent, read the audit log, delete a person and export
  everything about a person;
- the privacy job (``glucokit_worker``, scoped to one person for deletion at
  a time) removes the models of persons who withdrew training consent with
  ``delete_models``, and the storage files of deleted persons. Files first,
  then the rows that point at them: a job that dies half-way is simply run
  again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import orjson
from psycopg import sql
from psycopg.rows import class_row, dict_row

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, Purpose, as_role, as_user, as_worker, require_person, user_claims
from glucokit.errors import GlucokitError
from glucokit.fhir import export
from glucokit.modelops.model_store import METADATA_FILE, ModelStore
from glucokit.privacy.consent import CONSENT_PURPOSES

# What the export's records file is, and its version.
RECORDS_FORMAT: Final = "glucokit-person-records/1"


# -----------------------------------------------------------------------------
# Owners
# -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Consent:
    purpose: str
    granted_at: datetime
    withdrawn_at: datetime | None
    delete_models: bool

    @property
    def in_force(self) -> bool:
        return self.withdrawn_at is None


def _purposes(purposes: Iterable[Purpose]) -> list[str]:
    chosen = [Purpose(purpose) for purpose in purposes]
    if not chosen:
        raise GlucokitError(f"name at least one purpose ({', '.join(CONSENT_PURPOSES)})")
    if Purpose.DELETION in chosen:
        raise GlucokitError("deletion needs no consent; consent is given to " + ", ".join(CONSENT_PURPOSES))
    return [str(purpose) for purpose in chosen]


@contextmanager
def _with_second_factor(conn: Connection, user_id: UUID) -> Iterator[Connection]:
    """One transaction as ``user_id`` signed in with a second factor (aal2), which the database asks of consent
    changes and erasure (migration 20261206150000). These functions serve the operator's CLI, which acts on a
    request whose sender the operator has confirmed; an app's own path carries the user's real claim."""
    with as_role(conn, "authenticated", {**user_claims(user_id), "aal": "aal2"}) as scoped:
        yield scoped


def consents(conn: Connection, user_id: UUID, person_id: UUID) -> list[Consent]:
    """The person's consent records, as their owner sees them."""
    with as_user(conn, user_id):
        require_person(conn, person_id)
        with conn.cursor(row_factory=class_row(Consent)) as cursor:
            return cursor.execute(query("consent_list"), {"person_id": person_id}).fetchall()


def grant(conn: Connection, user_id: UUID, person_id: UUID, purposes: Iterable[Purpose]) -> list[Consent]:
    """The owner gives consent to ``purposes`` (again, after a withdrawal); returns the records."""
    chosen = _purposes(purposes)
    with _with_second_factor(conn, user_id):
        require_person(conn, person_id)
        conn.execute(query("consent_grant"), {"person_id": person_id, "purposes": chosen})
    return consents(conn, user_id, person_id)


def withdraw(
    conn: Connection, user_id: UUID, person_id: UUID, purposes: Iterable[Purpose], *, delete_models: bool = False
) -> list[Consent]:
    """The owner withdraws consent to ``purposes``; with ``delete_models`` (training only) the models go too."""
    chosen = _purposes(purposes)
    if delete_models and chosen != [Purpose.TRAINING]:
        raise GlucokitError("delete_models goes with withdrawing consent to training alone")
    with _with_second_factor(conn, user_id):
        require_person(conn, person_id)
        withdrawn = conn.execute(
            query("consent_withdraw"), {"person_id": person_id, "purposes": chosen, "delete_models": delete_models}
        ).rowcount
    if withdrawn != len(chosen):
        missing = {str(c.purpose) for c in consents(conn, user_id, person_id) if c.in_force}
        raise GlucokitError(f"no consent in force to {', '.join(sorted(set(chosen) - missing))}: nothing to withdraw")
    return consents(conn, user_id, person_id)


@dataclass(frozen=True)
class AuditEntry:
    occurred_at: datetime
    worker: str
    application: str
    purpose: str
    reason: str


def audit_log(conn: Connection, user_id: UUID, person_id: UUID, *, limit: int = 1000) -> list[AuditEntry]:
    """Which worker touched the person when and why, newest first, as the owner sees it."""
    with as_user(conn, user_id):
        require_person(conn, person_id)
        with conn.cursor(row_factory=class_row(AuditEntry)) as cursor:
            return cursor.execute(query("audit_log"), {"person_id": person_id, "limit": limit}).fetchall()


def delete_person(conn: Connection, user_id: UUID, person_id: UUID) -> None:
    """The owner erases a person: every row now, the files when the privacy job next runs."""
    with _with_second_factor(conn, user_id):
        require_person(conn, person_id)
        conn.execute(query("person_delete"), {"person_id": person_id})


# -----------------------------------------------------------------------------
# Export
# -----------------------------------------------------------------------------
def _exact(value: object) -> str:
    """JSON for what orjson does not write itself: numeric values, as their exact decimal text."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def person_tables(conn: Connection) -> list[str]:
    """The tables of the public schema that hold a person's rows (a person_id column), and person itself."""
    rows = conn.execute(query("person_tables")).fetchall()
    return ["person", *(str(table) for (table,) in rows)]


def records(conn: Connection, store: ModelStore, user_id: UUID, person_id: UUID) -> dict[str, Any]:
    """Every row about the person in every public table, and each model version's metadata file, as the owner."""
    with as_user(conn, user_id):
        require_person(conn, person_id)
        tables: dict[str, list[dict[str, Any]]] = {}
        for table in person_tables(conn):
            key = "id" if table == "person" else "person_id"
            statement = sql.SQL("select * from public.{} where {} = %s").format(
                sql.Identifier(table), sql.Identifier(key)
            )
            with conn.cursor(row_factory=dict_row) as cursor:
                rows = cursor.execute(statement, (person_id,)).fetchall()
            tables[table] = rows
        model_files = {
            model["storage_path"]: orjson.loads(store.get(conn, model["storage_path"] + METADATA_FILE))
            for model in tables.get("ml_model", [])
            if model.get("storage_path")
        }
    return {"format": RECORDS_FORMAT, "person_id": str(person_id), "tables": tables, "model_metadata": model_files}


@dataclass(frozen=True)
class ExportReport:
    entries: int
    tables: dict[str, int]
    models: int


def export_everything(
    conn: Connection, store: ModelStore, user_id: UUID, person_id: UUID, out_dir: Path
) -> ExportReport:
    """Writes ``bundle.json`` (readings, forecasts and a Provenance per model, FHIR) and ``records.json``
    (every row about the person and each model's metadata) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "bundle.json").open("wb") as bundle:
        entries = export.export(conn, bundle, user_id=user_id, person_id=person_id, forecasts=True)
    everything = records(conn, store, user_id, person_id)
    written = orjson.dumps(everything, default=_exact, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    (out_dir / "records.json").write_bytes(written)
    counts = {table: len(rows) for table, rows in everything["tables"].items()}
    return ExportReport(entries, counts, len(everything["model_metadata"]))


# -----------------------------------------------------------------------------
# The privacy job's work for one person
# -----------------------------------------------------------------------------
def erase_files(conn: Connection, store: ModelStore, person_id: UUID) -> list[str]:
    """Removes a deleted person's files, then the last marker of them; returns the files."""
    with as_worker(conn, person_id, Purpose.DELETION, "erasure of a deleted person's files"):
        folder = _scoped_folder(conn)
        removed = store.remove(conn, folder) + store.sweep(conn, folder)
        conn.execute(query("finish_erasure"))
    return sorted(set(removed))


def remove_models(conn: Connection, store: ModelStore, person_id: UUID) -> int:
    """Removes a person's model files, then their model versions (forecasts follow); returns the versions."""
    with as_worker(conn, person_id, Purpose.DELETION, "models removed after consent to training was withdrawn"):
        folder = _scoped_folder(conn)
        store.remove(conn, folder)
        store.sweep(conn, folder)
        row = conn.execute(query("finish_model_removal")).fetchone()
    return int(str(row[0])) if row else 0


def _scoped_folder(conn: Connection) -> str:
    row = conn.execute(query("worker_storage_prefix")).fetchone()
    if row is None or row[0] is None:
        raise GlucokitError("no storage folder for the person in scope")
    return str(row[0])
