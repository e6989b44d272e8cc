"""Training on recordings as real sensors make them: gaps of days, clocks that drift, sensor limits, compression
lows, warm-up, duplicated timestamps; the split by usable windows, the refusal's cause, the robust champion, and
the count of what was left out (training, ``from_bundle``, ``glucokit evaluate``)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from glucokit.fhir.bundle import from_bundle
from glucokit.forecast import InsufficientData, PersonData, TrainingSettings, evaluate_people, train_person
from glucokit.forecast.pipeline import MIN_WINDOWS, gain_z
from glucokit.forecast.series import prepare, resample
from glucokit.forecast.windows import HORIZONS, INPUT_STEPS, SPLIT_FRACTIONS, needed_windows, split, windows
from test_forecast_pipeline import synthetic_person

START = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
FAST = TrainingSettings(families=("persistence", "ar2", "ridge"))


def wave(count: int, *, every: timedelta = STEP, skip: range = range(0)) -> list[tuple[datetime, float]]:
    """A slow glucose wave read every ``every``, without the readings whose index is in ``skip``."""
    return [
        (START + i * every, 140 + 40 * math.sin(i * every / timedelta(hours=3))) for i in range(count) if i not in skip
    ]


def test_a_gap_of_days_shortens_the_splits_instead_of_emptying_one() -> None:
    # 14 days with days 8-11 missing: the old wall-clock split put all of validation in the gap.
    person = synthetic_person(14)
    gap = (START + timedelta(days=7.5), START + timedelta(days=11))
    kept = [(m, v) for m, v in person.glucose if not gap[0] <= m < gap[1]]
    outcome = train_person(kept, person.carbs, person.insulin, settings=FAST)
    assert all(outcome.windows[name] >= MIN_WINDOWS[name] for name in MIN_WINDOWS)
    usable = len(windows(prepare(kept), 0, len(prepare(kept))))
    assert outcome.windows["validation"] == pytest.approx(usable * 2 / 14, abs=25)


def test_needed_windows_are_enough_whatever_the_gaps() -> None:
    needed = needed_windows(SPLIT_FRACTIONS, (100, 30, 30))
    assert needed == 378
    spans = INPUT_STEPS + HORIZONS
    for gap_at in (0, 150, 260, 300, 330, 360):  # a 2-hour gap somewhere among the windows
        gap = range(gap_at + spans, gap_at + spans + 24)
        # Exactly the needed windows: the fewest readings that make them.
        series = next(
            found
            for count in range(needed, 2 * needed)
            if len(windows(found := resample(wave(count, skip=gap)), 0, len(found))) == needed
        )
        counts = split(series).counts()
        assert all(counts[name] >= MIN_WINDOWS[name] for name in counts), (gap_at, counts)


def test_too_few_windows_names_the_real_cause() -> None:
    # Four days of readings with a 20-minute hole every hour: no hour is whole.
    gappy = [(m, v) for i, (m, v) in enumerate(synthetic_person(4).glucose) if i % 12 not in (0, 1, 2)]
    with pytest.raises(InsufficientData) as raised:
        train_person(gappy, settings=FAST)
    reason = raised.value.reason
    assert reason.startswith("0 usable windows (2 hours of readings without a gap over 15 minutes), at least 378")
    assert reason.endswith(
        "of 864 readings, 18 (2%) lie in the first or last hour of the recording,"
        " 846 (98%) have a gap longer than 15 minutes in the hour before them"
    )


def test_days_are_never_rounded_across_the_threshold() -> None:
    with pytest.raises(InsufficientData, match=r"575 valid readings \(1\.99 days"):
        prepare(wave(575))


def test_a_drifting_clock_costs_no_windows() -> None:
    for minutes in (4, 6, 4.5, 5.5):
        readings = wave(900, every=timedelta(minutes=minutes))
        series = resample(readings)
        found = windows(series, 0, len(series))
        origins = int(series.observed[INPUT_STEPS - 1 : len(series) - HORIZONS].sum())
        assert len(found) == origins, minutes
    # A reading really missed (10 minutes between two) is still no target.
    series = resample(wave(100, skip=range(50, 51)))
    assert not series.targetable[50]
    assert series.report.drift == 0


def test_values_at_the_sensor_limits_are_inputs_never_targets() -> None:
    readings = [(m, 400.0 if 200 <= i < 210 else (40.0 if i == 300 else v)) for i, (m, v) in enumerate(wave(600))]
    series = resample(readings)
    assert series.report.censored == 11
    assert not series.targetable[200:210].any()
    assert not series.targetable[300]
    found = windows(series, 0, len(series))
    assert (found.target < 400).all()
    assert (found.inputs.glucose == 400).any()  # still read as inputs


def test_compression_lows_are_not_targets_but_real_falls_are() -> None:
    readings = wave(600)
    dip = {300: -45.0, 301: -60.0, 302: -50.0, 303: -20.0}  # a 45 mg/dL drop in 5 minutes, back in 20
    readings = [(m, v + dip.get(i, 0.0)) for i, (m, v) in enumerate(readings)]
    series = resample(readings)
    assert series.report.compression == 4
    assert not series.targetable[300:304].any()
    assert series.targetable[299]
    assert series.targetable[304]
    # A steep fall that stays down is glucose, not the sensor.
    falling = [(m, v - (50.0 if i >= 300 else 0.0)) for i, (m, v) in enumerate(wave(600))]
    assert resample(falling).report.compression == 0


def test_warm_up_after_a_long_gap_is_read_by_no_window() -> None:
    readings = wave(800, skip=range(300, 330))  # 2.5 hours without readings: a new sensor, likely
    series = resample(readings)
    assert series.report.warmup == 12  # its first hour
    found = windows(series, 0, len(series))
    restart = 330
    assert not ((found.end - INPUT_STEPS + 1 < restart + 12) & (found.end > restart)).any()
    # A one-hour signal loss is no sensor start.
    assert resample(wave(800, skip=range(300, 312))).report.warmup == 0


def test_duplicate_timestamps_keep_one_and_are_counted() -> None:
    readings = wave(20)
    doubled = [*readings, (readings[5][0], 999.0), (readings[6][0], 120.0)]
    series = resample(doubled)
    assert series.report.duplicates == 2
    assert series.glucose[5] == readings[5][1]


def test_a_noise_win_of_a_complex_candidate_gets_the_simpler_one() -> None:
    # A random walk: the latest reading is the best forecast, and ridge wins validation by noise only.
    rng = np.random.default_rng(2)
    values = 140 + np.cumsum(rng.normal(0, 2.0, 4 * 288))
    walk = [(START + i * STEP, float(np.clip(v, 60, 350))) for i, v in enumerate(values)]
    outcome = train_person(walk, settings=TrainingSettings(families=("persistence", "ridge")))
    assert np.mean(outcome.validation["ridge"].rmse) < np.mean(outcome.validation["persistence"].rmse)
    assert outcome.champion == "persistence"
    assert any(line.startswith("champion: persistence (the simplest candidate that ridge") for line in outcome.log)


def test_gain_z() -> None:
    assert gain_z(np.ones(10)) == 0.0  # fewer than two blocks: no evidence
    assert gain_z(np.ones(48)) == math.inf
    assert gain_z(np.zeros(48)) == 0.0
    alternating = np.tile(np.concatenate([np.full(12, 1.0), np.full(12, -1.0)]), 4)
    assert gain_z(alternating) == 0.0


def observation(at: str, value: Any, *, status: str = "final", comparator: str | None = None) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    if comparator:
        quantity["comparator"] = comparator
    return {
        "resource": {
            "resourceType": "Observation",
            "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": "99504-3"}]},
            "identifier": [{"system": "urn:test", "value": at + str(value)}],
            "effectiveDateTime": at,
            "valueQuantity": quantity,
        }
    }


def test_from_bundle_counts_what_it_leaves_out_and_evaluate_reports_it() -> None:
    entries = [
        observation("2026-03-01T00:00:00Z", 120),
        observation("2026-03-01T00:05:00Z", 40, comparator="<"),
        observation("2026-03-01T00:10:00", 125),
        observation("2026-03-01T00:15:00Z", 130, status="entered-in-error"),
        observation("2026-03-01T00:20:00Z", 5000),
    ]
    data = from_bundle({"resourceType": "Bundle", "type": "collection", "entry": entries})
    assert len(data.glucose) == 1
    assert data.dropped == {
        "a bound such as <40 (LOW) or >400 (HIGH), not a reading": 1,
        "a time without a time zone": 1,
        "withdrawn (entered-in-error or cancelled)": 1,
        "a value outside the plausible range": 1,
    }
    person = synthetic_person(4)
    glucose = [*person.glucose, person.glucose[10]]  # one duplicated timestamp
    summary = evaluate_people({"p": PersonData(glucose, dropped=data.dropped)}, settings=FAST)
    assert summary["persons"] == 1
    assert summary["dropped_readings"]["p"] == data.dropped | {"duplicate timestamp": 1}
