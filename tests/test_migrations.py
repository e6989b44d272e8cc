"""Migrating through the real Supabase CLI: history, idempotence, failures, the advisors."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from glucokit.db.sessions import Connection
from glucokit.errors import GlucokitError
from glucokit.project import MIGRATIONS_DIR, PROJECT_DIR
from glucokit.tooling import advisors, migrate, platform, policies, supabase_cli
from glucokit.tooling.database import Target

pytestmark = pytest.mark.full_schema

LOCAL_VERSIONS = migrate.local_migrations()


def test_migration_files_are_named_by_timestamp() -> None:
    for path in MIGRATIONS_DIR.glob("*.sql"):
        version, _, name = path.stem.partition("_")
        assert re.fullmatch(r"[0-9]{14}", version), path.name
        assert re.fullmatch(r"[a-z0-9_]+", name), path.name


def test_every_migration_is_recorded_in_supabase_history(database_url: str) -> None:
    assert migrate.applied_migrations(database_url) == LOCAL_VERSIONS


def test_migrating_again_changes_nothing(database_url: str) -> None:
    report = migrate.migrate(database_url)
    assert report.applied == []
    assert migrate.applied_migrations(database_url) == LOCAL_VERSIONS


def test_supabase_dry_run_says_up_to_date(database_url: str) -> None:
    result = supabase_cli.run(["db", "push", "--dry-run", "--yes"], database_url)
    assert result.returncode == 0, result.output
    assert "Remote database is up to date." in result.output


def test_supabase_migration_list_shows_every_migration_applied(database_url: str) -> None:
    result = supabase_cli.run(["migration", "list"], database_url)
    assert result.returncode == 0, result.output
    rows = [line for line in result.output.splitlines() if line.count("|") == 2 and "`" in line]
    applied = {tuple(cell.strip().strip("`") for cell in row.split("|")[:2]) for row in rows}
    assert {(version, version) for version in LOCAL_VERSIONS} <= applied


def test_supabase_advisors_report_nothing_at_any_level(database_url: str) -> None:
    found = advisors.lints(database_url)
    assert advisors.of_schema(found) == []
    result = supabase_cli.run(["db", "advisors", "--fail-on", "warn"], database_url)
    assert result.returncode == 0, result.output


def test_the_data_api_exposes_no_partition_and_no_internal_schema(conn: Connection) -> None:
    assert {"partitions", "private", "pgmq"}.isdisjoint(policies.exposed_schemas())
    exposed_partitions = conn.execute(
        "select count(*) from pg_class"
        " where relispartition and relkind in ('r', 'p') and relnamespace::regnamespace::text = any(%s)",
        (policies.exposed_schemas(),),
    ).fetchone()
    assert exposed_partitions == (0,)


def test_partitions_refuse_direct_access(conn: Connection) -> None:
    found = conn.execute(
        """select c.oid::regclass::text, c.relrowsecurity,
                  exists (select from pg_policy p
                          where p.polrelid = c.oid and p.polname = 'No direct access' and not p.polpermissive),
                  has_table_privilege('authenticated', c.oid, 'select')
           from pg_class c
           where c.relispartition and c.relkind in ('r', 'p') and c.relnamespace = 'partitions'::regnamespace"""
    ).fetchall()
    assert "partitions.observation_default" in [name for name, *_ in found]
    assert [row for row in found if row[1:] != (True, True, False)] == []


def test_supabase_advisors_fail_on_a_warning(new_database: Callable[[], str]) -> None:
    url = new_database()
    migrate.migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create function public.loose() returns int language sql as $$ select 1 $$")
    result = supabase_cli.run(["db", "advisors", "--fail-on", "warn"], url)
    assert result.returncode != 0
    assert [lint.name for lint in advisors.of_schema(advisors.lints(url))] == ["function_search_path_mutable"]


def test_a_failing_migration_names_itself_and_keeps_earlier_ones(
    new_database: Callable[[], str], tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    shutil.copytree(PROJECT_DIR / "supabase", workdir / "supabase")
    (workdir / "supabase" / "migrations" / "29991231000000_broken.sql").write_text(
        "create table public.broken_example (id int);\nselect 1 / 0;\n"
    )
    url = new_database()
    with pytest.raises(GlucokitError) as raised:
        migrate.migrate(url, workdir=workdir)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("migration 29991231000000_broken.sql failed:")
    assert "division by zero" in message
    assert migrate.applied_migrations(url) == LOCAL_VERSIONS
    with psycopg.connect(url) as conn:
        assert conn.execute("select to_regclass('public.broken_example')").fetchone() == (None,)


def test_the_platform_layer_is_idempotent_and_recognises_supabase(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        platform.install(conn)
        assert not platform.is_supabase(conn)
        with conn.transaction(force_rollback=True):
            conn.execute("create role supabase_admin")
            assert platform.is_supabase(conn)


def test_reset_recreates_and_migrates(new_database: Callable[[], str]) -> None:
    url = new_database()
    migrate.migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table public.leftover (id int)")
    with pytest.raises(GlucokitError, match="without --yes"):
        migrate.reset(Target(url=url, embedded=False), confirmed=False)
    report = migrate.reset(Target(url=url, embedded=False), confirmed=True)
    assert len(report.applied) == len(LOCAL_VERSIONS)
    with psycopg.connect(url) as conn:
        assert conn.execute("select to_regclass('public.leftover')").fetchone() == (None,)
