-- The pattern job (glucokit.jobs.pattern_job).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: patterns_due_persons
-- One page of the persons due day patterns, in id order (an unscoped worker).
select person_id from private.pattern_due_persons(%(after)s, %(limit)s);
