"""glucokit.tooling.simulate: simglucose runs as FHIR bundles, reproducible, and the checked-in fixtures.

Simulations here are hours, not days: three short runs share one module fixture
and run side by side. The first one is also the start of the checked-in fixture
adolescent-001 (same seed), so it must match it.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from fhir.resources.bundle import Bundle as BundleR5
from fhir.resources.R4B.bundle import Bundle as BundleR4B

from glucokit.errors import GlucokitError
from glucokit.fhir.resources import instant, observation
from glucokit.tooling.simulate import (
    CGM_DEVICE,
    DEFAULT_START,
    PATIENT_ORDER,
    PUMP_DEVICE,
    SOURCE_SYSTEM,
    PatientSeeds,
    SimulatedPatient,
    Trace,
    bundle,
    drop_reason,
    patient_seeds,
    simulate,
    write_bundles,
)
from glucokit.units import CARBOHYDRATE_CODE, CGM_CODE, INSULIN_CODE, KINDS, LOINC, SNOMED

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "simulated"
FIXTURE_SEED = 20261122
START = DEFAULT_START
DAYS = 1 / 3  # to 08:00: with the fixture's seed, adolescent#001 has breakfast at 07:30
STEP = timedelta(minutes=5)
KIND_OF = {
    "cgm": KINDS[(LOINC, CGM_CODE)],
    "carbs": KINDS[(LOINC, CARBOHYDRATE_CODE)],
    "insulin": KINDS[(SNOMED, INSULIN_CODE)],
}
DEVICE_OF = {"cgm": CGM_DEVICE, "carbs": None, "insulin": PUMP_DEVICE}


@pytest.fixture(scope="module")
def runs() -> dict[str, list[SimulatedPatient]]:
    seeds = {"a": FIXTURE_SEED, "a again": FIXTURE_SEED, "b": FIXTURE_SEED + 1}
    with ThreadPoolExecutor(len(seeds)) as pool:
        futures = {key: pool.submit(simulate, 1, DAYS, seed=seed, start=START) for key, seed in seeds.items()}
        return {key: future.result() for key, future in futures.items()}


def _bundle(result: SimulatedPatient) -> dict[str, Any]:
    assert result.dropped is None, result.dropped
    assert result.bundle is not None
    return result.bundle


def _short(entry: dict[str, Any]) -> str:
    return str(entry["resource"]["identifier"][0]["value"].split("/")[2])


def _by_kind(bundle: dict[str, Any], short: str) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in bundle["entry"] if _short(entry) == short]


def _value(resource: dict[str, Any]) -> Decimal:
    return Decimal(str(resource["valueQuantity"]["value"]))


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_same_seed_gives_identical_bundles_and_bytes(runs: dict[str, list[SimulatedPatient]], tmp_path: Path) -> None:
    assert runs["a"] == runs["a again"]
    for compress in (True, False):
        first = write_bundles(runs["a"], tmp_path / f"first-{compress}", compress=compress)
        second = write_bundles(runs["a again"], tmp_path / f"second-{compress}", compress=compress)
        assert [path.name for path in first] == [f"adolescent-001.json{'.gz' if compress else ''}"]
        assert first[0].read_bytes() == second[0].read_bytes()
        data = gzip.decompress(first[0].read_bytes()) if compress else first[0].read_bytes()
        assert orjson.loads(data) == _bundle(runs["a"][0])


def test_another_seed_gives_other_meals_and_noise(runs: dict[str, list[SimulatedPatient]]) -> None:
    a, b = _bundle(runs["a"][0]), _bundle(runs["b"][0])
    assert [_value(r) for r in _by_kind(a, "cgm")] != [_value(r) for r in _by_kind(b, "cgm")]
    assert a["id"] != b["id"]
    assert runs["a"][0].seeds != runs["b"][0].seeds


@pytest.mark.parametrize("model", [BundleR4B, BundleR5], ids=["R4B", "R5"])
def test_bundles_validate(runs: dict[str, list[SimulatedPatient]], model: type[BundleR4B] | type[BundleR5]) -> None:
    for results in runs.values():
        parsed = model.model_validate(_bundle(results[0]))
        assert parsed.type == "collection"


def test_bundle_shape_counts_and_identifiers(runs: dict[str, list[SimulatedPatient]]) -> None:
    result = runs["a"][0]
    assert (result.name, result.start, result.end) == (PATIENT_ORDER[0], START, START + timedelta(days=DAYS))
    bundle = _bundle(result)
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "collection"
    assert bundle["timestamp"] == "2026-10-01T08:00:00Z"
    assert UUID(bundle["id"]).version == 5
    counts = Counter(_short(entry) for entry in bundle["entry"])
    # 8 h of 5-minute steps: 97 readings (both ends), 96 steps of basal, breakfast.
    assert counts["cgm"] == 97
    assert counts["insulin"] == 96
    assert counts["carbs"] == 1
    assert set(counts) == {"cgm", "carbs", "insulin"}
    full_urls = [entry["fullUrl"] for entry in bundle["entry"]]
    assert len(set(full_urls)) == len(full_urls)
    times = [_moment(entry["resource"]["effectiveDateTime"]) for entry in bundle["entry"]]
    assert times == sorted(times)
    for entry in bundle["entry"]:
        resource, short = entry["resource"], _short(entry)
        assert "subject" not in resource
        source_id = f"adolescent#001/seed-{FIXTURE_SEED}/{short}/{resource['effectiveDateTime']}"
        assert resource["identifier"] == [{"system": SOURCE_SYSTEM, "value": source_id}]
        assert resource == _rebuilt(resource, short, "adolescent#001")
        assert entry["fullUrl"].startswith("urn:uuid:")
        assert UUID(entry["fullUrl"].removeprefix("urn:uuid:")).version == 5


def _rebuilt(resource: dict[str, Any], short: str, patient: str) -> dict[str, Any]:
    """Exactly what glucokit.fhir.resources.observation writes for this entry's kind, value and time."""
    moment = _moment(resource["effectiveDateTime"])
    return observation(
        KIND_OF[short],
        _value(resource),
        moment,
        source_system=SOURCE_SYSTEM,
        source_id=f"{patient}/seed-{FIXTURE_SEED}/{short}/{instant(moment)}",
        device=DEVICE_OF[short],
    )


def test_values_times_and_units(runs: dict[str, list[SimulatedPatient]]) -> None:
    bundle = _bundle(runs["a"][0])
    cgm = _by_kind(bundle, "cgm")
    assert [_moment(r["effectiveDateTime"]) for r in cgm] == [START + i * STEP for i in range(97)]
    for resource in cgm:
        value = resource["valueQuantity"]["value"]
        assert isinstance(value, int)
        assert 40 <= value <= 400
        assert resource["valueQuantity"]["unit"] == "mg/dL"
    for resource in _by_kind(bundle, "carbs"):
        assert resource["valueQuantity"]["unit"] == "g"
        assert _value(resource) > 0
        assert _value(resource) == _value(resource).quantize(Decimal("0.1"))
    for resource in _by_kind(bundle, "insulin"):
        assert resource["valueQuantity"]["unit"] == "[iU]"
        assert _value(resource) > 0
        assert _value(resource) == _value(resource).quantize(Decimal("0.001"))
        assert (_moment(resource["effectiveDateTime"]) - START) % STEP == timedelta(0)


def _csv_row(name: str, file: str) -> dict[str, str]:
    # Found, not imported: importing simglucose needs the worker's setup.
    spec = importlib.util.find_spec("simglucose")
    assert spec is not None
    assert spec.origin is not None
    with (Path(spec.origin).parent / "params" / file).open() as handle:
        return next(row for row in csv.DictReader(handle) if row["Name"] == name)


def test_insulin_and_carbs_are_amounts_per_step(runs: dict[str, list[SimulatedPatient]]) -> None:
    """simglucose reports U/min and g/min; the bundle holds units and grams per 5-minute step."""
    bundle = _bundle(runs["a"][0])
    patient, quest = _csv_row("adolescent#001", "vpatient_params.csv"), _csv_row("adolescent#001", "Quest.csv")
    basal_per_step = Decimal(patient["u2ss"]) * Decimal(patient["BW"]) / 6000 * 5
    insulin = {_moment(r["effectiveDateTime"]): _value(r) for r in _by_kind(bundle, "insulin")}
    basal = Counter(insulin.values()).most_common(1)[0][0]
    assert abs(basal - basal_per_step) < Decimal("0.001")  # the pump rounds the rate a little
    for meal in _by_kind(bundle, "carbs"):
        # The bolus comes in the step after the one the meal was announced in: carbs / CR, plus correction.
        bolus = insulin[_moment(meal["effectiveDateTime"]) + STEP] - basal
        assert bolus >= _value(meal) / Decimal(quest["CR"]) - Decimal("0.01")
        assert bolus < _value(meal) / Decimal(quest["CR"]) + 5


def _trace(bg: list[float], cgm: list[float], carbs: list[float], insulin: list[float]) -> Trace:
    times = tuple(START + i * STEP for i in range(len(bg)))
    return Trace("child#001", times, tuple(bg), tuple(cgm), tuple(carbs), tuple(insulin))


def test_bundle_of_a_synthetic_trace_rounds_clamps_and_joins_meals() -> None:
    trace = _trace(
        bg=[100.0] * 6,
        cgm=[39.0, 120.5, 121.5, 140.49, 612.0, 400.4],
        # One meal of 10 + 2.04 g over two rows, a pause, one of 5 g over the last step.
        carbs=[10.0, 2.04, 0.0, 0.0, 5.0],
        insulin=[0.0696, 0.0, 0.00049, 4.4864, 0.0696],
    )
    values = {
        short: [(r["effectiveDateTime"], r["valueQuantity"]["value"]) for r in _by_kind(bundle(trace, 1), short)]
        for short in ("cgm", "carbs", "insulin")
    }
    stamps = [instant(moment) for moment in trace.times]
    assert values["cgm"] == list(zip(stamps, [40, 120, 122, 140, 400, 400], strict=True))
    assert values["carbs"] == [(stamps[0], 12), (stamps[4], 5)]
    assert values["insulin"] == [(stamps[0], 0.07), (stamps[3], 4.486), (stamps[4], 0.07)]


def test_drop_rule() -> None:
    times = [START + i * STEP for i in range(4)]
    assert drop_reason(times, [120.0, 60.0, 10.0, 300.0]) is None
    reason = drop_reason(times, [120.0, 60.0, 9.97, 300.0])
    assert reason == "blood glucose 9.97 mg/dL is below 10 mg/dL at 2026-10-01T00:10:00Z"
    assert drop_reason(times, [120.0, float("nan"), 50.0, 300.0]) == (
        "blood glucose is not a number at 2026-10-01T00:05:00Z"
    )


def test_dropped_patients_are_reported_and_not_written(tmp_path: Path) -> None:
    kept = _trace([100.0, 101.0], [100.0, 101.0], [0.0], [0.07])
    seeds = PatientSeeds(1, 2)
    results = [
        SimulatedPatient("adult#001", seeds, START, START + STEP, bundle=None, dropped="blood glucose 3.0 mg/dL ..."),
        SimulatedPatient(kept.name, seeds, START, START + STEP, bundle=bundle(kept, 1)),
    ]
    written = write_bundles(results, tmp_path, compress=False)
    assert written == [tmp_path / "child-001.json"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["child-001.json"]


def test_patient_order_and_seeds() -> None:
    assert PATIENT_ORDER[:4] == ("adolescent#001", "adult#001", "child#001", "adolescent#002")
    everyone = [f"{group}#{n:03d}" for group in ("adolescent", "adult", "child") for n in range(1, 11)]
    assert sorted(PATIENT_ORDER) == everyone
    assert patient_seeds(5, 0) == patient_seeds(5, 0)
    assert len({patient_seeds(5, i) for i in range(30)} | {patient_seeds(6, 0)}) == 31
    assert all(0 <= s < 2**32 for i in range(30) for s in (patient_seeds(5, i).scenario, patient_seeds(5, i).sensor))


@pytest.mark.parametrize(
    ("patients", "days", "start", "message"),
    [
        (0, 1.0, DEFAULT_START, "patients must be a whole number from 1 to 30, not 0"),
        (31, 1.0, DEFAULT_START, "patients must be a whole number from 1 to 30, not 31"),
        (True, 1.0, DEFAULT_START, "patients must be a whole number from 1 to 30, not True"),
        (2.0, 1.0, DEFAULT_START, "patients must be a whole number from 1 to 30, not 2.0"),
        (1, 0, DEFAULT_START, "days must be a number greater than 0, not 0"),
        (1, -1.5, DEFAULT_START, "days must be a number greater than 0, not -1.5"),
        (1, float("nan"), DEFAULT_START, "days must be a number greater than 0, not nan"),
        (1, float("inf"), DEFAULT_START, "days must be a number greater than 0, not inf"),
        (1, 1.0, datetime(2026, 10, 1), "start needs a time zone (simulated times are written in UTC)"),
    ],
)
def test_argument_errors(patients: Any, days: Any, start: datetime, message: str) -> None:
    with pytest.raises(GlucokitError) as raised:
        simulate(patients, days, seed=1, start=start)
    assert str(raised.value) == message


def test_simulation_is_quiet() -> None:
    """simglucose and gym print, warn and log; none of it reaches the terminal."""
    code = "from glucokit.tooling.simulate import simulate; simulate(1, 0.01, seed=1)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_default_start_is_utc() -> None:
    assert datetime(2026, 10, 1, tzinfo=UTC) == DEFAULT_START
    assert DEFAULT_START.utcoffset() == timedelta(0)


# ---- the checked-in fixtures -------------------------------------------------


def _readme_rows() -> dict[str, dict[str, int | str]]:
    """The README's table: file -> patient and counts."""
    rows: dict[str, dict[str, int | str]] = {}
    for line in (FIXTURES / "README.md").read_text().splitlines():
        match = re.fullmatch(r"\| (\S+\.json\.gz) \| (\S+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|", line)
        if match:
            file, patient, cgm, carbs, insulin, entries = match.groups()
            rows[file] = {"patient": patient, "cgm": int(cgm), "carbs": int(carbs), "insulin": int(insulin)}
            rows[file]["entries"] = int(entries)
    return rows


def _fixtures() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(FIXTURES.glob("*.json.gz")):
        yield path, orjson.loads(gzip.decompress(path.read_bytes()))


@pytest.fixture(scope="module")
def fixtures() -> dict[str, dict[str, Any]]:
    return {path.name: data for path, data in _fixtures()}


def test_fixture_files_match_the_readme(fixtures: dict[str, dict[str, Any]]) -> None:
    rows = _readme_rows()
    assert len(rows) >= 3
    assert sorted(rows) == sorted(fixtures)
    assert sum(path.stat().st_size for path in FIXTURES.glob("*.json.gz")) < 3_000_000
    readme = (FIXTURES / "README.md").read_text()
    assert "glucokit simulate --patients 4 --days 14 --seed 20261122 --out data/simulated" in readme
    for file, data in fixtures.items():
        counts = Counter(_short(entry) for entry in data["entry"])
        row = rows[file]
        assert file == f"{str(row['patient']).replace('#', '-')}.json.gz"
        assert (counts["cgm"], counts["carbs"], counts["insulin"]) == (row["cgm"], row["carbs"], row["insulin"])
        assert len(data["entry"]) == row["entries"]
        assert data["timestamp"] == "2026-10-15T00:00:00Z"
        assert data["type"] == "collection"


def test_every_fixture_entry_is_a_glucokit_observation(fixtures: dict[str, dict[str, Any]]) -> None:
    """Each entry rebuilt with glucokit.fhir.resources.observation gives the same resource (cheaper than
    FHIR-validating 32k)."""
    for file, data in fixtures.items():
        patient = _readme_rows()[file]["patient"]
        for entry in data["entry"]:
            resource, short = entry["resource"], _short(entry)
            assert resource == _rebuilt(resource, short, str(patient))
            if short == "cgm":
                assert isinstance(resource["valueQuantity"]["value"], int)
                assert 40 <= resource["valueQuantity"]["value"] <= 400


@pytest.mark.parametrize("model", [BundleR4B, BundleR5], ids=["R4B", "R5"])
def test_fixtures_validate(fixtures: dict[str, dict[str, Any]], model: type[BundleR4B] | type[BundleR5]) -> None:
    """Every fixture as FHIR, on a sample of entries (all meals, every 40th entry): a whole one takes seconds."""
    for data in fixtures.values():
        sample = [entry for i, entry in enumerate(data["entry"]) if i % 40 == 0 or _short(entry) == "carbs"]
        model.model_validate(data | {"entry": sample})


def test_regenerating_the_first_hours_gives_the_fixture(
    runs: dict[str, list[SimulatedPatient]], fixtures: dict[str, dict[str, Any]]
) -> None:
    prefix = _bundle(runs["a"][0])["entry"]
    fixture = fixtures["adolescent-001.json.gz"]["entry"]
    # The run ends at 08:00 with a reading; the fixture goes on with the insulin of the step from 08:00.
    assert fixture[: len(prefix)] == prefix
