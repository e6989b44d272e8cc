"""Retraining throughput: persons retrained per hour end to end by the Cloud Run retrain job, per model family.

    .venv/bin/python bench/train.py [--persons 48] [--tasks 1 2] [--families all persistence ar2 ridge network]
                                    [--batches 1 16]

Builds a scratch database on the embedded server, migrated like any other,
with --persons persons, each given one of the simulated 14-day bundles of
data/simulated/ (ingested as the owner, so the new-data trigger queues each
person's first retrain, which a first drain trains). Then, for each --families
value (``all``: the default settings, every family with the champion picked
among them; otherwise that family alone, as GLUCOKIT_MODEL_FAMILIES), each
--tasks value and each --batches value (GLUCOKIT_RETRAIN_BATCH: 1 is one
person at a time, the job's path before batches; the default batch size
trains a batch's networks as one stack), queues a retrain of every person and
runs workers/retrain_job.py as that many parallel tasks (the Cloud Run job's
CLOUD_RUN_TASK_INDEX/COUNT), timing the drain end to end: start the task
processes, read each person's data, train, store the files, register, judge
against the active version. The batch sizes of one (families, tasks) run one
after the other, and each batch size's ratio to the first is reported, by
wall clock and by the CPU time of the task processes (which other work on a
busy machine disturbs less; the database server's share is not in it). The
networks train on the CPU (GLUCOKIT_TRAINING_DEVICE=cpu). Prints a JSON
summary; the recorded result is bench/results/train.json. Targets: 3,600
persons/hour on 2 CPU cores for the default settings, and 2.5 times the
persons/hour of one person at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from itertools import cycle
from pathlib import Path
from uuid import uuid4

import psycopg

from glucokit.fhir.ingest import Ingest
from glucokit.forecast import FAMILIES
from glucokit.jobs.retrain_job import BATCH_SIZE
from glucokit.project import PROJECT_DIR, SIMULATED_DIR
from scratch import scratch_database

JOB = PROJECT_DIR / "workers" / "retrain_job.py"


def _persons(url: str, count: int) -> list[str]:
    bundles = cycle(sorted(SIMULATED_DIR.glob("*.json.gz")))
    ids = []
    with psycopg.connect(url) as conn:
        for _ in range(count):
            user, person = uuid4(), uuid4()
            conn.execute(
                "insert into auth.users (id, aud, role) values (%s, 'authenticated', 'authenticated')", (user,)
            )
            conn.execute("insert into public.person (id, owner_id) values (%s, %s)", (person, user))
            conn.execute("insert into public.consent (person_id, purpose) values (%s, 'training')", (person,))
            conn.commit()
            Ingest([conn], user_id=user, person_id=person).path(next(bundles))
            ids.append(str(person))
    return ids


def _drain(
    url: str, tasks: int, model_dir: Path, families: str = "all", batch: int = BATCH_SIZE
) -> tuple[float, float]:
    """Wall seconds for ``tasks`` parallel job tasks, training ``families`` in batches of ``batch``, to drain the
    queue, and the CPU seconds (user + system) the task processes used."""
    began, cpu = time.perf_counter(), _children_cpu()
    running = [
        subprocess.Popen(
            [sys.executable, str(JOB)],
            env=os.environ
            | {
                "DATABASE_URL": url,
                "GLUCOKIT_MODEL_DIR": str(model_dir),
                "CLOUD_RUN_TASK_INDEX": str(index),
                "CLOUD_RUN_TASK_COUNT": str(tasks),
                "GLUCOKIT_MODEL_FAMILIES": "" if families == "all" else families,
                "GLUCOKIT_RETRAIN_BATCH": str(batch),
                "GLUCOKIT_TRAINING_DEVICE": "cpu",
            },
            stdout=subprocess.DEVNULL,
        )
        for index in range(tasks)
    ]
    codes = [process.wait() for process in running]
    if any(codes):
        raise SystemExit(f"a job task failed: exit codes {codes}")
    return time.perf_counter() - began, _children_cpu() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=48)
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--families", nargs="+", default=["all", *FAMILIES], choices=["all", *FAMILIES])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, BATCH_SIZE], help="GLUCOKIT_RETRAIN_BATCH")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    runs = []
    with scratch_database() as url, tempfile.TemporaryDirectory() as scratch:
        persons = _persons(url, args.persons)
        first_s, _ = _drain(url, 1, Path(scratch))  # first models: nothing to judge against yet
        for families in args.families:
            for tasks in args.tasks:
                first_rate = first_cpu_rate = None
                for batch in args.batches:
                    with psycopg.connect(url) as conn:
                        for person in persons:
                            conn.execute("select private.enqueue_retrain(%s, 'scheduled', 'benchmark')", (person,))
                    seconds, cpu = _drain(url, tasks, Path(scratch), families, batch)
                    rate, cpu_rate = len(persons) / seconds * 3600, len(persons) / cpu * 3600
                    first_rate, first_cpu_rate = first_rate or rate, first_cpu_rate or cpu_rate
                    runs.append(
                        {
                            "families": families,
                            "tasks": tasks,
                            "batch": batch,
                            "seconds": round(seconds, 1),
                            "persons_per_hour": round(rate),
                            f"ratio_to_batch_{args.batches[0]}": round(rate / first_rate, 2),
                            "task_cpu_seconds": round(cpu, 1),
                            "persons_per_task_cpu_hour": round(cpu_rate),
                            f"cpu_ratio_to_batch_{args.batches[0]}": round(cpu_rate / first_cpu_rate, 2),
                        }
                    )
        with psycopg.connect(url) as conn:
            rows = conn.execute("select stage::text, count(*) from public.ml_model group by stage").fetchall()
            stages = {str(stage): int(str(count)) for stage, count in rows}

    print(
        json.dumps(
            {
                "benchmark": "persons retrained end to end by the retrain job (read, train, store, register, judge)",
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
                "persons": args.persons,
                "first_models": {
                    "tasks": 1,
                    "seconds": round(first_s, 1),
                    "persons_per_hour": round(args.persons / first_s * 3600),
                },
                "retrains": runs,
                "model_stages": stages,
                "target_persons_per_hour": 3600,
                "target_ratio_to_one_at_a_time": 2.5,
                "command": "bench/train.py " + " ".join(sys.argv[1:]),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
