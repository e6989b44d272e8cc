"""The forecast retention job: full-resolution forecasts for a window, then whole days dropped.

One call of ``private.expire_forecasts`` (as the worker, unscoped) does the run: it creates the daily
partitions of ``forecast``, ``prediction`` and ``prediction_source`` for the days ahead, drops the days whose
forecasts have all expired (kept ``private.retention_config.forecast_keep`` after the last moment an outcome
can be recorded for them), deletes expired rows that sit in the default partitions, and records the run in
``private.retention_run``, the audit trail. Outcomes, feedback, health checks and band state carry what they
need, so the monitoring figures stay as they were. Run it daily (Cloud Scheduler, or pg_cron calling the
function directly), like the other jobs; it is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, as_worker


def _span(interval: timedelta) -> str:
    """An interval as people write it: "30 days", "4 h", else Python's form."""
    if not interval.seconds and not interval.microseconds:
        return f"{interval.days} day{'s' if interval.days != 1 else ''}"
    if not interval.days and not interval.microseconds and not interval.seconds % 3600:
        return f"{interval.seconds // 3600} h"
    return str(interval)


@dataclass(frozen=True)
class RetentionRun:
    """What one run did."""

    expired_before: datetime  # forecasts generated before this had expired
    keep: timedelta  # the window they were kept for after their outcomes
    partitions_dropped: list[str]
    default_rows_deleted: int
    partitions_created: int

    def summary(self) -> str:
        return (
            f"forecasts generated before {self.expired_before.isoformat()} expired (kept {_span(self.keep)} after their"
            f" outcomes): {len(self.partitions_dropped)} partition(s) dropped, {self.default_rows_deleted} row(s)"
            f" deleted from the default partitions, {self.partitions_created} partition(s) created ahead"
        )


def run(conn: Connection, *, now: datetime | None = None) -> RetentionRun:
    """One retention run, as of ``now`` (the database's clock when None)."""
    with as_worker(conn, None):
        row = conn.execute(query("expire_forecasts"), {"now": now}).fetchone()
    assert row is not None
    expired_before, keep, dropped, deleted, created = row
    assert isinstance(expired_before, datetime)
    assert isinstance(keep, timedelta)
    assert isinstance(dropped, list)
    return RetentionRun(expired_before, keep, [str(name) for name in dropped], int(str(deleted)), int(str(created)))


@dataclass(frozen=True)
class RetentionPolicy:
    """How long full-resolution forecasts are kept (public.forecast_retention(), which owners read too)."""

    keep_after_outcomes: timedelta
    outcome_lookback: timedelta
    longest_horizon: timedelta

    def summary(self) -> str:
        return (
            f"full-resolution forecasts are kept {_span(self.keep_after_outcomes)} after the last moment an outcome"
            f" can be recorded for them (origin + {_span(self.longest_horizon)} + {_span(self.outcome_lookback)});"
            " outcomes, rollups and feedback are kept"
        )


def policy(conn: Connection) -> RetentionPolicy:
    """The retention policy in force."""
    with as_worker(conn, None):
        row = conn.execute(query("forecast_retention")).fetchone()
    assert row is not None
    keep, lookback, horizon = row
    assert isinstance(keep, timedelta)
    assert isinstance(lookback, timedelta)
    assert isinstance(horizon, timedelta)
    return RetentionPolicy(keep, lookback, horizon)
