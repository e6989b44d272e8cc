"""The import rule of docs/architecture.md holds: the contracts in pyproject.toml's [tool.importlinter], checked by
import-linter on the whole package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from glucokit.project import PROJECT_DIR


def test_imports_follow_the_layers() -> None:
    # The command, as `make lint` runs it: its report names each import that breaks a contract, and its route.
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [lint_imports, "--no-cache", "--no-logo"], cwd=PROJECT_DIR, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
