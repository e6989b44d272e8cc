"""Cloud Run job: drain the retrain queue, one person at a time.

    python workers/retrain_job.py

Environment:
    DATABASE_URL            the database; the login role must be allowed to `set role glucokit_worker`
    SUPABASE_URL            the project's URL: model files go to its Storage (all three or none)
    SUPABASE_ANON_KEY       the project's anon (publishable) key, sent as `apikey`
    SUPABASE_JWT_SECRET     the project's JWT secret, signs the short-lived worker tokens (keep it in a secret manager)
    GLUCOKIT_MODEL_DIR      without the three above: the local model store's directory (default .glucokit/storage)
    CLOUD_RUN_TASK_INDEX    this task's shard (Cloud Run sets it; default 0)
    CLOUD_RUN_TASK_COUNT    the number of tasks (Cloud Run sets it; default 1)
    GLUCOKIT_JOB_SECONDS    stop claiming new work after this many seconds (default: until the queue is drained)
    GLUCOKIT_MODEL_FAMILIES train only these model families, comma-separated, from persistence,ar2,ridge,network
                            (default: all four; the champion is picked among them)

Exit status: 0 when the shard was drained or the task stopped in time; 1 when
a retrain failed. The queue retries that person after a backoff (a later
execution takes them; schedule the job), and fails the request for good
after its last attempt; a retry of the task by Cloud Run finds it still
waiting and changes nothing.
SIGTERM stops the task cleanly: the person in hand is finished, no other is taken.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from glucokit.db import connection
from glucokit.errors import GlucokitError
from glucokit.jobs import retrain_job
from glucokit.modelops import model_store
from glucokit.modelops.retrain import RetrainResult


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    shard = retrain_job.Shard(
        int(os.environ.get("CLOUD_RUN_TASK_INDEX", "0")), int(os.environ.get("CLOUD_RUN_TASK_COUNT", "1"))
    )
    seconds = os.environ.get("GLUCOKIT_JOB_SECONDS")
    deadline = time.monotonic() + float(seconds) if seconds else None
    try:
        settings = retrain_job.training_settings(os.environ.get("GLUCOKIT_MODEL_FAMILIES"))
        store = model_store.from_environment()
    except GlucokitError as refused:
        print(f"retrain_job: {refused}", file=sys.stderr)
        return 2

    def report(result: RetrainResult) -> None:
        state = "active" if result.activated else "kept"
        print(f"{result.person_id}: {result.version} ({result.algorithm}) {state}: {result.reason}", flush=True)

    url = os.environ.get("DATABASE_URL")
    if not url:
        print("retrain_job: DATABASE_URL is required", file=sys.stderr)
        return 2
    with connection.connect(url) as conn:
        done = retrain_job.run(
            conn, store, shard=shard, deadline=deadline, stop=stop, on_result=report, settings=settings
        )
    for person, error in done.failed.items():
        if person in done.gave_up:
            outcome = "failed for good after its last attempt"
        elif person in done.retrying:
            outcome = f"will be retried at {done.retrying[person].isoformat()}"
        else:
            outcome = "the person is gone"
        print(f"{person}: retrain failed, {outcome}: {error}", file=sys.stderr)
    print(
        f"task {shard.index}/{shard.count}: {len(done.retrained)} retrained, {len(done.failed)} failed, {done.stopped}"
    )
    return 1 if done.has_failures else 0


if __name__ == "__main__":
    sys.exit(main())
