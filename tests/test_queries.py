"""The named queries (glucokit.db.queries): each one is run by the code, each name the code runs exists, and each
lives in the sql/ folder of a package that may run it. A static look over lib/glucokit (code names a query in a
string literal); no database."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Final

import pytest

import glucokit
from glucokit.db import queries
from glucokit.db.queries import catalog, query
from glucokit.project import PROJECT_DIR

LIB: Final = Path(glucokit.__file__).parent
CALL: Final = re.compile(r'\bquery\("([a-z_]+)"\)')
# A name built at run time, as in query(f"experiment_{action}"): the prefix before the first placeholder.
BUILT: Final = re.compile(r'\bquery\(f"([a-z_]*)\{')


def _contracts() -> list[dict[str, Any]]:
    contracts: list[dict[str, Any]] = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["tool"][
        "importlinter"
    ]["contracts"]
    return contracts


def layers() -> dict[str, int]:
    """Each package's (or top-level module's) layer, lowest 0, from the import rule (docs/architecture.md)."""
    contract = next(contract for contract in _contracts() if contract["type"] == "layers")
    return {
        name.strip("() "): rank
        for rank, layer in enumerate(reversed(contract["layers"]))
        for name in re.split(r"[|:]", layer)
    }


def may_run(package: str, owner: str) -> bool:
    """Whether modules of ``package`` may run the queries kept in ``owner``'s sql/ folder: its own, and those of a
    package it may import from a lower layer (never another package of its own layer)."""
    if package == owner:
        return True
    for contract in _contracts():
        if (
            contract["type"] == "forbidden"
            and f"glucokit.{package}" in contract["source_modules"]
            and f"glucokit.{owner}" in contract["forbidden_modules"]
        ):
            return False
    layer = layers()
    # The tooling sits outside the layers: only the forbidden contracts rule it.
    return package not in layer or owner not in layer or layer[package] > layer[owner]


def run_by() -> dict[str, set[str]]:
    """Each query name the code of lib/glucokit runs, with the packages whose modules run it."""
    runners: dict[str, set[str]] = {}
    for module in sorted(LIB.rglob("*.py")):
        text = module.read_text()
        parts = module.relative_to(LIB).parts
        package = parts[0] if len(parts) > 1 else module.stem
        names = set(CALL.findall(text))
        for prefix in BUILT.findall(text):
            # The module spells out the rest of each name it builds ("start", "stop").
            names |= {name for name in catalog() if name.startswith(prefix) and f'"{name[len(prefix) :]}"' in text}
        for name in names:
            runners.setdefault(name, set()).add(package)
    return runners


def test_every_query_the_code_names_exists() -> None:
    assert sorted(set(run_by()) - set(catalog())) == []
    for module in LIB.rglob("*.py"):
        for prefix in BUILT.findall(module.read_text()):
            assert any(name.startswith(prefix) for name in catalog()), f"{module}: no query named {prefix}..."


def test_every_query_is_run_by_the_code() -> None:
    assert sorted(set(catalog()) - set(run_by())) == []


def test_each_query_is_kept_by_a_package_that_may_run_it() -> None:
    misplaced = {
        name: (catalog()[name].file, sorted(packages))
        for name, packages in run_by().items()
        if name in catalog() and not all(may_run(package, catalog()[name].file.split("/")[0]) for package in packages)
    }
    assert misplaced == {}


def test_a_name_defined_twice_is_refused_with_both_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for where in ("api/sql/reads.sql", "fhir/sql/ingest.sql"):
        (tmp_path / where).parent.mkdir(parents=True)
        (tmp_path / where).write_text("-- name: person_name\n-- A person's name.\nselect name from person;\n")
    monkeypatch.setattr(queries, "files", lambda _package: tmp_path)
    with pytest.raises(RuntimeError, match=r"'person_name' is defined twice: in api/sql/reads\.sql and in fhir/sql/"):
        queries.catalog.__wrapped__()


def test_only_files_with_named_queries_are_read_and_each_query_is_its_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tooling" / "sql").mkdir(parents=True)
    (tmp_path / "tooling" / "sql" / "platform.sql").write_text("-- A script run whole.\ncreate schema auth;\n")
    (tmp_path / "tooling" / "sql" / "migrate.sql").write_text(
        "-- Migrating.\n\n-- name: one\n-- One.\nselect 1;\n\n-- name: two\n-- Two.\nselect 2;\n"
    )
    monkeypatch.setattr(queries, "files", lambda _package: tmp_path)
    found = queries.catalog.__wrapped__()
    assert {name: (named.file, named.sql) for name, named in found.items()} == {
        "one": ("tooling/sql/migrate.sql", b"-- One.\nselect 1;"),
        "two": ("tooling/sql/migrate.sql", b"-- Two.\nselect 2;"),
    }


def test_an_unknown_name_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no query named 'no_such_query'"):
        query("no_such_query")
