-- The retrain queue's functions (glucokit.modelops.retrain_queue).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: retrain_enqueue
-- Queues a retrain of a person (deduplicated: one queued request per person); the request id.
select private.enqueue_retrain(%(person_id)s, %(trigger)s::public.training_trigger, %(reason)s);

-- name: retrain_request
-- The signed-in owner asks for a retrain of one of their persons (rate limited); the request id.
select public.request_retrain(%(person_id)s, %(reason)s);

-- name: retrain_enqueue_due
-- Queues retrains of persons whose active model is older than max_age; how many.
select private.enqueue_due_retrains(%(max_age)s, %(limit)s);

-- name: retrain_read
-- Reads retrain messages and hides them for vt_seconds, with the request each one carries.
select msg_id, read_ct, enqueued_at, vt, message, request_id, person_id, trigger::text, status::text
from private.read_retrains(%(vt_seconds)s, %(qty)s);

-- name: retrain_peek
-- The visible retrain messages of one job task's shard, oldest first, without hiding them.
select msg_id, read_ct, enqueued_at, vt, message, request_id, person_id, trigger::text, status::text
from private.peek_retrains(%(shard_index)s, %(shard_count)s, %(qty)s);

-- name: retrain_claim
-- Claims the retrain a message carries: claimed, busy, dropped or exhausted.
select outcome, request_id, person_id, trigger::text, reason, attempt, lease_expires_at
from private.claim_retrain(%(msg_id)s, %(lease_seconds)s);

-- name: retrain_extend_lease
-- Extends a live claim; the new end of its lease.
select private.extend_retrain_lease(%(msg_id)s, %(attempt)s, %(lease_seconds)s);

-- name: retrain_complete
-- Ends a claim as done (deletes the message); false when its person is gone.
select private.complete_retrain(%(msg_id)s, %(attempt)s, %(training_run_id)s);

-- name: retrain_fail
-- Ends a claim as failed (archives the message); false when its person is gone.
select private.fail_retrain(%(msg_id)s, %(attempt)s, %(error)s, %(training_run_id)s);

-- name: retrain_retry
-- The claimed retrain raised: retrying (with when) after a backoff, failed after the last attempt, or gone.
select outcome, retry_at from private.retry_retrain(%(msg_id)s, %(attempt)s, %(error)s);

-- name: retrain_metrics
-- The retrain queue at a glance.
select queue_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, queued, running, expired_leases,
  retrying, failed_last_day
from private.retrain_queue_metrics();

-- name: retrain_dead_letters
-- The operator's view of retrain requests given up for good (as the database owner: an operator tool), newest first.
select id, person_id, trigger::text, attempts, error, finished_at
from public.retrain_request
where status = 'failed'
order by finished_at desc nulls last, id
limit %(limit)s;
