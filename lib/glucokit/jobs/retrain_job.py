"""The retrain job: drain the retrain queue, one person at a time, the way a Cloud Run job task does.

Each task of a job execution looks at the visible messages of its shard
(``CLOUD_RUN_TASK_INDEX`` of ``CLOUD_RUN_TASK_COUNT``, by person id), which
the database selects (``retrain_queue.peek``), so however many messages of
other shards come first, a task finds its own; looking hides nothing. A task
claims a request (which hides its message for the lease), retrains the
person (``retrain.retrain``) and completes the request. It stops when its
shard has nothing visible, when its time is up, or when asked to stop
(SIGTERM): it finishes the person in hand and claims no other.

A retrain that raised (the database or the store failing; too little data
and failed training are handled inside ``retrain`` with a fallback) is handed
back to the queue (``retrain_queue.retry``): the request waits again and its
message shows after a backoff that doubles with each attempt, so a later job
execution retries it; after the queue's ``max_attempts`` claims it is failed
for good, with the reason on the request row (the dead-letter state). A
worker killed mid-retrain leaves its claim to expire instead, and the next
claim takes it over, within the same attempt limit. The task reports every
failure, and the job exits non-zero.

After each retrain the task writes the person's forecast from their active
model (``forecasts.write_forecasts``). A forecast that fails is reported but
retries nothing: the retrain is done, and the forecast job catches up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from uuid import UUID

from glucokit.db.sessions import Connection, Purpose, as_worker
from glucokit.errors import GlucokitError
from glucokit.forecast import TrainingSettings
from glucokit.forecast.pipeline import DEFAULT_SETTINGS
from glucokit.jobs import retrain_queue
from glucokit.jobs.retrain_queue import Message, RetryOutcome
from glucokit.modelops.forecasts import ForecastWrite, write_forecasts
from glucokit.modelops.model_store import ModelStore
from glucokit.modelops.retrain import RetrainResult, retrain
from glucokit.privacy import consent

PEEK_BATCH: Final = 10


@dataclass(frozen=True)
class Shard:
    """Which persons a task takes: those whose id falls on ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"task index {self.index} is not in 0..{self.count - 1}")

    def owns(self, person_id: UUID) -> bool:
        # private.retrain_shard computes the same for the queue's messages (a test holds them equal).
        return person_id.int % self.count == self.index


def training_settings(families: str | None) -> TrainingSettings:
    """The settings a job trains with: the default, or only the comma-separated model ``families`` named
    (the value of GLUCOKIT_MODEL_FAMILIES)."""
    if not families:
        return DEFAULT_SETTINGS
    named = tuple(family.strip() for family in families.split(",") if family.strip())
    try:
        return TrainingSettings(families=named)
    except ValueError as bad:
        raise GlucokitError(f"GLUCOKIT_MODEL_FAMILIES={families!r}: {bad}") from None


def stop_reason(stop: threading.Event | None, deadline: float | None) -> str | None:
    """Why a task must take no more work: asked to stop (SIGTERM), or past its ``time.monotonic()`` deadline."""
    if stop is not None and stop.is_set():
        return "asked to stop"
    if deadline is not None and time.monotonic() >= deadline:
        return "out of time"
    return None


@dataclass
class JobReport:
    """What one task did."""

    retrained: list[RetrainResult] = field(default_factory=list)
    failed: dict[UUID, str] = field(default_factory=dict)  # person -> error of the attempt that raised
    retrying: dict[UUID, datetime] = field(default_factory=dict)  # of failed: when the queue tries them again
    gave_up: set[UUID] = field(default_factory=set)  # of failed: that was their last attempt (dead letter)
    forecasts: list[ForecastWrite] = field(default_factory=list)  # written after the retrains
    forecast_failed: dict[UUID, str] = field(default_factory=dict)  # person -> error
    refused: dict[UUID, str] = field(default_factory=dict)  # person -> why the request was dropped (no consent)
    skipped: int = 0  # claims that were busy, dropped or exhausted
    stopped: str = "queue drained"

    @property
    def has_failures(self) -> bool:
        return bool(self.failed)


def run(
    conn: Connection,
    store: ModelStore,
    *,
    shard: Shard = Shard(),
    deadline: float | None = None,
    stop: threading.Event | None = None,
    on_result: Callable[[RetrainResult], None] | None = None,
    settings: TrainingSettings = DEFAULT_SETTINGS,
) -> JobReport:
    """Drains this shard of the queue; ``deadline`` is a ``time.monotonic()`` value."""
    report = JobReport()
    while True:
        if reason := stop_reason(stop, deadline):
            report.stopped = reason
            return report
        with as_worker(conn, None):
            messages = retrain_queue.peek(conn, shard.index, shard.count, PEEK_BATCH)
        if not messages:
            return report
        for message in messages:
            if stop_reason(stop, deadline):
                break
            _one(conn, store, message, report, on_result=on_result, settings=settings)


def _one(
    conn: Connection,
    store: ModelStore,
    message: Message,
    report: JobReport,
    *,
    on_result: Callable[[RetrainResult], None] | None,
    settings: TrainingSettings,
) -> None:
    with as_worker(conn, None):
        claim = retrain_queue.claim(conn, message.msg_id)
    if not claim.claimed or claim.person_id is None or claim.trigger is None:
        report.skipped += 1
        return
    person = claim.person_id
    try:
        result = retrain(conn, store, person, claim.trigger, attempt=claim.attempt or 1, settings=settings)
    except Exception as failure:
        if not consent.in_force(conn, person, Purpose.TRAINING):
            # Consent withdrawn (before or while training): the request is over, never retried.
            with as_worker(conn, None):
                retrain_queue.complete(conn, claim)
            report.refused[person] = "no consent to training"
            return
        with as_worker(conn, None):
            retried = retrain_queue.retry(conn, claim, repr(failure))
        report.failed[person] = repr(failure)
        if retried.outcome is RetryOutcome.RETRYING and retried.at is not None:
            report.retrying[person] = retried.at
        elif retried.outcome is RetryOutcome.FAILED:
            report.gave_up.add(person)
        return
    with as_worker(conn, None):
        retrain_queue.complete(conn, claim, training_run_id=result.run_id)
    report.retrained.append(result)
    if consent.in_force(conn, person, Purpose.FORECASTING):
        try:
            report.forecasts.append(
                write_forecasts(conn, store, person, reason=f"forecast after a {claim.trigger} retrain")
            )
        except Exception as failure:
            report.forecast_failed[person] = repr(failure)
    if on_result is not None:
        on_result(result)
