"""The forecast pass: CPU per forecast and persons per hour, replaying readings through the forecast job.

    .venv/bin/python bench/forecast_pass.py [--persons 6] [--hours 4] [--step-minutes 5] [--profile-steps 6]
        [--pooler] --before WORKTREE [--after TREE] [--out bench/results/forecast_pass.json]

Two workers, each with its own scratch database on the embedded server
(migrated by its own code's migrations) and the same persons: --persons persons
given the simulated 14-day bundles of data/simulated/ in turn, the first
days up to --hours before the end ingested and a default model trained on
them. Then the last --hours arrive in steps of --step-minutes (the readings of
each step ingested as each person's owner, outside the timing) and after every
step the forecast job (``forecast_job.run``) makes one pass, as a Cloud Run
forecast task scheduled every few minutes would. The two workers take turns
step by step, so both see the same machine at the same moment:

- **before**: the code of --before (a ``git worktree`` of the commit before the
  forecast-pass work), on its own migrations;
- **after**: the code of --after (this tree by default), on its own migrations.

Per pass it records the worker's process CPU (``time.process_time``), the
database backend's CPU (utime + stime from ``/proc/<backend pid>/stat``; the
embedded server runs on this machine), and the wall time; the first
--profile-steps passes run under cProfile instead and only give where the
worker's time goes (cumulative seconds of the steps of a pass), not timings.
After the passes each side measures the floor of any per-person pass: the CPU
of an empty worker transaction scoped to a person (role, consent check, audit
row, commit; ``empty_scope_*``). The job's connection prepares a statement on
its fifth execution, as a direct or session-mode connection does; with --pooler
neither side prepares any, as through Supavisor's transaction mode (port 6543).
Prints a JSON summary; the recorded result is bench/results/forecast_pass.json.
Target: at most 10 ms of CPU per forecast (worker + backend).
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from itertools import cycle
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from sides import ask as _ask
from sides import start_side

TARGET_MS: float = 10.0
HERE = Path(__file__).resolve().parent
MAIN = HERE.parent
# Where a pass's worker time goes: the functions whose cumulative time the profile reports (file suffix, names;
# the later names are this tree's, where the person's two steps share one scoped transaction).
STEPS = {
    "list persons due": ("runner.py", ("due_persons",)),
    "scope + audit (as_worker)": ("sessions.py", ("as_worker",)),
    "monitoring": ("monitoring.py", ("monitor", "monitor_in_scope")),
    "write_forecasts": ("forecasts.py", ("write_forecasts", "write_in_scope")),
    "model load (load_state)": ("model_store.py", ("load_state",)),
    "band state (serving)": ("band_state.py", ("serving",)),
    "records read": ("forecasts.py", ("_records",)),
    "model forward (forecast_from)": ("pipeline.py", ("forecast_from",)),
    "curves + anchors (_curves)": ("forecasts.py", ("_curves",)),
    "staging COPY (_stage)": ("forecasts.py", ("_stage",)),
    "database round trips (execute)": ("connection.py", ("execute",)),
}


def _backend_cpu(pid: int) -> float:
    """The backend's user + system CPU seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _entries(bundle: Path) -> list[tuple[datetime, dict[str, Any]]]:
    with gzip.open(bundle) as raw:
        entries = json.load(raw)["entry"]
    timed = [(datetime.fromisoformat(e["resource"]["effectiveDateTime"]), e) for e in entries]
    return sorted(timed, key=lambda pair: pair[0])


def _bundle(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode()


def _timing_cursor() -> type:
    """A cursor class that adds each statement's wall time to ``statement_seconds``, by its text's start."""
    import psycopg  # noqa: PLC0415

    class TimingCursor(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return super().execute(query, params, **kwargs)
            finally:
                text = query.decode() if isinstance(query, bytes) else str(query)
                key = " ".join(text.split())[:70]
                STATEMENT_SECONDS[key] = STATEMENT_SECONDS.get(key, 0.0) + time.perf_counter() - began

    return TimingCursor


STATEMENT_SECONDS: dict[str, float] = {}


def worker(persons: int, hours: float, step_minutes: int, profile_steps: int, pooler: bool) -> None:
    """One side: set up, then one pass per line on stdin, one JSON line per pass on stdout."""
    import psycopg  # noqa: PLC0415

    from glucokit.fhir.ingest import Ingest  # noqa: PLC0415
    from glucokit.jobs import forecast_job  # noqa: PLC0415
    from glucokit.modelops.model_store import LocalModelStore  # noqa: PLC0415
    from glucokit.modelops.retrain import retrain  # noqa: PLC0415
    from glucokit.project import SIMULATED_DIR  # noqa: PLC0415
    from scratch import scratch_database  # noqa: PLC0415

    bundles = cycle(sorted(SIMULATED_DIR.glob("*.json.gz")))
    # Through a transaction-mode pooler nothing is prepared (glucokit.db.urls.prepare_threshold), else psycopg's 5.
    options: dict[str, Any] = {"prepare_threshold": None} if pooler else {}
    with scratch_database() as url, psycopg.connect(url, **options) as conn, tempfile.TemporaryDirectory() as models:
        store = LocalModelStore(Path(models))
        people: list[tuple[UUID, UUID, list[tuple[datetime, dict[str, Any]]]]] = []
        for _ in range(persons):
            user, person = uuid4(), uuid4()
            conn.execute(
                "insert into auth.users (id, aud, role) values (%s, 'authenticated', 'authenticated')", (user,)
            )
            conn.execute("insert into public.person (id, owner_id) values (%s, %s)", (person, user))
            conn.execute(
                "insert into public.consent (person_id, purpose) values (%s, 'training'), (%s, 'forecasting')",
                (person, person),
            )
            conn.commit()
            entries = _entries(next(bundles))
            start = entries[-1][0] - timedelta(hours=hours)
            history = [e for at, e in entries if at <= start]
            Ingest([conn], user_id=user, person_id=person).document(_bundle(history), source="history.json")
            assert retrain(conn, store, person, "initial").activated
            people.append((user, person, [(at, e) for at, e in entries if at > start]))
        # The first pass forecasts from the last reading of the history (as after a retrain); not measured.
        forecast_job.run(conn, store)
        print(json.dumps({"ready": True}), flush=True)
        backend = conn.info.backend_pid
        step = timedelta(minutes=step_minutes)
        for index, _line in enumerate(sys.stdin):
            for user, person, later in people:
                base = later[0][0] - timedelta(seconds=1)
                fresh = [e for at, e in later if base + index * step < at <= base + (index + 1) * step]
                if fresh:
                    Ingest([conn], user_id=user, person_id=person).document(_bundle(fresh), source="step.json")
            profile = cProfile.Profile() if index < profile_steps else None
            STATEMENT_SECONDS.clear()
            conn.cursor_factory = _timing_cursor() if profile is not None else psycopg.Cursor
            cpu, server, wall = time.process_time(), _backend_cpu(backend), time.perf_counter()
            if profile is not None:
                report = profile.runcall(forecast_job.run, conn, store)
            else:
                report = forecast_job.run(conn, store)
            cpu, server, wall = time.process_time() - cpu, _backend_cpu(backend) - server, time.perf_counter() - wall
            result: dict[str, Any] = {
                "forecasts": sum(w.origins for w in report.written),
                "persons": len(report.written),
                "failed": len(report.task.failures),
                "profiled": profile is not None,
                "worker_cpu_s": cpu,
                "backend_cpu_s": server,
                "wall_s": wall,
            }
            if profile is not None:
                stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
                result["steps_s"] = {
                    label: sum(
                        entry[3]
                        for (file, _, function), entry in stats.items()
                        if file.endswith(suffix) and function in names
                    )
                    for label, (suffix, names) in STEPS.items()
                }
                result["statement_s"] = dict(STATEMENT_SECONDS)
                result["statements"] = sum(
                    entry[1]
                    for (file, _, function), entry in stats.items()
                    if file.endswith(("psycopg/connection.py", "psycopg/cursor.py")) and function in ("execute", "copy")
                )
            print(json.dumps(result), flush=True)
        print(json.dumps(_scope_floor(conn, [person for _, person, _ in people])), flush=True)


def _scope_floor(conn: Any, persons: list[UUID], rounds: int = 50) -> dict[str, float]:
    """The CPU of an empty worker transaction scoped to a person for forecasting (role switch, consent check,
    audit row, commit): what any per-person pass costs at least, per transaction."""
    from glucokit.db.sessions import Purpose, as_worker  # noqa: PLC0415

    backend = conn.info.backend_pid
    cpu, server = time.process_time(), _backend_cpu(backend)
    for _ in range(rounds):
        for person in persons:
            with as_worker(conn, person, Purpose.FORECASTING, "forecast pass benchmark: empty scope"):
                pass
    cpu, server = time.process_time() - cpu, _backend_cpu(backend) - server
    count = rounds * len(persons)
    return {
        "empty_scope_worker_cpu_ms": round(1000 * cpu / count, 2),
        "empty_scope_backend_cpu_ms": round(1000 * server / count, 2),
        "empty_scope_cpu_ms": round(1000 * (cpu + server) / count, 2),
    }


def _start(tree: Path, args: argparse.Namespace) -> subprocess.Popen[str]:
    arguments = ["--worker", "--before", str(tree), "--persons", str(args.persons)]
    arguments += ["--hours", str(args.hours), "--step-minutes", str(args.step_minutes)]
    arguments += ["--profile-steps", str(args.profile_steps)] + (["--pooler"] if args.pooler else [])
    return start_side(tree, Path(__file__), arguments)


def _summary(passes: list[dict[str, Any]]) -> dict[str, Any]:
    timed = [p for p in passes if not p["profiled"]]
    forecasts = sum(p["forecasts"] for p in timed)
    worker_cpu = sum(p["worker_cpu_s"] for p in timed)
    backend_cpu = sum(p["backend_cpu_s"] for p in timed)
    wall = sum(p["wall_s"] for p in timed)
    steps: dict[str, float] = {}
    profiled = [p for p in passes if p["profiled"]]
    for p in profiled:
        for label, seconds in p["steps_s"].items():
            steps[label] = steps.get(label, 0.0) + seconds
    profiled_forecasts = sum(p["forecasts"] for p in profiled) or 1
    statements = sum(p["statements"] for p in profiled)
    by_statement: dict[str, float] = {}
    for p in profiled:
        for text, seconds in p["statement_s"].items():
            by_statement[text] = by_statement.get(text, 0.0) + seconds
    return {
        "passes": len(timed),
        "forecasts": forecasts,
        "person_passes": sum(p["persons"] for p in timed),
        "failed": sum(p["failed"] for p in passes),
        "worker_cpu_ms_per_forecast": round(1000 * worker_cpu / forecasts, 2),
        "backend_cpu_ms_per_forecast": round(1000 * backend_cpu / forecasts, 2),
        "cpu_ms_per_forecast": round(1000 * (worker_cpu + backend_cpu) / forecasts, 2),
        "wall_ms_per_forecast": round(1000 * wall / forecasts, 2),
        "persons_per_hour_one_task": round(3600 * sum(p["persons"] for p in timed) / wall),
        "profile_ms_per_forecast": {label: round(1000 * s / profiled_forecasts, 2) for label, s in steps.items()},
        "profile_statements_per_forecast": round(statements / profiled_forecasts, 1),
        "profile_statement_ms_per_forecast": {
            text: round(1000 * seconds / profiled_forecasts, 2)
            for text, seconds in sorted(by_statement.items(), key=lambda item: -item[1])[:12]
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=6)
    parser.add_argument("--hours", type=float, default=4.0)
    parser.add_argument("--step-minutes", type=int, default=5)
    parser.add_argument("--profile-steps", type=int, default=6)
    parser.add_argument("--before", type=Path, required=True, help="a git worktree of the code before")
    parser.add_argument("--after", type=Path, default=MAIN, help="the code after (default: this tree)")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--pooler", action="store_true", help="both sides prepare no statement, as through a transaction-mode pooler"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.persons, args.hours, args.step_minutes, args.profile_steps, args.pooler)
        return
    began = time.perf_counter()
    sides = {"before": _start(args.before, args), "after": _start(args.after, args)}
    for process in sides.values():
        _ask(process, None)  # set up
    passes: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for index in range(int(args.hours * 60 / args.step_minutes)):
        for name, process in sides.items():
            passes[name].append(_ask(process, str(index)))
    floors = {}
    for name, process in sides.items():
        assert process.stdin is not None
        process.stdin.close()
        floors[name] = _ask(process, None)  # the empty scope's CPU, measured after the passes
        process.wait()
    before, after = _summary(passes["before"]) | floors["before"], _summary(passes["after"]) | floors["after"]
    result = {
        "command": " ".join(["bench/forecast_pass.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "before_code": str(args.before),
        "after_code": str(args.after),
        "persons": args.persons,
        "prepared_statements": not args.pooler,
        "hours_replayed": args.hours,
        "step_minutes": args.step_minutes,
        "before": before,
        "after": after,
        "cpu_ratio_before_over_after": round(before["cpu_ms_per_forecast"] / after["cpu_ms_per_forecast"], 2),
        "target_ms_per_forecast": TARGET_MS,
        "met": after["cpu_ms_per_forecast"] <= TARGET_MS,
        "seconds": round(time.perf_counter() - began, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
