"""The Prisma schema mirrors the migrated database, checked by Prisma's own schema engine."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from glucokit.project import NODE_BIN, PRISMA_SCHEMA, PROJECT_DIR
from glucokit.tooling import migrate, prisma_check
from glucokit.tooling.policies import ProbeWorld

pytestmark = pytest.mark.full_schema


def test_prisma_schema_matches_the_migrated_database(database_url: str) -> None:
    report = prisma_check.check(database_url)
    assert report.engine_diff == ""
    assert report.problems == []


def test_a_field_missing_from_the_database_is_drift(database_url: str, tmp_path: Path) -> None:
    drifted = tmp_path / "schema.prisma"
    drifted.write_text(
        PRISMA_SCHEMA.read_text().replace('@map("time_zone")\n', '@map("time_zone")\n  nickname String?\n', 1)
    )
    report = prisma_check.check(database_url, drifted)
    assert 'ADD COLUMN     "nickname" TEXT' in report.engine_diff
    assert not report.in_sync


def test_an_index_missing_from_the_prisma_schema_is_drift(database_url: str, tmp_path: Path) -> None:
    drifted = tmp_path / "schema.prisma"
    drifted.write_text(PRISMA_SCHEMA.read_text().replace('  @@index([ownerId], map: "person_owner_id_idx")\n', ""))
    report = prisma_check.check(database_url, drifted)
    assert 'DROP INDEX "person_owner_id_idx"' in report.engine_diff


def test_what_the_engine_cannot_see_is_checked_in_sql(new_database: Callable[[], str], tmp_path: Path) -> None:
    url = new_database()
    migrate.migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("alter table public.day_pattern disable row level security")
        conn.execute("alter table public.person disable row level security")
    schema = tmp_path / "schema.prisma"
    schema.write_text(PRISMA_SCHEMA.read_text().replace('Unsupported("vector(48)")', 'Unsupported("vector(16)")'))
    report = prisma_check.check(url, schema)
    assert report.engine_diff == ""
    assert sorted(report.problems) == [
        "public.day_pattern has row-level security disabled",
        "public.day_pattern.embedding is vector(48) in the database, vector(16) in schema.prisma",
        "public.person has row-level security disabled",
    ]


def test_vector_fields_are_read_with_their_table_and_column() -> None:
    schema = """
model Pattern {
  id  String @id
  emb Unsupported("vector(384)") @map("embedding")

  @@map("day_pattern")
  @@schema("public")
}

model Plain {
  v Unsupported("vector(3)")?
}
"""
    assert prisma_check.vector_columns(schema) == [
        prisma_check.VectorColumn("public", "day_pattern", "embedding", 384),
        prisma_check.VectorColumn("public", "Plain", "v", 3),
    ]


def test_prisma_client_reads_under_row_level_security(database_url: str, world: ProbeWorld) -> None:
    """The README's recipe: Prisma Client in a transaction that first becomes the signed-in user."""
    environment = os.environ | {"PRISMA_SCHEMA_ENGINE_BINARY": "/dev/null"}
    generated = subprocess.run(
        [str(NODE_BIN / "prisma"), "generate", "--schema", str(PRISMA_SCHEMA)],
        cwd=PROJECT_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    read = subprocess.run(
        [str(NODE_BIN / "tsx"), "prisma/tools/rls-read.mts", "--url", database_url, "--user", str(world.a.user)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == {
        "persons": [str(world.a.person)],
        "predictions": 3,
        "latest": [
            {"personId": str(world.a.person), "horizonMinutes": 5, "disclaimerVersion": "v1", "sources": []},
            {
                "personId": str(world.a.person),
                "horizonMinutes": 30,
                "disclaimerVersion": "v1",
                "sources": [str(world.a.observation)],
            },
            {
                "personId": str(world.a.person),
                "horizonMinutes": 60,
                "disclaimerVersion": "v1",
                "sources": [str(world.a.observation)],
            },
        ],
        "editForecasts": "refused",
    }
