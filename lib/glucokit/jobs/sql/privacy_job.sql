-- The privacy job (glucokit.jobs.privacy_job).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: pending_privacy_work
-- Pending erasures and model removals, oldest first.
select person_id, work from private.pending_privacy_work(%(limit)s);
