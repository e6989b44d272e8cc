"""Supabase's database linter (``supabase db advisors``) over the kit's schema."""

from __future__ import annotations

import json
from dataclasses import dataclass

from glucokit.errors import GlucokitError
from glucokit.tooling import supabase_cli

LEVELS = ("INFO", "WARN", "ERROR")


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


def at_or_above(found: list[Lint], level: str) -> list[Lint]:
    floor = LEVELS.index(level)
    return [lint for lint in found if LEVELS.index(lint.level) >= floor]
