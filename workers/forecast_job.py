"""Cloud Run job: write the forecasts of every person with new readings, one person at a time.

    python workers/forecast_job.py

Run it on a schedule (Cloud Scheduler every few minutes): each execution is
one pass over the persons due a forecast (new CGM readings since their active
model last forecast), sharded over its tasks by person id.

Settings (README.md, "Settings"): DATABASE_URL (the login role must be allowed to `set role glucokit_worker`);
the model store, as for workers/retrain_job.py; CLOUD_RUN_TASK_INDEX and CLOUD_RUN_TASK_COUNT (set by Cloud
Run); GLUCOKIT_JOB_SECONDS; GLUCOKIT_FORECAST_HORIZONS.

Exit status: 0 when the pass finished or stopped in time; 1 when a person's
forecast or the check of their earlier forecasts failed (each failure is logged
with its traceback; the next pass tries again; a failed check never keeps a
forecast from being written); 2 on bad settings.
SIGTERM stops the task cleanly after the person in hand.
"""

from __future__ import annotations

import logging
import sys

from glucokit import logs
from glucokit.db import connection
from glucokit.errors import GlucokitError
from glucokit.jobs import forecast_job
from glucokit.jobs.runner import Shard, deadline_after, stop_on_sigterm
from glucokit.modelops import model_store
from glucokit.modelops.forecasts import ForecastWrite
from glucokit.settings import ForecastJobSettings, load

log = logging.getLogger("forecast_job")


def main() -> int:
    logs.configure("forecast_job")
    stop = stop_on_sigterm()
    try:
        settings = load(ForecastJobSettings)
        store = model_store.from_settings(settings)
    except GlucokitError as refused:
        log.error("%s", refused)
        return 2
    shard = Shard(settings.task_index, settings.task_count)

    def report(written: ForecastWrite) -> None:
        outcome = f"{written.points} points from {written.origins} readings" if written.points else written.reason
        log.info("%s: %s", written.person_id, outcome, extra={"person_id": str(written.person_id)})

    with connection.connect(settings.database_url.get_secret_value()) as conn:
        done = forecast_job.run(
            conn,
            store,
            shard=shard,
            horizons=settings.forecast_horizons,
            deadline=deadline_after(settings.job_seconds),
            stop=stop,
            on_write=report,
        )
    log.info(
        "task %d/%d: %d persons, %d points, %d checks failed, %d failed, %s",
        shard.index, shard.count, len(done.written), done.points, len(done.monitor_failed), len(done.failed),
        done.stopped,
    )  # fmt: skip
    return 1 if done.failed or done.monitor_failed else 0


if __name__ == "__main__":
    sys.exit(main())
