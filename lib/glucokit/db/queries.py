"""Named SQL queries, kept in ``.sql`` files next to the code that runs them rather than scattered in Python.

A subpackage keeps its queries in its ``sql/`` folder (``fhir/sql/ingest.sql``); a query that two subpackages
run lives with the lower of the two. A file there is one of named queries when it has ``-- name: <name>``
lines (the others, such as tooling's platform layer, are scripts run whole). Each query starts with its
``-- name:`` line and a one-line description comment, and runs until the next ``-- name:`` line. Callers name
a query without its file, so a name is defined once across every file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

_HEADER = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class NamedQuery:
    file: str  # where it is defined, relative to the package: "fhir/sql/ingest.sql"
    sql: bytes  # psycopg executes it as is


@cache
def catalog() -> dict[str, NamedQuery]:
    """Every named query of the package, by name."""
    found: dict[str, NamedQuery] = {}
    for package in sorted(files("glucokit").iterdir(), key=lambda entry: entry.name):
        folder = package.joinpath("sql")
        if not folder.is_dir():
            continue
        for sql_file in sorted(folder.iterdir(), key=lambda entry: entry.name):
            if not sql_file.name.endswith(".sql"):
                continue
            parts = _HEADER.split(sql_file.read_text())
            # parts = [preamble, name1, body1, name2, body2, ...]
            for name, body in zip(parts[1::2], parts[2::2], strict=True):
                where = f"{package.name}/sql/{sql_file.name}"
                if name in found:
                    raise RuntimeError(f"query {name!r} is defined twice: in {found[name].file} and in {where}")
                found[name] = NamedQuery(where, body.strip().encode())
    return found


def query(name: str) -> bytes:
    """The SQL text of a named query (bytes: psycopg executes it as is)."""
    try:
        return catalog()[name].sql
    except KeyError:
        raise KeyError(f"no query named {name!r} in glucokit's sql/*.sql files") from None
