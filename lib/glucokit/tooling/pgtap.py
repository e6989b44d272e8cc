"""Running the pgTAP tests under ``supabase/tests/`` with pg_prove, as `supabase test db` does.

`supabase test db` needs Docker; glucokit runs the same files with ``pg_prove``
against any database URL. ``tests/install-pgtap`` provides pgTAP and pg_prove
from Debian's packages under ``.glucokit/pgtap``; a ``pg_prove`` on PATH is used
otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from glucokit.errors import GlucokitError
from glucokit.project import STATE_DIR, SUPABASE_DIR

_LOCAL = STATE_DIR / "pgtap" / "root" / "usr"


def _pg_prove() -> tuple[str, dict[str, str]]:
    local = _LOCAL / "bin" / "pg_prove"
    if local.exists():
        perl_lib = os.pathsep.join(filter(None, [str(_LOCAL / "share" / "perl5"), os.environ.get("PERL5LIB")]))
        return str(local), {"PERL5LIB": perl_lib}
    found = shutil.which("pg_prove")
    if found is None:
        raise GlucokitError("pg_prove is not installed: run tests/install-pgtap (or `make test`)")
    return found, {}


def prove(url: str, tests_dir: Path = SUPABASE_DIR / "tests") -> int:
    """Run every ``*.sql`` file under ``tests_dir``; pg_prove's exit status."""
    pg_prove, env = _pg_prove()
    params = conninfo_to_dict(url)
    command = [pg_prove, "--ext", ".sql", "--recurse"]
    for flag, key in (("--host", "host"), ("--port", "port"), ("--username", "user"), ("--dbname", "dbname")):
        if params.get(key):
            command += [flag, str(params[key])]
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    return subprocess.run([*command, str(tests_dir)], env={**os.environ, **env}, check=False).returncode
