"""`glucokit ingest`, `export` and `simulate` end to end, on the simulated fixtures."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from pathlib import Path

import orjson
from fhir.resources.R4B.bundle import Bundle

from fhir_samples import bundle, cgm
from glucokit.cli.common import Exit
from glucokit.db.sessions import Connection
from glucokit.project import PROJECT_DIR
from owners import Owner, rows
from test_cli import glucokit

FIXTURE = PROJECT_DIR / "data" / "simulated" / "child-001.json.gz"
FIXTURE_ENTRIES = len(orjson.loads(gzip.decompress(FIXTURE.read_bytes()))["entry"])
SUMMARY = re.compile(
    r"(?P<source>\S+): (?P<entries>\d+) entries for person \S+: (?P<stored>\d+) stored \((?P<new>\d+) new, "
    r"(?P<updated>\d+) updated, (?P<unchanged>\d+) unchanged\), (?P<rejected>\d+) rejected and quarantined in "
)


def summary(output: str) -> dict[str, str]:
    match = SUMMARY.match(output)
    assert match, output
    return match.groupdict()


def test_ingest_a_simulated_bundle_twice_stores_it_once(database_url: str, owner: Owner, conn: Connection) -> None:
    first = glucokit("ingest", str(FIXTURE), "--person", str(owner.person), "--database-url", database_url)
    assert first.returncode == 0, first.stderr
    assert summary(first.stdout) == {
        "source": FIXTURE.name, "entries": str(FIXTURE_ENTRIES), "stored": str(FIXTURE_ENTRIES),
        "new": str(FIXTURE_ENTRIES), "updated": "0", "unchanged": "0", "rejected": "0",
    }  # fmt: skip
    second = glucokit("ingest", str(FIXTURE), "--person", str(owner.person), "--database-url", database_url)
    assert summary(second.stdout)["unchanged"] == str(FIXTURE_ENTRIES)
    assert len(rows(conn, owner)) == FIXTURE_ENTRIES


def test_ingest_lists_rejections_and_exits_3(database_url: str, owner: Owner, tmp_path: Path) -> None:
    path = tmp_path / "mixed.json"
    path.write_bytes(orjson.dumps(bundle(cgm(0), cgm(1, 1500))))
    result = glucokit("ingest", str(path), "--person", str(owner.person), "--database-url", database_url)
    assert result.returncode == 3, result.stderr
    assert summary(result.stdout)["rejected"] == "1"
    assert result.stdout.splitlines()[1] == (
        "  entry 1: valueQuantity.value: 1500 mg/dL is outside the plausible range 10-1000 mg/dL"
    )


def test_ingest_as_another_user_is_refused(
    database_url: str, owner: Owner, make_owner: Callable[[], Owner], tmp_path: Path
) -> None:
    other = make_owner()
    path = tmp_path / "one.json"
    path.write_bytes(orjson.dumps(cgm(0)))
    result = glucokit(
        "ingest", str(path), "--person", str(owner.person), "--user", str(other.user), "--database-url", database_url
    )
    assert result.returncode == Exit.NOT_FOUND
    assert result.stderr == (
        f"glucokit: error: person {owner.person} does not exist or is not one of yours: nothing was stored\n"
    )


def test_export_writes_a_valid_bundle_of_what_was_ingested(database_url: str, owner: Owner, tmp_path: Path) -> None:
    glucokit("ingest", str(FIXTURE), "--person", str(owner.person), "--database-url", database_url)
    out = tmp_path / "export.json"
    result = glucokit("export", "--person", str(owner.person), "--out", str(out), "--database-url", database_url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"exported {FIXTURE_ENTRIES} observation(s) of person {owner.person}\n"
    exported = orjson.loads(out.read_bytes())
    Bundle.model_validate(exported)
    assert len(exported["entry"]) == FIXTURE_ENTRIES


def test_simulate_writes_reproducible_bundles(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        result = glucokit("simulate", "--patients", "1", "--days", "0.05", "--seed", "7", "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"wrote 1 bundle(s) to {out} in ")
    (made,) = first.iterdir()
    assert made.name == "adolescent-001.json.gz"
    assert made.read_bytes() == (second / made.name).read_bytes()


def test_evaluate_reports_test_metrics_per_candidate() -> None:
    result = glucokit("evaluate", str(FIXTURE))
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(result.stdout)
    assert summary["persons"] == 1
    assert {"persistence", "ar2", "champion"} <= set(summary["test"])
    champion = summary["test"]["champion"]["rmse_30"]["mean"]
    assert champion < summary["test"]["persistence"]["rmse_30"]["mean"]


def test_evaluate_exits_3_when_no_person_has_enough_data(tmp_path: Path) -> None:
    path = tmp_path / "short.json"
    path.write_bytes(orjson.dumps(bundle(*(cgm(n) for n in range(30)))))
    result = glucokit("evaluate", str(path))
    assert result.returncode == 3, result.stderr
    assert set(orjson.loads(result.stdout)["insufficient_data"]) == {"short"}
