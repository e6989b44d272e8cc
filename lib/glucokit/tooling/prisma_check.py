"""Keeps ``prisma/schema.prisma`` in sync with the database built from ``supabase/migrations/``.

Two halves:

- Prisma's own schema engine (its WebAssembly build, driven by
  ``prisma/tools/schema-diff.mjs``) diffs the live database against the Prisma
  schema: tables, columns, types, defaults, keys, indexes, relations, enums.
- SQL checks for what that engine does not compare: row-level security on every
  table of the exposed schema, and the dimensions of ``vector(n)`` columns,
  which Prisma can only declare as ``Unsupported("vector(n)")``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from glucokit.db.connection import connect
from glucokit.db.queries import query
from glucokit.errors import GlucokitError
from glucokit.project import PRISMA_SCHEMA, PROJECT_DIR
from glucokit.tooling import tools

DIFF_TOOL = PROJECT_DIR / "prisma" / "tools" / "schema-diff.mjs"
DIFF_TIMEOUT_S = 120
_DRIFT = 2


@dataclass
class PrismaCheckReport:
    engine_diff: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not self.engine_diff and not self.problems


@dataclass(frozen=True)
class VectorColumn:
    schema: str
    table: str
    column: str
    dimensions: int


def check(url: str, schema_path: Path = PRISMA_SCHEMA) -> PrismaCheckReport:
    """Compare ``schema_path`` with the database at ``url``."""
    report = PrismaCheckReport(engine_diff=_engine_diff(url, schema_path))
    with connect(url) as conn:
        for (table,) in conn.execute(query("tables_without_rls")):
            report.problems.append(f"public.{table} has row-level security disabled")
        for declared in vector_columns(schema_path.read_text()):
            row = conn.execute(
                query("column_type"),
                {"schema": declared.schema, "table": declared.table, "column": declared.column},
            ).fetchone()
            if row is None:
                actual = "missing"
            else:
                typname, typmod = str(row[0]), int(str(row[1]))
                actual = f"{typname}({typmod})" if typmod >= 0 else typname
            expected = f"vector({declared.dimensions})"
            if actual != expected:
                report.problems.append(
                    f"{declared.schema}.{declared.table}.{declared.column} is {actual} in the database, "
                    f"{expected} in {schema_path.name}"
                )
    return report


def _engine_diff(url: str, schema_path: Path) -> str:
    """The engine's SQL to bring the database to the schema; empty when in sync."""
    node = shutil.which("node")
    if node is None:
        raise GlucokitError("Node.js is needed for the Prisma check and was not found on PATH")
    completed = tools.run(
        [node, str(DIFF_TOOL), "--url", url, "--schema", str(schema_path)],
        what="Prisma's schema engine",
        timeout_s=DIFF_TIMEOUT_S,
        cwd=PROJECT_DIR,
    )
    if completed.returncode == 0:
        return ""
    if completed.returncode == _DRIFT:
        return completed.stdout.strip()
    message = completed.stderr.strip().splitlines()
    raise GlucokitError(message[-1] if message else f"schema-diff exited with {completed.returncode}")


_MODEL = re.compile(r"^model\s+(\w+)\s*\{(.*?)^\}", re.MULTILINE | re.DOTALL)
_VECTOR_FIELD = re.compile(r'^\s*(\w+)\s+Unsupported\("vector\((\d+)\)"\)\??(.*)$', re.MULTILINE)
_MAP = re.compile(r'@map\("([^"]+)"\)')
_MODEL_MAP = re.compile(r'@@map\("([^"]+)"\)')
_MODEL_SCHEMA = re.compile(r'@@schema\("([^"]+)"\)')


def vector_columns(prisma_schema: str) -> list[VectorColumn]:
    """The ``Unsupported("vector(n)")`` fields of a Prisma schema, by database table and column."""
    found = []
    for model, body in _MODEL.findall(prisma_schema):
        table = _MODEL_MAP.search(body)
        schema = _MODEL_SCHEMA.search(body)
        for name, dimensions, rest in _VECTOR_FIELD.findall(body):
            column = _MAP.search(rest)
            found.append(
                VectorColumn(
                    schema=schema.group(1) if schema else "public",
                    table=table.group(1) if table else model,
                    column=column.group(1) if column else name,
                    dimensions=int(dimensions),
                )
            )
    return found
