"""Where the project's files and local state live.

The kit runs from a checkout: migrations under ``supabase/``, the Prisma schema
under ``prisma/`` and the pinned npm tools under ``node_modules/``. Local state
(the embedded database, the Supabase CLI's home) goes to ``.glucokit/``, which
git ignores.
"""

import os
from pathlib import Path

PROJECT_DIR = Path(os.environ.get("GLUCOKIT_PROJECT_DIR") or Path(__file__).resolve().parents[2])
STATE_DIR = Path(os.environ.get("GLUCOKIT_STATE_DIR") or PROJECT_DIR / ".glucokit")
SUPABASE_DIR = PROJECT_DIR / "supabase"
MIGRATIONS_DIR = SUPABASE_DIR / "migrations"
PRISMA_SCHEMA = PROJECT_DIR / "prisma" / "schema.prisma"
NODE_BIN = PROJECT_DIR / "node_modules" / ".bin"
SIMULATED_DIR = PROJECT_DIR / "data" / "simulated"
# The local model store: the bytes of the `models` bucket when no Supabase Storage is used.
MODEL_STORE_DIR = Path(os.environ.get("GLUCOKIT_MODEL_DIR") or STATE_DIR / "storage")
# Where `make demo` writes each demo person's chart.
DEMO_CHARTS_DIR = STATE_DIR / "charts"
