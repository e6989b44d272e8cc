"""A benchmark's sides on the code of different checkouts, taking turns in one run.

A side is the benchmark script itself, started as a worker process on the
code of one checkout (this tree, or a ``git worktree`` of an earlier commit):
that checkout's ``lib/`` comes first on the Python path, so the worker and
whatever it starts (the job's task processes, the migrations of its scratch
database) run that code, while this tree's ``bench/`` helpers and its embedded
server are shared. The benchmark sends a side one line on stdin per step and
reads one JSON line back, so the sides take turns and see the same machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MAIN = HERE.parent


def start_side(tree: Path, script: Path, arguments: list[str]) -> subprocess.Popen[str]:
    """``script`` with ``arguments`` as a side worker on the code of ``tree`` (lines in, JSON lines out)."""
    environment = {key: value for key, value in os.environ.items() if key != "GLUCOKIT_PROJECT_DIR"} | {
        "PYTHONPATH": os.pathsep.join([str(tree / "lib"), str(HERE)]),
        # Every side uses this tree's embedded server.
        "GLUCOKIT_STATE_DIR": str(MAIN / ".glucokit"),
    }
    command = [sys.executable, str(script.resolve()), *arguments]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment)


def ask(process: subprocess.Popen[str], line: str | None) -> dict[str, Any]:
    """The side's answer to ``line`` (None: to nothing more, e.g. its setup, or after its stdin is closed)."""
    assert process.stdin is not None
    assert process.stdout is not None
    if line is not None:
        process.stdin.write(line + "\n")
        process.stdin.flush()
    answer = process.stdout.readline()
    if not answer:
        raise SystemExit(f"a side stopped (exit {process.wait()})")
    parsed: dict[str, Any] = json.loads(answer)
    return parsed
