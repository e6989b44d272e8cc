"""glucokit.tooling.artefacts: each sensor artefact does what it says on a known trace, reproducibly.

No database: the traces are constant or linear, so every change the layer makes can be read off exactly.
"""

from __future__ import annotations

import dataclasses
import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest

from glucokit.errors import GlucokitError
from glucokit.fhir.bundle import from_bundle
from glucokit.fhir.validation import ObservationValidator, Reading
from glucokit.tooling.artefacts import (
    REALISTIC,
    Artefacts,
    Calibration,
    Compression,
    Degraded,
    Drift,
    Gaps,
    Limits,
    Noise,
    Timing,
    degrade,
    degrade_bundle,
)
from glucokit.tooling.simulate import Trace, bundle

START = datetime(2026, 10, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
FIXTURE = Path(__file__).parent.parent / "data" / "simulated" / "adult-001.json.gz"


def trace(days: float = 14, value: float = 120.0, slope: float = 0.0) -> tuple[list[datetime], list[float]]:
    """A reading every 5 minutes: ``value`` + ``slope`` mg/dL per step."""
    count = round(days * 288) + 1
    return [START + k * STEP for k in range(count)], [value + slope * k for k in range(count)]


def minutes(degraded: Degraded) -> np.ndarray:
    return np.array([(moment - START) / timedelta(minutes=1) for moment in degraded.times])


def test_no_artefacts_leave_the_trace_as_it_is() -> None:
    times, values = trace(2)
    degraded = degrade(times, values, Artefacts(), seed=1)
    assert degraded.times == tuple(times)
    assert degraded.values == tuple(values)
    assert set(degraded.limit) == {None}
    assert degraded.summary() == {
        "readings": len(times), "low": 0, "high": 0, "gaps": 0, "gap_days": 0.0,
        "calibration_jumps": 0, "compression_lows": 0, "duplicates": 0,
    }  # fmt: skip


def test_timing_reads_every_4_to_6_minutes_and_interpolates() -> None:
    times, values = trace(3, value=100.0, slope=1.0)  # 1 mg/dL per 5 minutes: 0.2 per minute
    degraded = degrade(times, values, Artefacts(timing=Timing(jitter=timedelta(0))), seed=1)
    step = np.diff(minutes(degraded))
    assert step.min() >= 4
    assert step.max() <= 6
    assert 4.9 < step.mean() < 5.1
    assert not set(minutes(degraded)) <= {5.0 * k for k in range(len(times))}  # off the 5-minute grid
    expected = np.round(100.0 + 0.2 * minutes(degraded))
    assert np.abs(np.array(degraded.values) - expected).max() <= 1


def test_timing_jitter_and_gaps_already_in_the_trace() -> None:
    times, values = trace(2)
    hole = [k for k, moment in enumerate(times) if START + timedelta(hours=10) <= moment < START + timedelta(hours=12)]
    kept = [k for k in range(len(times)) if k not in hole]
    degraded = degrade([times[k] for k in kept], [values[k] for k in kept], Artefacts(timing=Timing()), seed=3)
    at = minutes(degraded)
    assert not ((at > 10 * 60 + 5) & (at < 12 * 60 - 5)).any(), "timing invented readings inside the trace's gap"
    step = np.diff(at)
    # 4-6 minutes, ±30 s at each end
    assert step[step < 60].min() >= 3
    assert step[step < 60].max() <= 7


def test_noise_is_autocorrelated_with_the_stated_sd() -> None:
    times, values = trace(14, value=200.0)
    noise = Noise(sd=5.0, memory=timedelta(minutes=20))
    error = np.array(degrade(times, values, Artefacts(noise=noise), seed=7).values) - 200.0
    assert 4.5 < error.std() < 5.5
    assert abs(error.mean()) < 1.5
    lag_1 = np.corrcoef(error[:-1], error[1:])[0, 1]
    assert abs(lag_1 - np.exp(-5 / 20)) < 0.05  # AR(1): exp(-dt / memory) per 5-minute step


def test_drift_is_linear_within_a_session_and_restarts_with_the_next() -> None:
    times, values = trace(14, value=200.0)
    drift = Drift(session=timedelta(days=10), offset_sd=10.0, slope_sd=5.0)
    degraded = degrade(times, values, Artefacts(drift=drift), seed=11)
    bias = np.array(degraded.values) - 200.0
    days = minutes(degraded) / 1440
    for session in (days < 10, days >= 10):
        slope, offset = np.polyfit(days[session] % 10, bias[session], 1)
        residual = bias[session] - (offset + slope * (days[session] % 10))
        assert np.abs(residual).max() <= 0.6  # only rounding to whole mg/dL (and the fit)
    first = np.polyfit(days[days < 10], bias[days < 10], 1)
    second = np.polyfit(days[days >= 10] - 10, bias[days >= 10], 1)
    assert not np.allclose(first, second, atol=0.5), "a new session draws a new offset and slope"


def test_calibration_jumps_are_steps_that_persist() -> None:
    times, values = trace(14)
    degraded = degrade(times, values, Artefacts(calibration=Calibration(count=2)), seed=5)
    assert len(degraded.jumps) == 2
    (first, step_1), (second, step_2) = degraded.jumps
    assert all(10 <= abs(step) <= 25 for step in (step_1, step_2))
    for moment, value in zip(degraded.times, degraded.values, strict=True):
        expected = 120 + (step_1 if moment >= first else 0) + (step_2 if moment >= second else 0)
        assert value == round(expected)


def test_compression_lows_fall_fast_at_night_and_recover() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    times, values = trace(14, value=150.0)
    compression = Compression(per_night=1.0)
    degraded = degrade(times, values, Artefacts(compression=compression), seed=2, tz=berlin)
    # Every night, if the dip fits inside the trace: 14 days from 02:00 Berlin time touch 15 local nights.
    assert 13 <= len(degraded.compression) <= 15
    value = np.array(degraded.values)
    inside = np.zeros(len(value), dtype=bool)
    for start, end in degraded.compression:
        assert 0 <= start.astimezone(berlin).hour < 6
        assert timedelta(minutes=30) <= end - start <= timedelta(minutes=50)
        dip = np.array([start <= moment <= end for moment in degraded.times])
        inside |= dip
        assert 40 <= value[dip].min() <= 65
        fall = np.diff(value[dip]).min() / 5  # mg/dL per minute
        assert fall < -3, "a compression low falls faster than blood glucose does"
    assert set(value[~inside]) == {150.0}


def test_limits_clip_at_40_and_400_and_flag_low_and_high() -> None:
    times, values = trace(1, value=20.0, slope=2.0)  # 20 to 596 mg/dL
    degraded = degrade(times, values, Artefacts(limits=Limits()), seed=1)
    for original, value, limit in zip(values, degraded.values, degraded.limit, strict=True):
        if original < 40:
            assert (value, limit) == (40, "low")
        elif original > 400:
            assert (value, limit) == (400, "high")
        else:
            assert (value, limit) == (original, None)
    assert degraded.summary()["low"] == 10
    assert degraded.summary()["high"] == 98


def test_gaps_from_minutes_to_days() -> None:
    times, values = trace(14)
    gaps = (Gaps(5, timedelta(minutes=10), timedelta(minutes=30)), Gaps(1, timedelta(days=2), timedelta(days=3)))
    degraded = degrade(times, values, Artefacts(gaps=gaps), seed=4)
    assert len(degraded.gaps) == 6
    lengths = sorted(end - start for start, end in degraded.gaps)
    assert all(timedelta(minutes=10) <= length <= timedelta(minutes=30) for length in lengths[:5])
    assert timedelta(days=2) <= lengths[5] <= timedelta(days=3)
    kept = set(degraded.times)
    for moment in times:
        in_gap = any(start <= moment < end for start, end in degraded.gaps)
        assert (moment in kept) is not in_gap
    assert degraded.summary()["gap_days"] >= 2


def test_duplicates_repeat_a_reading_at_the_same_time() -> None:
    times, values = trace(14, slope=0.01)
    degraded = degrade(times, values, Artefacts(duplicates=0.1), seed=9)
    assert len(degraded.times) == len(times) + degraded.duplicates
    assert 0.08 < degraded.duplicates / len(times) < 0.12
    pairs = [k for k in range(1, len(degraded.times)) if degraded.times[k] == degraded.times[k - 1]]
    assert len(pairs) == degraded.duplicates
    assert all(degraded.values[k] == degraded.values[k - 1] for k in pairs)


def test_seeded_reproducible_and_independent_streams() -> None:
    times, values = trace(14)
    assert degrade(times, values, REALISTIC, seed=1) == degrade(times, values, REALISTIC, seed=1)
    assert degrade(times, values, REALISTIC, seed=1).values != degrade(times, values, REALISTIC, seed=2).values
    # Switching the noise off changes nothing else: same gaps, jumps and compression lows.
    quiet = degrade(times, values, dataclasses.replace(REALISTIC, noise=None), seed=1)
    noisy = degrade(times, values, REALISTIC, seed=1)
    assert (quiet.gaps, quiet.jumps, quiet.compression) == (noisy.gaps, noisy.jumps, noisy.compression)


def test_realistic_lays_every_artefact() -> None:
    times, values = trace(14)
    summary = degrade(times, values, REALISTIC, seed=1).summary()
    assert summary["gaps"] == 16
    assert summary["gap_days"] >= 2
    assert summary["calibration_jumps"] == 3
    assert summary["compression_lows"] >= 1
    assert summary["duplicates"] >= 1


@pytest.mark.parametrize(
    ("times", "values", "artefacts", "message"),
    [
        ([START, START + STEP], [100.0], Artefacts(), "2 times but 1 values"),
        ([START], [100.0], Artefacts(), "at least 2 readings"),
        ([datetime(2026, 10, 1), datetime(2026, 10, 2)], [1.0, 2.0], Artefacts(), "time zone"),
        ([START, START + STEP], [100.0, float("nan")], Artefacts(), "finite"),
        ([START + STEP, START], [100.0, 100.0], Artefacts(), "in order"),
        ([START, START + STEP], [1.0, 2.0], Artefacts(timing=Timing(shortest=timedelta(0))), "shortest"),
        ([START, START + STEP], [1.0, 2.0], Artefacts(noise=Noise(memory=timedelta(0))), "memory > 0"),
        ([START, START + STEP], [1.0, 2.0], Artefacts(drift=Drift(session=timedelta(0))), "session"),
        ([START, START + STEP], [1.0, 2.0], Artefacts(calibration=Calibration(smallest=30)), "smallest <= largest"),
        ([START, START + STEP], [1.0, 2.0], Artefacts(compression=Compression(night_end=25)), "night_end"),
        ([START, START + STEP], [1.0, 2.0], Artefacts(gaps=(Gaps(-1, STEP, STEP),)), "count >= 0"),
    ],
)
def test_bad_input_is_refused_with_a_reason(
    times: list[datetime], values: list[float], artefacts: Artefacts, message: str
) -> None:
    with pytest.raises(GlucokitError, match=message):
        degrade(times, values, artefacts, seed=1)


def test_a_bundle_gets_artefacts_on_its_cgm_readings_only() -> None:
    raw = orjson.loads(gzip.decompress(FIXTURE.read_bytes()))
    degraded, done = degrade_bundle(raw, REALISTIC, seed=3)
    assert (
        done.summary()["readings"]
        == sum(1 for _ in from_bundle(degraded).glucose) + done.summary()["low"] + done.summary()["high"]
    )
    clean, rough = from_bundle(raw), from_bundle(degraded)
    assert (rough.carbs, rough.insulin) == (clean.carbs, clean.insulin)
    assert len(rough.glucose) < len(clean.glucose) - 2 * 288  # the multi-day gap
    validator = ObservationValidator("R4B", datetime.now(UTC))
    assert all(isinstance(validator.validate(entry["resource"]), Reading) for entry in degraded["entry"][:200])
    assert degraded == degrade_bundle(raw, REALISTIC, seed=3)[0]


def test_low_and_high_reach_a_bundle_as_bounds() -> None:
    times = [START + k * STEP for k in range(200)]
    values = [30.0 + 2.5 * k for k in range(200)]  # 30 to 527.5 mg/dL
    made = bundle(Trace("adult#001", tuple(times), tuple(values), tuple(values), (0.0,) * 199, (0.0,) * 199), seed=1)
    # The simulator clamps its CGM to 40-400; make the extremes reach the layer as the sensor saw them.
    degraded, _ = degrade_bundle(made, Artefacts(limits=Limits(low=45, high=350), duplicates=0.2), seed=1)
    bounds = [
        entry["resource"]["valueQuantity"]
        for entry in degraded["entry"]
        if "comparator" in entry["resource"]["valueQuantity"]
    ]
    assert {(q["comparator"], q["value"]) for q in bounds} == {("<", 45), (">", 350)}
    kept = from_bundle(degraded).glucose
    assert all(45 <= value <= 350 for _, value in kept)  # glucokit reads a bound as no reading
    identifiers = [entry["resource"]["identifier"][0]["value"] for entry in degraded["entry"]]
    assert len(identifiers) - len(set(identifiers)) >= 1  # a reading sent twice keeps its identifier


def test_an_empty_bundle_is_refused() -> None:
    with pytest.raises(GlucokitError, match="no valid CGM readings"):
        degrade_bundle({"resourceType": "Bundle", "type": "collection", "entry": []}, REALISTIC, seed=1)
