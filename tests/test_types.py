"""The generated Database type (types/database.ts): current with the migrations, and only what an app may reach.

examples/supabase-js is type-checked against it by `make lint` (tsc --noEmit).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from glucokit.cli import main as cli
from glucokit.cli.common import Exit
from glucokit.tooling import typescript

pytestmark = pytest.mark.full_schema


def test_the_committed_types_are_what_the_migrations_generate(database_url: str) -> None:
    assert typescript.TYPES_FILE.read_text() == typescript.generate(database_url), (
        "types/database.ts differs from the migrations: run `glucokit types --write`"
    )


def test_the_types_show_no_partition_and_no_internal_schema(database_url: str) -> None:
    text = typescript.generate(database_url)
    schemas = re.findall(r'^  "?([a-z_]+)"?: \{$', text, re.MULTILINE)
    assert set(schemas) == {"public"}
    assert re.search(r'"[a-z_]+_(default|y\d{4}m\d{2}|d\d{8})": \{', text) is None
    assert '"observation": {' in text


def test_the_command_writes_and_checks_the_file(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "types" / "database.ts"
    monkeypatch.setattr(typescript, "TYPES_FILE", stale)
    assert cli.main(["types", "--check", "--database-url", database_url]) == Exit.FAILED
    assert "glucokit types --write" in capsys.readouterr().out
    assert cli.main(["types", "--write", "--database-url", database_url]) == Exit.OK
    assert stale.read_text() == typescript.generate(database_url)
    assert cli.main(["types", "--check", "--database-url", database_url]) == Exit.OK
