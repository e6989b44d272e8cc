"""The retrain job: drain the retrain queue, a batch of persons at a time, the way a Cloud Run job task does.

Each task of a job execution (``runner.Task``) looks at the visible messages
of its shard (by person id), which the database selects
(``retrain_queue.peek``), so however many messages of other shards come
first, a task finds its own; looking hides nothing. A task claims up to
``batch_size`` requests, each with its own lease (which hides its message),
and retrains them together (``retrain``): each person's data is read in their
own scoped transaction, their networks train as one stack, and each person
is finished in their own scoped transaction, then their request completed.
``batch_size`` 1 retrains one person at a time. It stops when its shard has
nothing visible, when its time is up, or when asked to stop (SIGTERM): it
finishes the batch in hand and claims no other. A task computes on one CPU
thread (``forecast.model.one_thread``, as the networks train anyway): tasks,
not threads, use the cores, and the results are those of one thread on any
machine.

Leases: a batch trains while its claims' leases run (1,800 s by default; a
batch of 16 persons of every family takes well under a minute on one core),
and each claim is extended (``retrain_queue.extend``) just before its person
is finished, so that a long batch holds it to the end. A claim whose lease
ran out and that another claim took over meanwhile (``ClaimLost``) is left
to that claim: its person's result is dropped, nothing is stored.

A person whose retrain raised (the database or the store failing; too little
data and failed training are handled inside ``retrain`` with a fallback)
fails alone: the others of the batch go on. Their request is handed back to
the queue (``retrain_queue.retry``): it waits again and its message shows
after a backoff that doubles with each attempt, so a later job execution
retries it; after the queue's ``max_attempts`` claims it is failed for good,
with the reason on the request row (the dead-letter state). A worker killed
mid-batch leaves its claims to expire instead, and the next claims take them
over, within the same attempt limit. The task reports every failure (logged
by the runner), and the job exits non-zero.

After each person's retrain the task writes their forecast from their active
model (``forecasts.write_forecasts``). A forecast that fails is reported but
retries nothing: the retrain is done, and the forecast job catches up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, ParamSpec, TypeVar
from uuid import UUID

from glucokit.db.sessions import Connection, Purpose, as_worker
from glucokit.forecast import TrainingSettings
from glucokit.forecast.model import one_thread
from glucokit.forecast.pipeline import DEFAULT_SETTINGS
from glucokit.jobs.runner import ONE_TASK, Failure, Shard, Task, TaskReport
from glucokit.modelops import retrain, retrain_queue
from glucokit.modelops.forecasts import ForecastWrite, write_forecasts
from glucokit.modelops.model_store import ModelStore
from glucokit.modelops.retrain import RetrainResult
from glucokit.modelops.retrain_queue import Claim, ClaimLost, Message, RetryOutcome
from glucokit.privacy import consent

logger = logging.getLogger(__name__)
Arguments = ParamSpec("Arguments")
Done = TypeVar("Done")

PEEK_BATCH: Final = 10
BATCH_SIZE: Final = 16  # GLUCOKIT_RETRAIN_BATCH's default
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
    batch_size: int = BATCH_SIZE,
    device: str | None = None,
) -> JobReport:
    """Drains this shard of the queue; ``deadline`` is a ``time.monotonic()`` value."""
    if batch_size < 1:
        raise ValueError(f"a batch holds at least 1 person; got {batch_size}")
    report = JobReport(Task(shard, deadline, stop, stopped="queue drained"))

    def visible() -> list[Message]:
        with as_worker(conn, None):
            return retrain_queue.peek(conn, shard.index, shard.count, max(PEEK_BATCH, batch_size))

    claims: list[tuple[Claim, retrain.Request]] = []
    with one_thread():
        for message in report.task.batches(visible):
            with as_worker(conn, None):
                claim = retrain_queue.claim(conn, message.msg_id)
            if claim.claimed and claim.person_id is not None and claim.trigger is not None:
                claims.append((claim, retrain.Request(claim.person_id, claim.trigger, claim.attempt or 1)))
            # else busy, dropped or exhausted: the queue has recorded why
            if len(claims) == batch_size:
                _batch(conn, store, claims, report, on_result=on_result, settings=settings, device=device)
                claims = []
        # Out of work, out of time or asked to stop: the batch in hand is finished all the same.
        _batch(conn, store, claims, report, on_result=on_result, settings=settings, device=device)
    return report


def _batch(
    conn: Connection,
    store: ModelStore,
    claims: list[tuple[Claim, retrain.Request]],
    report: JobReport,
    *,
    on_result: Callable[[RetrainResult], None] | None,
    settings: TrainingSettings,
    device: str | None,
) -> None:
    """Reads, trains and finishes the claimed persons (the module's docstring); each fails alone."""
    if not claims:
        return
    read: list[tuple[Claim, retrain.Person]] = []
    for claim, request in claims:
        person = _step(conn, claim, request, report, retrain.read, conn, request, settings)
        if person is not None:
            read.append((claim, person))
    retrain.train([person for _, person in read], device)
    for claim, person in read:
        try:
            with as_worker(conn, None):
                retrain_queue.extend(conn, claim)
        except ClaimLost:
            logger.warning("retrain of person %s dropped: its claim was taken over", person.person_id)
            continue
        result = _step(conn, claim, person.request, report, retrain.finish, conn, store, person)
        if result is None:
            continue
        with as_worker(conn, None):
            retrain_queue.complete(conn, claim, training_run_id=result.run_id)
        report.retrained.append(result)
        if consent.in_force(conn, person.person_id, Purpose.FORECASTING):
            reason = f"forecast after a {person.request.trigger} retrain"
            written = report.task.attempt(
                person.person_id, FORECAST, write_forecasts, conn, store, person.person_id, reason=reason
            )
            if not isinstance(written, Failure):
                report.forecasts.append(written)
        if on_result is not None:
            on_result(result)


def _step(
    conn: Connection,
    claim: Claim,
    request: retrain.Request,
    report: JobReport,
    work: Callable[Arguments, Done],
    *args: Arguments.args,
    **kwargs: Arguments.kwargs,
) -> Done | None:
    """What ``work`` returns; when it raises, the claim ends (no consent: dropped; else retried) and None."""
    person = request.person_id
    try:
        return work(*args, **kwargs)
    except Exception as error:
        if not consent.in_force(conn, person, Purpose.TRAINING):
            # Consent withdrawn (before or while training): the request is over, never retried.
            with as_worker(conn, None):
                retrain_queue.complete(conn, claim)
            report.refused[person] = "no consent to training"
            logger.info("retrain request of person %s dropped: no consent to training", person)
            return None
        failure = report.task.fail(person, RETRAIN, error)
        with as_worker(conn, None):
            retried = retrain_queue.retry(conn, claim, failure.summary)
        if retried.outcome is RetryOutcome.RETRYING and retried.at is not None:
            report.retrying[person] = retried.at
        elif retried.outcome is RetryOutcome.FAILED:
            report.gave_up.add(person)
        return None
