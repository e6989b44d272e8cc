"""Supabase's database linter (``supabase db advisors``) over the kit's schema.

The schema is kept clean at every level, INFO included. The one exception is
``unused_index``: it reads the server's usage statistics, and on a fresh or a
test database every index is unused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from glucokit.errors import GlucokitError
from glucokit.tooling import supabase_cli

# Lints judged by usage statistics rather than by the schema.
USAGE_LINTS = frozenset({"unused_index"})


@dataclass(frozen=True)
class Lint:
    level: str
    name: str
    detail: str


def lints(url: str) -> list[Lint]:
    """Every lint the advisors report, INFO included."""
    result = supabase_cli.run(["db", "advisors", "--level", "info", "--output-format", "json"], url)
    if result.returncode != 0:
        raise GlucokitError(f"supabase db advisors failed: {supabase_cli.error_summary(result.output)}")
    try:
        found = json.loads(result.stdout)["results"]
    except (ValueError, KeyError) as exc:
        raise GlucokitError(f"unexpected output from supabase db advisors: {exc}") from exc
    return [Lint(level=item["level"], name=item["name"], detail=item["detail"]) for item in found]


def of_schema(found: list[Lint]) -> list[Lint]:
    """The lints about the schema itself, at any level: the ones the kit keeps at none."""
    return [lint for lint in found if lint.name not in USAGE_LINTS]
