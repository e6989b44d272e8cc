"""The forecast job: write forecasts for every person with new readings, the way a Cloud Run job task does.

A pass lists the persons due a forecast (``private.forecast_due_persons``:
they consent to forecasting and their latest CGM reading is newer than the
latest their active model has forecast from), a page at a time in person
order, takes those of its shard (``CLOUD_RUN_TASK_INDEX`` of
``CLOUD_RUN_TASK_COUNT``), checks each one's earlier forecasts
(``monitoring.monitor``) and writes their new forecasts in that person's
scope (``forecasts.write_forecasts``). The two steps fail apart: a failed
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
from glucokit.db.sessions import Connection, as_worker
from glucokit.forecast import HORIZON_MINUTES
from glucokit.jobs.retrain_job import Shard, stop_reason
from glucokit.modelops import monitoring
from glucokit.modelops.forecasts import ForecastWrite, write_forecasts
from glucokit.modelops.model_store import ModelStore
from glucokit.modelops.monitoring import MonitorReport

PAGE: Final = 500


@dataclass
class ForecastJobReport:
    """What one pass of a task did."""

    written: list[ForecastWrite] = field(default_factory=list)
    failed: dict[UUID, str] = field(default_factory=dict)  # person -> why their forecast failed
    monitored: list[MonitorReport] = field(default_factory=list)  # outcomes and model checks, before the forecasts
    monitor_failed: dict[UUID, str] = field(default_factory=dict)  # person -> why their check failed
    stopped: str = "every due person visited"

    @property
    def points(self) -> int:
        return sum(write.points for write in self.written)


def due_persons(conn: Connection, after: UUID | None, limit: int = PAGE) -> list[UUID]:
    """One page of the persons due a forecast, after ``after`` in id order (unscoped)."""
    with as_worker(conn, None):
        rows = conn.execute(query("forecast_due_persons"), {"after": after, "limit": limit}).fetchall()
    persons: list[UUID] = []
    for (person,) in rows:
        assert isinstance(person, UUID)
        persons.append(person)
    return persons


def run(
    conn: Connection,
    store: ModelStore,
    *,
    shard: Shard | None = None,
    horizons: Sequence[int] = HORIZON_MINUTES,
    deadline: float | None = None,
    stop: threading.Event | None = None,
    on_write: Callable[[ForecastWrite], None] | None = None,
) -> ForecastJobReport:
    """One pass over the persons due a forecast; ``deadline`` is a ``time.monotonic()`` value."""
    report = ForecastJobReport()
    mine = (shard or Shard()).owns
    after: UUID | None = None
    while page := due_persons(conn, after):
        after = page[-1]
        for person in filter(mine, page):
            if reason := stop_reason(stop, deadline):
                report.stopped = reason
                return report
            try:
                report.monitored.append(monitoring.monitor(conn, person))
            except Exception as failure:
                report.monitor_failed[person] = repr(failure)
            try:
                written = write_forecasts(conn, store, person, horizons=horizons)
            except Exception as failure:
                report.failed[person] = repr(failure)
                continue
            report.written.append(written)
            if on_write is not None:
                on_write(written)
    return report
