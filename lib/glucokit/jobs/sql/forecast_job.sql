-- The forecast job (glucokit.jobs.forecast_job).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: forecast_due_persons
-- One page of the persons due a forecast, in id order (an unscoped worker).
select person_id from private.forecast_due_persons(%(after)s, %(limit)s);
