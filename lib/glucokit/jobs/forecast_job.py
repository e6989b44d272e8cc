"""The forecast job: write forecasts for every person with new readings, the way a Cloud Run job task does.

A pass lists the persons due a forecast (``private.forecast_due_persons``:
they consent to forecasting and their latest CGM reading is newer than the
latest their active model has forecast from), a page at a time in person
order, takes those of its task's shard (``runner.Task``), checks each one's
earlier forecasts (``monitoring.monitor``) and writes their new forecasts in
that person's scope (``forecasts.write_forecasts``). The two steps fail apart: a failed
check is reported and the forecast is still written, since users need the
curve more than the check (which the next pass makes again). Each
person is visited once per pass; one whose latest hour cannot be forecast (a
gap) stays due and is tried again by the next pass. Run it on a schedule
(Cloud Scheduler every few minutes); it stops early when its time is up or
when asked to stop (SIGTERM), after the person in hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from glucokit.db.queries import query
from glucokit.db.sessions import Connection
from glucokit.forecast import HORIZON_MINUTES
from glucokit.jobs import runner
from glucokit.jobs.runner import ONE_TASK, Failure, Shard, Task, TaskReport
from glucokit.modelops import monitoring
from glucokit.modelops.forecasts import ForecastWrite, write_forecasts
from glucokit.modelops.model_store import ModelStore

# The two steps for a person, which fail apart.
MONITORING: Final = "monitoring"
FORECAST: Final = "forecast"


@dataclass
class ForecastJobReport(TaskReport):
    """What one pass of a task did."""

    written: list[ForecastWrite] = field(default_factory=list)

    @property
    def failed(self) -> dict[UUID, str]:
        """Person -> why their forecast failed."""
        return self.task.failed(FORECAST)

    @property
    def monitor_failed(self) -> dict[UUID, str]:
        """Person -> why the check of their earlier forecasts failed."""
        return self.task.failed(MONITORING)

    @property
    def points(self) -> int:
        return sum(write.points for write in self.written)


def due_persons(conn: Connection, after: UUID | None, limit: int = runner.PAGE) -> list[UUID]:
    """One page of the persons due a forecast, after ``after`` in id order (unscoped)."""
    return runner.due_persons(conn, query("forecast_due_persons"), after, limit)


def run(
    conn: Connection,
    store: ModelStore,
    *,
    shard: Shard = ONE_TASK,
    horizons: Sequence[int] = HORIZON_MINUTES,
    deadline: float | None = None,
    stop: threading.Event | None = None,
    on_write: Callable[[ForecastWrite], None] | None = None,
) -> ForecastJobReport:
    """One pass over the persons due a forecast; ``deadline`` is a ``time.monotonic()`` value."""
    report = ForecastJobReport(Task(shard, deadline, stop, stopped="every due person visited"))
    for person in report.task.persons(lambda after: due_persons(conn, after)):
        report.task.attempt(person, MONITORING, monitoring.monitor, conn, person)
        written = report.task.attempt(person, FORECAST, write_forecasts, conn, store, person, horizons=horizons)
        if isinstance(written, Failure):
            continue
        report.written.append(written)
        if on_write is not None:
            on_write(written)
    return report
