-- The forecast job (glucokit.jobs.forecast_job).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: forecast_due_persons
-- One page of the persons of a task's shard due a forecast, in id order (an unscoped worker).
select person_id from private.forecast_due_persons(%(after)s, %(limit)s, %(shard_index)s, %(shard_count)s);
