"""The forecast job: write forecasts for every person with new readings, the way a Cloud Run job task does.

A pass lists the persons due a forecast (``private.forecast_due_persons``:
they consent to forecasting and their latest CGM reading is newer than the
latest their active model has forecast from), a page at a time in person
order, only those of its task's shard (``runner.Shard``, filtered by the query), and in one
worker transaction scoped to each person for forecasting (one consent check, one audit
row) checks their earlier forecasts (``monitoring.monitor_in_scope``) and writes their
new forecasts (``forecasts.write_in_scope``), with the active model, the thresholds and the
transaction's clock read once for both. The two steps fail apart: the check runs in
a savepoint, so a failed check is rolled back alone and reported and the forecast is
still written, since users need the curve more than the check (which the next pass
makes again); a failed write rolls back the person's transaction, check included, and
the next pass makes both again. Each person is visited once per pass; one whose latest hour cannot be forecast (a
gap) stays due and is tried again by the next pass. Run it on a schedule
(Cloud Scheduler every few minutes); it stops early when its time is up or
when asked to stop (SIGTERM), after the person in hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from uuid import UUID

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, Purpose, as_worker
from glucokit.forecast import HORIZON_MINUTES
from glucokit.forecast.windows import check_horizons
from glucokit.jobs import runner
from glucokit.jobs.runner import ONE_TASK, Failure, Shard, Task, TaskReport
from glucokit.modelops import monitoring, registry
from glucokit.modelops.forecasts import ForecastWrite, write_in_scope
from glucokit.modelops.model_store import ModelStore
from glucokit.modelops.registry import ModelVersion

# The two steps for a person, which fail apart.
MONITORING: Final = "monitoring"
FORECAST: Final = "forecast"
# The audit log's reason for a person's transaction of a pass.
REASON: Final = "forecast pass: check earlier forecasts, write new ones"


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


def due_persons(conn: Connection, after: UUID | None, limit: int = runner.PAGE, shard: Shard = ONE_TASK) -> list[UUID]:
    """One page of the persons of ``shard`` due a forecast, after ``after`` in id order (unscoped)."""
    return runner.due_persons(conn, query("forecast_due_persons"), after, limit, shard)


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
    wanted = check_horizons(horizons)
    report = ForecastJobReport(Task(shard, deadline, stop, stopped="every due person visited"))
    for person in report.task.persons(lambda after: due_persons(conn, after, shard=shard), sharded=True):
        written = report.task.attempt(person, FORECAST, _person_pass, conn, store, person, wanted, report.task)
        if isinstance(written, Failure):
            continue
        report.written.append(written)
        if on_write is not None:
            on_write(written)
    return report


def _person_pass(
    conn: Connection, store: ModelStore, person: UUID, horizons: tuple[int, ...], task: Task
) -> ForecastWrite:
    """One person's transaction of a pass: the check in a savepoint (its failure kept in ``task``), then the write."""
    with as_worker(conn, person, Purpose.FORECASTING, REASON):
        model = registry.active(conn, person)
        config, now = monitoring.settings(conn)  # the thresholds and the transaction's clock, for both steps
        task.attempt(person, MONITORING, _check, conn, person, model, config, now)
        return write_in_scope(conn, store, person, model, horizons, now=now)


def _check(
    conn: Connection, person: UUID, model: ModelVersion | None, config: monitoring.Settings, now: datetime
) -> monitoring.MonitorReport:
    with conn.transaction():  # a savepoint: a failed check rolls back alone
        return monitoring.monitor_in_scope(conn, person, model, config, now)
