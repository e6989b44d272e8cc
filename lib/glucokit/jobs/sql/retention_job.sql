-- The forecast retention job (glucokit.jobs.retention_job).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: expire_forecasts
-- Creates the daily forecast partitions ahead, drops the expired days, and returns the run's audit record.
select expired_before, forecast_keep, partitions_dropped, default_rows_deleted, partitions_created
from private.expire_forecasts(coalesce(%(now)s::timestamptz, now()));

-- name: forecast_retention
-- The retention policy of full-resolution forecasts, as owners read it.
select keep_after_outcomes, outcome_lookback, longest_horizon from public.forecast_retention();
