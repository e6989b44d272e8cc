"""The Supabase platform layer, installed on a plain PostgreSQL only.

glucokit's migrations target Supabase. On any other server, ``sql/platform.sql``
first provides the roles, ``auth``, ``storage`` and ``realtime`` pieces those
migrations rely on. A Supabase project is recognised by its own administrative roles and
is never touched.
"""

from __future__ import annotations

from importlib.resources import files

import psycopg

from glucokit.db.queries import query

# Roles every Supabase project has and a plain PostgreSQL never does.
SUPABASE_ROLES = ("supabase_admin", "supabase_auth_admin", "supabase_storage_admin")


def is_supabase(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute(query("supabase_roles_present"), {"roles": list(SUPABASE_ROLES)}).fetchone()
    return bool(row and row[0])


def install(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Apply the platform layer in one transaction (idempotent)."""
    sql = files("glucokit.tooling").joinpath("sql/platform.sql").read_text()
    with conn.transaction():
        conn.execute(sql.encode())
