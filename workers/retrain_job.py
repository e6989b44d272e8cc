"""Cloud Run job: drain the retrain queue, a batch of persons at a time.

    python workers/retrain_job.py

Settings (README.md, "Settings"): DATABASE_URL (the login role must be allowed to `set role glucokit_worker`);
the model store: SUPABASE_URL, SUPABASE_ANON_KEY and SUPABASE_JWT_SECRET (all three or none), or
GLUCOKIT_MODEL_DIR; CLOUD_RUN_TASK_INDEX and CLOUD_RUN_TASK_COUNT (set by Cloud Run); GLUCOKIT_JOB_SECONDS;
GLUCOKIT_MODEL_FAMILIES; GLUCOKIT_RETRAIN_BATCH; GLUCOKIT_TRAINING_DEVICE.

Exit status: 0 when the shard was drained or the task stopped in time; 1 when
a retrain failed. The queue retries that person after a backoff (a later
execution takes them; schedule the job), and fails the request for good
after its last attempt; a retry of the task by Cloud Run finds it still
waiting and changes nothing. 2 on bad settings.
SIGTERM stops the task cleanly: the batch in hand is finished, no other is claimed.
"""

from __future__ import annotations

import logging
import sys

from glucokit import logs
from glucokit.db import connection
from glucokit.errors import GlucokitError
from glucokit.jobs import retrain_job
from glucokit.jobs.runner import Shard, deadline_after, stop_on_sigterm
from glucokit.modelops import model_store
from glucokit.modelops.retrain import RetrainResult
from glucokit.settings import RetrainJobSettings, load

log = logging.getLogger("retrain_job")


def main() -> int:
    logs.configure("retrain_job")
    stop = stop_on_sigterm()
    try:
        settings = load(RetrainJobSettings)
        store = model_store.from_settings(settings)
    except GlucokitError as refused:
        log.error("%s", refused)
        return 2
    shard = Shard(settings.task_index, settings.task_count)

    def report(result: RetrainResult) -> None:
        state = "active" if result.activated else "kept"
        log.info(
            "%s: %s (%s) %s: %s",
            result.person_id, result.version, result.algorithm, state, result.reason,
            extra={"person_id": str(result.person_id)},
        )  # fmt: skip

    with connection.connect(settings.database_url.get_secret_value()) as conn:
        done = retrain_job.run(
            conn,
            store,
            shard=shard,
            deadline=deadline_after(settings.job_seconds),
            stop=stop,
            on_result=report,
            settings=settings.training,
            batch_size=settings.retrain_batch,
            device=settings.device,
        )
    for person, error in done.failed.items():
        if person in done.gave_up:
            outcome = "failed for good after its last attempt"
        elif person in done.retrying:
            outcome = f"will be retried at {done.retrying[person].isoformat()}"
        else:
            outcome = "the person is gone"
        log.error("%s: retrain failed, %s: %s", person, outcome, error, extra={"person_id": str(person)})
    log.info(
        "task %d/%d: %d retrained, %d failed, %s",
        shard.index, shard.count, len(done.retrained), len(done.failed), done.stopped,
    )  # fmt: skip
    return 1 if done.has_failures else 0


if __name__ == "__main__":
    sys.exit(main())
