"""Retraining throughput: persons retrained per hour end to end by the Cloud Run retrain job, per model family.

    .venv/bin/python bench/train.py [--persons 48] [--tasks 1 2] [--families all persistence ar2 ridge network]
                                    [--batches 1 16] [--before WORKTREE] [--rounds 1] [--out FILE]

Each side (bench/sides.py) builds its own scratch database on the embedded
server, migrated by its own code's migrations, with --persons persons, each
given one of the simulated 14-day bundles of data/simulated/ (ingested as the
owner, so the new-data trigger queues each person's first retrain, which a
first drain trains). The sides are this tree's code and, with --before, the
code of another checkout (a ``git worktree`` of an earlier commit: "today's
default" of issue 16 is commit 8baed7f, one person at a time, its only path).

Then, --rounds times, for each --families value (``all``: the default
settings, every family with the champion picked among them; otherwise that
family alone, as GLUCOKIT_MODEL_FAMILIES) and each --tasks value, the sides
take turns: the --before side once with its own defaults, this tree once per
--batches value (GLUCOKIT_RETRAIN_BATCH: 1 is one person at a time; the
default batch size trains a batch's networks as one stack). Each turn queues
a retrain of every person and runs workers/retrain_job.py as that many
parallel tasks (the Cloud Run job's CLOUD_RUN_TASK_INDEX/COUNT), timing the
drain end to end: start the task processes, read each person's data, train,
store the files, register, judge against the active version. Besides the wall
clock it takes the CPU time of the task processes, which other work on a busy
machine disturbs less (the database server's share is not in it), and where
the wall clock went: each task's persons, end and CPU, the embedded server's
CPU, and the core-seconds left to other work or idle. Every
result of this tree is given as a ratio to its first --batches value and to
the --before side of the same (families, tasks, round), by wall clock and by
task CPU. The networks train on the CPU (GLUCOKIT_TRAINING_DEVICE=cpu).
Prints a JSON summary; the recorded result is bench/results/train.json.
Targets: 3,600 persons/hour on 2 CPU cores for the default settings, and 2.5
times the persons/hour of today's default (--before 8baed7f).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from itertools import cycle
from pathlib import Path
from typing import Any
from uuid import UUID

from glucokit.forecast import FAMILIES
from sides import MAIN, ask, start_side

TARGET_RATIO = 2.5
TARGET_PERSONS_PER_HOUR = 3600


def _persons(url: str, count: int) -> list[str]:
    import psycopg  # noqa: PLC0415

    from glucokit.fhir.ingest import Ingest  # noqa: PLC0415
    from glucokit.project import SIMULATED_DIR  # noqa: PLC0415

    bundles = cycle(sorted(SIMULATED_DIR.glob("*.json.gz")))
    draw = random.Random(0)  # noqa: S311 (not a secret: every side gets the same ids, so its tasks get the same shards)
    ids = []
    with psycopg.connect(url) as conn:
        for _ in range(count):
            user, person = (UUID(int=draw.getrandbits(128), version=4) for _ in range(2))
            conn.execute(
                "insert into auth.users (id, aud, role) values (%s, 'authenticated', 'authenticated')", (user,)
            )
            conn.execute("insert into public.person (id, owner_id) values (%s, %s)", (person, user))
            conn.execute("insert into public.consent (person_id, purpose) values (%s, 'training')", (person,))
            conn.commit()
            Ingest([conn], user_id=user, person_id=person).path(next(bundles))
            ids.append(str(person))
    return ids


def _drain(url: str, tasks: int, model_dir: Path, families: str, batch: int | None) -> dict[str, Any]:
    """``tasks`` parallel job tasks of this side's code, training ``families`` in batches of ``batch`` (None: the
    job's default; code without batches ignores it), draining the queue: the wall seconds until the last task
    ended, the CPU seconds (user + system) of the task processes, each task's own, and the embedded database
    server's CPU seconds meanwhile (every database on it, this side's and whatever else ran there)."""
    from glucokit.project import PROJECT_DIR  # noqa: PLC0415

    began, cpu, database_cpu = time.perf_counter(), _children_cpu(), _server_cpu()
    running = {
        subprocess.Popen(
            [sys.executable, str(PROJECT_DIR / "workers" / "retrain_job.py")],
            env=os.environ
            | {
                "DATABASE_URL": url,
                "GLUCOKIT_MODEL_DIR": str(model_dir),
                "CLOUD_RUN_TASK_INDEX": str(index),
                "CLOUD_RUN_TASK_COUNT": str(tasks),
                "GLUCOKIT_MODEL_FAMILIES": "" if families == "all" else families,
                "GLUCOKIT_RETRAIN_BATCH": "" if batch is None else str(batch),
                "GLUCOKIT_TRAINING_DEVICE": "cpu",
            },
            stdout=subprocess.DEVNULL,
        ).pid: index
        for index in range(tasks)
    }
    ended, task_cpu, codes = [0.0] * tasks, [0.0] * tasks, list[int]()
    while len(codes) < tasks:  # in the order they end: each task's wall seconds and CPU
        pid, status, usage = os.wait4(-1, 0)
        index = running[pid]
        ended[index], task_cpu[index] = time.perf_counter() - began, usage.ru_utime + usage.ru_stime
        codes.append(os.waitstatus_to_exitcode(status))
    if any(codes):
        raise SystemExit(f"a job task failed: exit codes {codes}")
    return {
        "seconds": max(ended),
        "task_cpu_seconds": _children_cpu() - cpu,
        "task_seconds": ended,
        "cpu_seconds_per_task": task_cpu,
        "database_cpu_seconds": _server_cpu() - database_cpu,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _server_cpu() -> float:
    """CPU seconds of the embedded PostgreSQL so far: its postmaster, the children it reaped, those still running."""
    from glucokit.tooling import database  # noqa: PLC0415

    postmaster = (database.EmbeddedServer().pgdata / "postmaster.pid").read_text().split()[0]
    stat = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(field) for field in stat[11:15])  # utime, stime, cutime, cstime
    for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
        with contextlib.suppress(FileNotFoundError):  # ended meanwhile: its time is in cutime/cstime next time
            ticks += sum(
                int(field) for field in Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
            )
    return ticks / os.sysconf("SC_CLK_TCK")


def worker(persons: int) -> None:
    """One side: set up and drain once (first models), then one timed drain per JSON line on stdin."""
    import psycopg  # noqa: PLC0415

    from glucokit.jobs.runner import Shard  # noqa: PLC0415
    from scratch import scratch_database  # noqa: PLC0415

    with scratch_database() as url, tempfile.TemporaryDirectory() as scratch:
        ids = _persons(url, persons)
        first = _drain(url, 1, Path(scratch), "all", None)  # nothing to judge against yet
        print(
            json.dumps({"first_seconds": first["seconds"], "first_task_cpu_seconds": first["task_cpu_seconds"]}),
            flush=True,
        )
        for line in sys.stdin:
            turn = json.loads(line)
            with psycopg.connect(url) as conn:
                for person in ids:
                    conn.execute("select private.enqueue_retrain(%s, 'scheduled', 'benchmark')", (person,))
            drained = _drain(url, turn["tasks"], Path(scratch), turn["families"], turn["batch"])
            drained["persons_per_task"] = [
                sum(Shard(index, turn["tasks"]).owns(UUID(person)) for person in ids) for index in range(turn["tasks"])
            ]
            print(json.dumps(drained), flush=True)
        with psycopg.connect(url) as conn:
            rows = conn.execute("select stage::text, count(*) from public.ml_model group by stage").fetchall()
        print(json.dumps({"model_stages": {str(stage): int(str(count)) for stage, count in rows}}), flush=True)


def _row(code: str, turn: dict[str, Any], answer: dict[str, Any], persons: int) -> dict[str, Any]:
    seconds, cpu = answer["seconds"], answer["task_cpu_seconds"]
    return {
        "code": code,
        **turn,
        "seconds": round(seconds, 1),
        "persons_per_hour": round(persons / seconds * 3600),
        "task_cpu_seconds": round(cpu, 1),
        "task_cpu_seconds_per_person": round(cpu / persons, 3),
        "persons_per_task_cpu_hour": round(persons / cpu * 3600),
        # Where the wall clock went: each task's persons (its shard), end and CPU; the database server's CPU; and
        # what the cores had left (cores x wall - task CPU - database CPU: other work on the machine, or idle).
        "persons_per_task": answer["persons_per_task"],
        "task_seconds": [round(value, 1) for value in answer["task_seconds"]],
        "cpu_seconds_per_task": [round(value, 1) for value in answer["cpu_seconds_per_task"]],
        "database_cpu_seconds": round(answer["database_cpu_seconds"], 1),
        "core_seconds_left": round((os.cpu_count() or 1) * seconds - cpu - answer["database_cpu_seconds"], 1),
    }


def _ratios(row: dict[str, Any], base: dict[str, Any], name: str) -> dict[str, float]:
    return {
        f"ratio_to_{name}": round(base["seconds"] / row["seconds"], 2),
        f"cpu_ratio_to_{name}": round(base["task_cpu_seconds"] / row["task_cpu_seconds"], 2),
    }


def main() -> None:
    if "--worker" in sys.argv:  # a side, on its own code (which may not know batches)
        side = argparse.ArgumentParser()
        side.add_argument("--worker", action="store_true")
        side.add_argument("--persons", type=int)
        worker(side.parse_args().persons)
        return
    from glucokit.jobs.retrain_job import BATCH_SIZE  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=48)
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--families", nargs="+", default=["all", *FAMILIES], choices=["all", *FAMILIES])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, BATCH_SIZE], help="GLUCOKIT_RETRAIN_BATCH")
    parser.add_argument("--before", type=Path, help="a git worktree of the code to compare with (today's default)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    began, load_before = time.perf_counter(), os.getloadavg()
    trees = {"current": MAIN} | ({"before": args.before} if args.before else {})
    sides = {
        name: start_side(tree, Path(__file__), ["--worker", "--persons", str(args.persons)])
        for name, tree in trees.items()
    }
    first = {name: ask(process, None) for name, process in sides.items()}  # set up, first models
    first_batch = f"batch_{args.batches[0]}"
    runs: list[dict[str, Any]] = []
    for round_ in range(1, args.rounds + 1):
        for families in args.families:
            for tasks in args.tasks:
                turn = {"round": round_, "families": families, "tasks": tasks}
                before = None
                if "before" in sides:
                    answer = ask(sides["before"], json.dumps(turn | {"batch": None}))
                    before = _row("before", turn | {"batch": 1}, answer, args.persons)
                    runs.append(before)
                base = None
                for batch in args.batches:
                    answer = ask(sides["current"], json.dumps(turn | {"batch": batch}))
                    row = _row("current", turn | {"batch": batch}, answer, args.persons)
                    base = base or row
                    row |= _ratios(row, base, first_batch)
                    if before is not None:
                        row |= _ratios(row, before, "before")
                    runs.append(row)
    stages = {}
    for name, process in sides.items():
        assert process.stdin is not None
        process.stdin.close()
        stages[name] = ask(process, None)["model_stages"]
        process.wait()
    result = {
        "benchmark": "persons retrained end to end by the retrain job (read, train, store, register, judge)",
        "command": " ".join(["bench/train.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "code": {name: str(tree) for name, tree in trees.items()},
        "persons": args.persons,
        "first_models": {
            name: {
                "tasks": 1,
                "seconds": round(answer["first_seconds"], 1),
                "persons_per_hour": round(args.persons / answer["first_seconds"] * 3600),
                "task_cpu_seconds": round(answer["first_task_cpu_seconds"], 1),
            }
            for name, answer in first.items()
        },
        "retrains": runs,
        "model_stages": stages,
        "target_persons_per_hour": TARGET_PERSONS_PER_HOUR,
        "target_ratio_to_before": TARGET_RATIO,
        "seconds": round(time.perf_counter() - began, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
