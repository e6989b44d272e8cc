"""The one runner every job is built on: which persons a task takes, when it stops, and what failed.

A Cloud Run job execution runs several tasks; each takes the persons whose id
falls on its index of the task count (``Shard``; Cloud Run's
``CLOUD_RUN_TASK_INDEX`` of ``CLOUD_RUN_TASK_COUNT``, which the worker entry
points read and pass in: nothing in ``jobs`` reads the environment). A task
works through its persons a batch at a time (``Task.persons`` pages through
the persons due work in id order; ``Task.batches`` fetches again until a
fetch is empty) and takes no more work once asked to stop (SIGTERM, Cloud
Run's notice before it kills a task) or past its deadline: it finishes the
person in hand and looks at no other.

Each person's work is tried on its own (``Task.attempt``): a failure is
logged with its type, message and traceback, kept in the task's report, and
the task goes on with the next person.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, ParamSpec, TypeVar
from uuid import UUID

from glucokit.db.sessions import Connection, as_worker

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Done = TypeVar("Done")
Arguments = ParamSpec("Arguments")


@dataclass(frozen=True)
class Shard:
    """Which persons a task takes: those whose id falls on ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"task index {self.index} is not in 0..{self.count - 1}")

    def owns(self, person_id: UUID) -> bool:
        # private.retrain_shard computes the same for the queue's messages and the persons due a forecast (a test
        # holds them equal).
        return person_id.int % self.count == self.index


# A job run as a single task takes every person.
ONE_TASK: Final = Shard()
PAGE: Final = 500  # persons listed per query of the persons due work


def due_persons(
    conn: Connection, listing: bytes, after: UUID | None, limit: int = PAGE, shard: Shard | None = None
) -> list[UUID]:
    """One page of the persons the ``listing`` query lists as due work (parameters ``after`` and ``limit``, and
    ``shard_index`` and ``shard_count`` when it lists one ``shard``), after ``after`` in id order; as the worker,
    unscoped."""
    parameters: dict[str, object] = {"after": after, "limit": limit}
    if shard is not None:
        parameters |= {"shard_index": shard.index, "shard_count": shard.count}
    with as_worker(conn, None):
        rows = conn.execute(listing, parameters).fetchall()
    persons: list[UUID] = []
    for (person,) in rows:
        assert isinstance(person, UUID)
        persons.append(person)
    return persons


def stop_on_sigterm() -> threading.Event:
    """An event that is set when the process receives SIGTERM; install it once, in the main thread."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    return stop


def deadline_after(seconds: float | None) -> float | None:
    """The ``time.monotonic()`` value ``seconds`` from now; None (no deadline) without ``seconds``."""
    return None if seconds is None else time.monotonic() + seconds


@dataclass(frozen=True)
class Failure:
    """One person's step that raised: what the report keeps and what the log gets."""

    person_id: UUID
    step: str  # what the task was doing for the person ("forecast", "erasure", ...)
    error_type: str  # the exception's class
    message: str
    stack_trace: str  # the traceback, as Python prints it
    summary: str  # the exception's repr: what reports, the command line and the retrain queue show

    @classmethod
    def of(cls, person_id: UUID, step: str, error: Exception) -> Failure:
        kind = type(error)
        # Named as a traceback names it: with its module, unless it is a builtin.
        module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
        return cls(
            person_id,
            step,
            module + kind.__qualname__,
            str(error),
            "".join(traceback.format_exception(error)),
            repr(error),
        )


@dataclass
class Task:
    """One task's pass over its work: the persons it takes, when it must stop, what failed, and why it stopped."""

    shard: Shard = ONE_TASK
    deadline: float | None = None  # a time.monotonic() value
    stop: threading.Event | None = None  # set when the task is asked to stop (stop_on_sigterm)
    stopped: str = "no work left"  # the job's words for running out of work, until the task stops early
    failures: list[Failure] = field(default_factory=list)

    def stop_reason(self) -> str | None:
        """Why the task must take no more work: asked to stop, or past its deadline."""
        if self.stop is not None and self.stop.is_set():
            return "asked to stop"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "out of time"
        return None

    def _must_stop(self) -> bool:
        reason = self.stop_reason()
        if reason is not None:
            self.stopped = reason
        return reason is not None

    def _work_through(self, batches: Iterable[Sequence[Item]]) -> Iterator[Item]:
        """The items of ``batches``, each batch taken when the one before is worked through, until a batch is
        empty or the task must stop (checked before every batch and every item)."""
        pending = iter(batches)
        while not self._must_stop():
            batch = next(pending, None)
            if not batch:
                return
            for item in batch:
                if self._must_stop():
                    return
                yield item

    def batches(self, fetch: Callable[[], Sequence[Item]]) -> Iterator[Item]:
        """The items ``fetch()`` returns, fetched again once they are worked through, until a fetch is empty.

        ``fetch`` must leave out what is done (a queue's claimed messages, work finished or failed)."""

        def fetched() -> Iterator[Sequence[Item]]:
            while batch := fetch():
                yield batch

        return self._work_through(fetched())

    def persons(self, page: Callable[[UUID | None], Sequence[UUID]], *, sharded: bool = False) -> Iterator[UUID]:
        """The persons of this task's shard among those ``page(after)`` lists a page at a time, in id order after
        ``after`` (the last of the page before), until a page is empty: each due person is visited once.
        ``sharded``: the pages list this task's shard only (the query filters it), so none is dropped here."""

        def pages() -> Iterator[list[UUID]]:
            after: UUID | None = None
            while listed := page(after):
                after = listed[-1]
                yield list(listed) if sharded else [person for person in listed if self.shard.owns(person)]

        # A page without a person of this shard is not the end of the work.
        return self._work_through(mine for mine in pages() if mine)

    def attempt(
        self,
        person_id: UUID,
        step: str,
        work: Callable[Arguments, Done],
        *args: Arguments.args,
        **kwargs: Arguments.kwargs,
    ) -> Done | Failure:
        """What ``work(*args, **kwargs)`` returns, or, when it raises, the failure (logged and kept)."""
        try:
            return work(*args, **kwargs)
        except Exception as error:
            return self.fail(person_id, step, error)

    def fail(self, person_id: UUID, step: str, error: Exception) -> Failure:
        """Logs and keeps the failure of ``step`` for the person."""
        failure = Failure.of(person_id, step, error)
        self.failures.append(failure)
        logger.error(
            "%s failed for person %s: %s: %s",
            step,
            person_id,
            failure.error_type,
            failure.message,
            exc_info=error,
            extra={"person_id": str(person_id), "step": step},
        )
        return failure

    def failed(self, *steps: str) -> dict[UUID, str]:
        """Person -> the summary of their last failure at any of ``steps`` (at any step when none is named)."""
        return {f.person_id: f.summary for f in self.failures if not steps or f.step in steps}


@dataclass
class TaskReport:
    """What every job reports: its task, with the failures and why it stopped; each job adds what it did."""

    task: Task

    @property
    def stopped(self) -> str:
        return self.task.stopped
