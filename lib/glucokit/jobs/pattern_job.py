"""The pattern job: compute the day patterns of every person with days that ended since their newest pattern.

A pass lists the persons due day patterns (``private.pattern_due_persons``:
they consent to pattern search and have an ended local day after their newest
pattern), a page at a time in person order, takes those of its task's shard
(``runner.Task``) and computes each one's new days in that person's scope
(``patterns.refresh``, one transaction each). A person whose refresh fails is
reported and the pass goes on; they stay due for the next pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from glucokit.db.queries import query
from glucokit.db.sessions import Connection
from glucokit.jobs import runner
from glucokit.jobs.runner import ONE_TASK, Failure, Shard, Task, TaskReport
from glucokit.modelops import patterns
from glucokit.modelops.patterns import Refresh

REFRESH: Final = "day patterns"


@dataclass
class PatternJobReport(TaskReport):
    """What one pass of a task did."""

    refreshed: list[Refresh] = field(default_factory=list)

    @property
    def failed(self) -> dict[UUID, str]:
        """Person -> why their refresh failed."""
        return self.task.failed(REFRESH)


def due_persons(conn: Connection, after: UUID | None, limit: int = runner.PAGE) -> list[UUID]:
    """One page of the persons due day patterns, after ``after`` in id order (unscoped)."""
    return runner.due_persons(conn, query("patterns_due_persons"), after, limit)


def run(
    conn: Connection,
    *,
    shard: Shard = ONE_TASK,
    deadline: float | None = None,
    stop: threading.Event | None = None,
    on_refresh: Callable[[Refresh], None] | None = None,
) -> PatternJobReport:
    """One pass over the persons due day patterns; ``deadline`` is a ``time.monotonic()`` value."""
    report = PatternJobReport(Task(shard, deadline, stop, stopped="every due person visited"))
    for person in report.task.persons(lambda after: due_persons(conn, after)):
        done = report.task.attempt(person, REFRESH, patterns.refresh, conn, person, reason="day patterns of new days")
        if isinstance(done, Failure):
            continue
        report.refreshed.append(done)
        if on_refresh is not None:
            on_refresh(done)
    return report
