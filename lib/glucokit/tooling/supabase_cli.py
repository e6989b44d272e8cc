"""The pinned Supabase CLI (npm ``supabase``), run against a database URL.

Its state goes to ``.glucokit/supabase-home`` rather than the user's home, and
telemetry is off. The CLI needs no Docker for what glucokit asks of it:
``db push``, ``migration list`` and ``db advisors`` against ``--remote=<url>``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from glucokit.db.urls import redact, with_host
from glucokit.errors import GlucokitError
from glucokit.project import NODE_BIN, PROJECT_DIR, STATE_DIR
from glucokit.tooling import tools

CLI_TIMEOUT_S = 600


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    output: str  # stdout and stderr together, for messages


def run(args: list[str], url: str, *, workdir: Path = PROJECT_DIR) -> CliResult:
    """Run ``supabase <args> --remote=<url>`` in ``workdir`` (the folder holding ``supabase/``)."""
    binary = NODE_BIN / "supabase"
    if not binary.exists():
        raise GlucokitError(f"the Supabase CLI is not installed at {binary}: run `npm ci`")
    home = STATE_DIR / "supabase-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "SUPABASE_TELEMETRY_DISABLED": "1",
        "DO_NOT_TRACK": "1",
    }
    remote = with_host(url)
    command = [str(binary), *args, f"--remote={remote}", "--workdir", str(workdir)]
    completed = tools.run(command, what=f"`supabase {' '.join(args)}`", timeout_s=CLI_TIMEOUT_S, cwd=workdir, env=env)
    secret_free = redact(remote)
    return CliResult(
        returncode=completed.returncode,
        stdout=completed.stdout.replace(remote, secret_free),
        output=(completed.stdout + completed.stderr).replace(remote, secret_free),
    )


_ERROR_LINE = re.compile(r"^(ERROR: .*|failed to .*|error .*)$", re.MULTILINE | re.IGNORECASE)


def error_summary(output: str) -> str:
    """The one line of the CLI's output that says what went wrong."""
    found = _ERROR_LINE.findall(output)
    if found:
        return str(found[-1]).strip()
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
