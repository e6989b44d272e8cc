"""The privacy job: remove the files of erased persons and the models of persons who withdrew training consent.

The owners' requests wait in the database (``private.pending_privacy_work``,
oldest first). The job works through them until none is left, each in the
person's scope for deletion (``rights.erase_files``, ``rights.remove_models``:
files first, then the rows that point at them, so a job that dies half-way is
simply run again). A person whose work fails is reported and not tried again
in the same run; it stays pending for the next. The job stops early when its
time is up or when asked to stop (SIGTERM), after the person in hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, as_worker
from glucokit.jobs.runner import PAGE, Failure, Task, TaskReport
from glucokit.modelops.model_store import ModelStore
from glucokit.privacy import rights

# The kinds of work private.pending_privacy_work lists, and the steps a person can fail at.
ERASURE: Final = "erasure"
MODEL_REMOVAL: Final = "model_removal"


@dataclass
class PrivacyReport(TaskReport):
    """What one run did."""

    erased: dict[UUID, list[str]] = field(default_factory=dict)  # person -> files removed
    models_removed: dict[UUID, int] = field(default_factory=dict)  # person -> model versions removed

    @property
    def failed(self) -> dict[UUID, str]:
        """Person -> why their erasure or model removal failed."""
        return self.task.failed()


def pending(conn: Connection, limit: int = PAGE) -> list[tuple[UUID, str]]:
    """Pending erasures and model removals, oldest first (unscoped)."""
    with as_worker(conn, None):
        rows = conn.execute(query("pending_privacy_work"), {"limit": limit}).fetchall()
    return [(UUID(str(person)), str(work)) for person, work in rows]


def run(
    conn: Connection,
    store: ModelStore,
    *,
    deadline: float | None = None,
    stop: threading.Event | None = None,
    on_done: Callable[[UUID, str], None] | None = None,
) -> PrivacyReport:
    """Works through pending erasures and model removals until none is left; ``deadline`` is ``time.monotonic()``."""
    report = PrivacyReport(Task(deadline=deadline, stop=stop, stopped="no work left"))

    def untried() -> list[tuple[UUID, str]]:
        # A failed person stays pending: listing them again would retry them for ever. The page is longer by as
        # many as have failed, so that failures at the head of the list cannot hide the work behind them.
        failed = report.failed
        return [(person, kind) for person, kind in pending(conn, PAGE + len(failed)) if person not in failed]

    for person, kind in report.task.batches(untried):
        if kind == ERASURE:
            files = report.task.attempt(person, ERASURE, rights.erase_files, conn, store, person)
            if isinstance(files, Failure):
                continue
            report.erased[person] = files
        else:
            models = report.task.attempt(person, MODEL_REMOVAL, rights.remove_models, conn, store, person)
            if isinstance(models, Failure):
                continue
            report.models_removed[person] = models
        if on_done is not None:
            on_done(person, kind)
    return report
