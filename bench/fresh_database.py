"""Time a fresh embedded database: `glucokit db start` on an empty data directory, then `glucokit db migrate`.

    .venv/bin/python bench/fresh_database.py [--runs 3]

Each run uses a new state directory (GLUCOKIT_STATE_DIR), so initdb, the
platform layer and every migration through `supabase db push` are included.
Prints a JSON summary; the recorded result is bench/results/fresh_database.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def _timed(args: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "glucokit.cli.main", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    starts, migrations = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="glucokit-bench-") as state:
            env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
            env["GLUCOKIT_STATE_DIR"] = state
            try:
                starts.append(_timed(["db", "start"], env))
                migrations.append(_timed(["db", "migrate"], env))
            finally:
                subprocess.run(
                    [sys.executable, "-m", "glucokit.cli.main", "db", "stop"], env=env, check=False, capture_output=True
                )
    print(
        json.dumps(
            {
                "benchmark": "fresh embedded database: db start + db migrate",
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "runs": runs,
                "db_start_s_median": round(statistics.median(starts), 2),
                "db_migrate_s_median": round(statistics.median(migrations), 2),
                "total_s_median": round(statistics.median(s + m for s, m in zip(starts, migrations, strict=True)), 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
