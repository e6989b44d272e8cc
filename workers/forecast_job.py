"""Cloud Run job: write the forecasts of every person with new readings, one person at a time.

    python workers/forecast_job.py

Run it on a schedule (Cloud Scheduler every few minutes): each execution is
one pass over the persons due a forecast (new CGM readings since their active
model last forecast), sharded over its tasks by person id.

Environment:
    DATABASE_URL            the database; the login role must be allowed to `set role glucokit_worker`
    SUPABASE_URL, SUPABASE_ANON_KEY, SUPABASE_JWT_SECRET, GLUCOKIT_MODEL_DIR
                            where the model files are, as for workers/retrain_job.py
    CLOUD_RUN_TASK_INDEX    this task's shard (Cloud Run sets it; default 0)
    CLOUD_RUN_TASK_COUNT    the number of tasks (Cloud Run sets it; default 1)
    GLUCOKIT_JOB_SECONDS    stop after this many seconds (default: until every due person was visited)
    GLUCOKIT_FORECAST_HORIZONS  the horizons to write, comma-separated minutes (default: 5,10,...,60)

Exit status: 0 when the pass finished or stopped in time; 1 when a person's
forecast or the check of their earlier forecasts failed (the next pass tries
again; a failed check never keeps a forecast from being written); 2 on bad settings.
SIGTERM stops the task cleanly after the person in hand.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from glucokit.db import connection
from glucokit.errors import GlucokitError
from glucokit.jobs import forecast_job
from glucokit.jobs.retrain_job import Shard
from glucokit.modelops import model_store
from glucokit.modelops.forecasts import ForecastWrite, horizons_setting


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("forecast_job: DATABASE_URL is required", file=sys.stderr)
        return 2
    try:
        shard = Shard(
            int(os.environ.get("CLOUD_RUN_TASK_INDEX", "0")), int(os.environ.get("CLOUD_RUN_TASK_COUNT", "1"))
        )
        horizons = horizons_setting(os.environ.get("GLUCOKIT_FORECAST_HORIZONS"))
        store = model_store.from_environment()
    except (GlucokitError, ValueError) as error:  # ValueError: a task index outside the task count
        print(f"forecast_job: {error}", file=sys.stderr)
        return 2
    seconds = os.environ.get("GLUCOKIT_JOB_SECONDS")
    deadline = time.monotonic() + float(seconds) if seconds else None

    def report(written: ForecastWrite) -> None:
        outcome = f"{written.points} points from {written.origins} readings" if written.points else written.reason
        print(f"{written.person_id}: {outcome}", flush=True)

    with connection.connect(url) as conn:
        done = forecast_job.run(
            conn, store, shard=shard, horizons=horizons, deadline=deadline, stop=stop, on_write=report
        )
    for person, failure in done.monitor_failed.items():
        print(f"{person}: monitoring failed: {failure}", file=sys.stderr)
    for person, failure in done.failed.items():
        print(f"{person}: forecast failed: {failure}", file=sys.stderr)
    print(
        f"task {shard.index}/{shard.count}: {len(done.written)} persons, {done.points} points,"
        f" {len(done.monitor_failed)} checks failed, {len(done.failed)} failed, {done.stopped}"
    )
    return 1 if done.failed or done.monitor_failed else 0


if __name__ == "__main__":
    sys.exit(main())
