"""Named SQL queries, kept in ``sql/queries.sql`` rather than scattered in Python.

Each query starts with a ``-- name: <name>`` line and a one-line description
comment, and runs until the next ``-- name:`` line.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

_HEADER = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)


@cache
def _load() -> dict[str, bytes]:
    text = files("glucokit.db").joinpath("sql/queries.sql").read_text()
    parts = _HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    named = {name: body.strip().encode() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    if len(named) != len(parts[1::2]):
        raise RuntimeError("sql/queries.sql defines a query name twice")
    return named


def query(name: str) -> bytes:
    """The SQL text of a named query (bytes: psycopg executes it as is)."""
    try:
        return _load()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/queries.sql") from None
