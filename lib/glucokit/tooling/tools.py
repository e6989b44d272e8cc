"""Running the external tools glucokit drives (the Supabase CLI, Node scripts)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from glucokit.errors import GlucokitError


def run(
    command: list[str], *, what: str, timeout_s: int, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` without input and capture its output; a time-out is a one-line error about ``what``."""
    try:
        return subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GlucokitError(f"{what} did not finish in {timeout_s} s") from exc
