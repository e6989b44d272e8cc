"""The retrain job: drain the retrain queue, one person at a time, the way a Cloud Run job task does.

Each task of a job execution reads the queue and takes the persons of its
shard (``CLOUD_RUN_TASK_INDEX`` of ``CLOUD_RUN_TASK_COUNT``, by person id);
it reads without hiding anything and leaves other shards' messages alone. A
task claims a request (which hides its message for the lease), retrains the
person (``retrain.retrain``) and completes the request. It stops when its
shard has nothing visible, when its time is up, or when asked to stop
(SIGTERM): it finishes the person in hand and claims no other. A retrain
that raised (the database or the store failing; too little data and failed
training are handled inside ``retrain`` with a fallback) leaves its claim to
expire: the message returns after the lease and the next
attempt takes it over, until the queue's attempt limit marks it failed. The
task reports the failure, so the job exits non-zero and Cloud Run retries it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from glucokit import retrain_queue
from glucokit.model_store import ModelStore
from glucokit.retrain import RetrainResult, retrain
from glucokit.retrain_queue import Message
from glucokit.sessions import Connection, as_worker

# Reads only look: the claim hides a message (for its lease), so no task ever hides another shard's messages.
READ_TIMEOUT_S: Final = 0
READ_BATCH: Final = 10


@dataclass(frozen=True)
class Shard:
    """Which persons a task takes: those whose id falls on ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"task index {self.index} is not in 0..{self.count - 1}")

    def takes(self, message: Message) -> bool:
        # A message carrying no request (person None) is any task's to drop.
        return message.person_id is None or message.person_id.int % self.count == self.index


@dataclass
class JobReport:
    """What one task did."""

    retrained: list[RetrainResult] = field(default_factory=list)
    failed: dict[UUID, str] = field(default_factory=dict)  # person -> error
    skipped: int = 0  # claims that were busy, dropped or exhausted
    stopped: str = "queue drained"

    @property
    def must_retry(self) -> bool:
        return bool(self.failed)


def run(
    conn: Connection,
    store: ModelStore,
    *,
    shard: Shard = Shard(),
    deadline: float | None = None,
    stop: threading.Event | None = None,
    on_result: Callable[[RetrainResult], None] | None = None,
) -> JobReport:
    """Drains this shard of the queue; ``deadline`` is a ``time.monotonic()`` value."""
    report = JobReport()
    while True:
        if stop is not None and stop.is_set():
            report.stopped = "asked to stop"
            return report
        if deadline is not None and time.monotonic() >= deadline:
            report.stopped = "out of time"
            return report
        with as_worker(conn, None):
            messages = [
                message for message in retrain_queue.read(conn, READ_TIMEOUT_S, READ_BATCH) if shard.takes(message)
            ]
        if not messages:
            return report
        for message in messages:
            if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() >= deadline):
                break
            _one(conn, store, message, report, on_result)


def _one(
    conn: Connection,
    store: ModelStore,
    message: Message,
    report: JobReport,
    on_result: Callable[[RetrainResult], None] | None,
) -> None:
    with as_worker(conn, None):
        claim = retrain_queue.claim(conn, message.msg_id)
    if not claim.claimed or claim.person_id is None or claim.trigger is None:
        report.skipped += 1
        return
    try:
        result = retrain(conn, store, claim.person_id, claim.trigger, attempt=claim.attempt or 1)
    except Exception as failure:
        with as_worker(conn, None):
            retrain_queue.fail(conn, claim, repr(failure))
        report.failed[claim.person_id] = repr(failure)
        return
    with as_worker(conn, None):
        retrain_queue.complete(conn, claim, training_run_id=result.run_id)
    report.retrained.append(result)
    if on_result is not None:
        on_result(result)
