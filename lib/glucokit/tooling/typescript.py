"""The project's ``Database`` type for supabase-js, written by ``supabase gen types typescript``.

The pinned Supabase CLI reads the migrated database's catalog for the schemas
the Data API exposes (``[api] schemas`` in supabase/config.toml), so the type
names exactly what an app can reach. ``types/database.ts`` is its committed
output, regenerated with ``glucokit types --write`` after a migration.
"""

from __future__ import annotations

from glucokit.errors import GlucokitError
from glucokit.project import PROJECT_DIR
from glucokit.tooling import supabase_cli
from glucokit.tooling.policies import exposed_schemas

TYPES_FILE = PROJECT_DIR / "types" / "database.ts"


def generate(url: str) -> str:
    """The ``Database`` type of the database at ``url``, as the CLI writes it."""
    result = supabase_cli.run(["gen", "types", "--lang", "typescript", "--schema", ",".join(exposed_schemas())], url)
    if result.returncode != 0 or "export type Database" not in result.stdout:
        raise GlucokitError(f"supabase gen types failed: {supabase_cli.error_summary(result.output)}")
    return result.stdout


def is_current(url: str) -> bool:
    """Whether the committed file is what the database at ``url`` generates."""
    return TYPES_FILE.exists() and TYPES_FILE.read_text() == generate(url)
