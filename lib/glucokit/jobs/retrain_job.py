"""The retrain job: drain the retrain queue, one person at a time, the way a Cloud Run job task does.

Each task of a job execution (``runner.Task``) looks at the visible messages
of its shard (by person id), which the database selects
(``retrain_queue.peek``), so however many messages of other shards come
first, a task finds its own; looking hides nothing. A task
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
failure (logged by the runner), and the job exits non-zero.

After each retrain the task writes the person's forecast from their active
model (``forecasts.write_forecasts``). A forecast that fails is reported but
retries nothing: the retrain is done, and the forecast job catches up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from uuid import UUID

from glucokit.db.sessions import Connection, Purpose, as_worker
from glucokit.forecast import TrainingSettings
from glucokit.forecast.pipeline import DEFAULT_SETTINGS
from glucokit.jobs.runner import ONE_TASK, Failure, Shard, Task, TaskReport
from glucokit.modelops import retrain_queue
from glucokit.modelops.forecasts import ForecastWrite, write_forecasts
from glucokit.modelops.model_store import ModelStore
from glucokit.modelops.retrain import RetrainResult, retrain
from glucokit.modelops.retrain_queue import Message, RetryOutcome
from glucokit.privacy import consent

logger = logging.getLogger(__name__)

PEEK_BATCH: Final = 10
# The steps a person can fail at, as the task keeps them.
RETRAIN: Final = "retrain"
FORECAST: Final = "forecast after the retrain"


@dataclass
class JobReport(TaskReport):
    """What one task did."""

    retrained: list[RetrainResult] = field(default_factory=list)
    retrying: dict[UUID, datetime] = field(default_factory=dict)  # of failed: when the queue tries them again
    gave_up: set[UUID] = field(default_factory=set)  # of failed: that was their last attempt (dead letter)
    forecasts: list[ForecastWrite] = field(default_factory=list)  # written after the retrains
    refused: dict[UUID, str] = field(default_factory=dict)  # person -> why the request was dropped (no consent)

    @property
    def failed(self) -> dict[UUID, str]:
        """Person -> the error of the retrain attempt that raised."""
        return self.task.failed(RETRAIN)

    @property
    def forecast_failed(self) -> dict[UUID, str]:
        return self.task.failed(FORECAST)

    @property
    def has_failures(self) -> bool:
        return bool(self.failed)


def run(
    conn: Connection,
    store: ModelStore,
    *,
    shard: Shard = ONE_TASK,
    deadline: float | None = None,
    stop: threading.Event | None = None,
    on_result: Callable[[RetrainResult], None] | None = None,
    settings: TrainingSettings = DEFAULT_SETTINGS,
) -> JobReport:
    """Drains this shard of the queue; ``deadline`` is a ``time.monotonic()`` value."""
    report = JobReport(Task(shard, deadline, stop, stopped="queue drained"))

    def visible() -> list[Message]:
        with as_worker(conn, None):
            return retrain_queue.peek(conn, shard.index, shard.count, PEEK_BATCH)

    for message in report.task.batches(visible):
        _one(conn, store, message, report, on_result=on_result, settings=settings)
    return report


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
        return  # busy, dropped or exhausted: the queue has recorded why
    person = claim.person_id
    try:
        result = retrain(conn, store, person, claim.trigger, attempt=claim.attempt or 1, settings=settings)
    except Exception as error:
        if not consent.in_force(conn, person, Purpose.TRAINING):
            # Consent withdrawn (before or while training): the request is over, never retried.
            with as_worker(conn, None):
                retrain_queue.complete(conn, claim)
            report.refused[person] = "no consent to training"
            logger.info("retrain request of person %s dropped: no consent to training", person)
            return
        failure = report.task.fail(person, RETRAIN, error)
        with as_worker(conn, None):
            retried = retrain_queue.retry(conn, claim, failure.summary)
        if retried.outcome is RetryOutcome.RETRYING and retried.at is not None:
            report.retrying[person] = retried.at
        elif retried.outcome is RetryOutcome.FAILED:
            report.gave_up.add(person)
        return
    with as_worker(conn, None):
        retrain_queue.complete(conn, claim, training_run_id=result.run_id)
    report.retrained.append(result)
    if consent.in_force(conn, person, Purpose.FORECASTING):
        reason = f"forecast after a {claim.trigger} retrain"
        written = report.task.attempt(person, FORECAST, write_forecasts, conn, store, person, reason=reason)
        if not isinstance(written, Failure):
            report.forecasts.append(written)
    if on_result is not None:
        on_result(result)
