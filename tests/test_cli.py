"""The `glucokit` command end to end, as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg

from glucokit.cli.common import Exit
from glucokit.cli.demo import DEMO_USERS
from glucokit.disclaimer import DISCLAIMER
from glucokit.tooling import policies
from glucokit.tooling.database import EmbeddedServer
from wording import forbidden_words

GLUCOKIT = [sys.executable, "-m", "glucokit.cli.main"]


def glucokit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"} | (env or {})
    return subprocess.run([*GLUCOKIT, *args], capture_output=True, text=True, timeout=300, env=environment, check=False)


def test_db_url_prints_one_libpq_url() -> None:
    assert glucokit("db", "start").returncode == 0
    result = glucokit("db", "url")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    with psycopg.connect(lines[0]) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_database_url_points_every_command_elsewhere(database_url: str) -> None:
    result = glucokit("db", "status", env={"DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    assert re.search(r"migrations: \d+ applied, 0 pending", result.stdout)
    assert glucokit("db", "url", "--database-url", database_url).stdout.strip() == database_url


def test_a_bad_url_is_one_clear_line(database_url: str) -> None:
    result = glucokit("db", "migrate", "--database-url", "mysql://somewhere/db")
    assert result.returncode == 1
    assert result.stderr == "glucokit: error: not a PostgreSQL URL (expected postgresql://...): mysql://somewhere/db\n"


def test_a_server_that_is_down_is_one_clear_line(tmp_path: Path) -> None:
    url = f"postgresql://postgres:secret@localhost:5432/postgres?host={tmp_path}"
    result = glucokit("db", "migrate", "--database-url", url)
    assert result.returncode == Exit.UNREACHABLE
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("glucokit: error: cannot connect to postgresql://postgres:***@localhost")
    assert "No such file or directory" in result.stderr
    assert "secret" not in result.stderr


def test_start_and_stop_refuse_an_external_database(database_url: str) -> None:
    for action in ("start", "stop"):
        result = glucokit("db", action, "--database-url", database_url)
        assert result.returncode == 1
        assert "glucokit only" in result.stderr
        assert "embedded database" in result.stderr


def test_embedded_server_lifecycle(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "pgdata")
    assert server.postmaster() is None
    running = server.start()
    assert server.start() == running
    with psycopg.connect(running.url()) as conn:
        assert conn.execute("select default_version from pg_available_extensions where name = 'vector'").fetchone()
    assert server.stop() is True
    assert server.postmaster() is None
    assert server.stop() is False


def test_prisma_check_exits_1_on_drift(database_url: str, tmp_path: Path) -> None:
    schema = tmp_path / "schema.prisma"
    schema.write_text(Path("prisma/schema.prisma").read_text().replace("  reason      String?\n", ""))
    result = glucokit("prisma", "check", "--database-url", database_url, "--schema", str(schema))
    assert result.returncode == Exit.FAILED, result.stderr
    assert 'DROP COLUMN "reason"' in result.stdout


def test_demo_loads_and_shows_what_each_user_sees(new_database: Callable[[], str]) -> None:
    url = new_database()
    for _ in range(2):  # loading twice gives the same picture
        result = glucokit("demo", "--database-url", url)
        assert result.returncode == 0, result.stderr
    table = {
        line.split()[0]: line.split()[1:]
        for line in result.stdout.splitlines()
        if line.split() and line.split()[0] in {"person", "observation", "ml_model", "prediction"}
    }
    alice_persons, bob_persons = (len(user.persons) for user in DEMO_USERS)
    assert table["person"] == [str(alice_persons + bob_persons), str(alice_persons), str(bob_persons)]
    assert table["prediction"] == [str(12 * 3), str(12 * alice_persons), str(12 * bob_persons)]
    assert "anon sees: nothing (permission denied for table person)" in result.stdout
    forecasts = result.stdout.split("Latest forecasts (informational only):\n", 1)[1].splitlines()
    for user in DEMO_USERS:
        for person in user.persons:
            line = next(i for i, text in enumerate(forecasts) if text.startswith(f"{person.display_name}: "))
            assert ", model 1.0.0, mg/dL with 80% band: +15 min " in forecasts[line]
            assert forecasts[line + 1] == f"  {DISCLAIMER['en']}"
    assert forbidden_words(result.stdout) == []
    charts = result.stdout.splitlines()[-1].removeprefix("charts: ").split(", ")
    assert len(charts) == 2 * (alice_persons + bob_persons)
    assert all(Path(chart).read_bytes()[:5] in {b"<?xml", b"\x89PNG\r"} for chart in charts)


def test_policies_check_passes_on_the_migrated_database(database_url: str) -> None:
    result = glucokit("policies", "check", "--database-url", database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    cells = len(list(policies.load().cells()))
    assert re.fullmatch(
        rf"{cells} cells and \d+ statements without WHERE measured; 0 problem\(s\)", result.stdout.splitlines()[-1]
    )


def test_policies_check_fails_on_a_loosened_policy(new_database: Callable[[], str]) -> None:
    url = new_database()
    assert glucokit("db", "migrate", "--database-url", url).returncode == 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""alter policy "Persons are visible to their owner" on public.person using (true)""")
    result = glucokit("policies", "check", "--database-url", url)
    assert result.returncode == 1
    assert "problem: public.person: other_user select is allowed, the matrix says filtered" in result.stdout
