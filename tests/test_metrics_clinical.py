"""Clinical forecast metrics (glucokit.forecast.metrics): Parkes error grid, gRMSE, time lag, detection of lows
and highs, band coverage per glucose range."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from glucokit.forecast.metrics import evaluate, grmse, parkes_zones, time_lag
from glucokit.forecast.windows import HORIZON_MINUTES, HORIZONS


@pytest.mark.parametrize(
    ("diabetes_type", "reference", "prediction", "zone"),
    [
        (1, 100, 100, "A"),
        (1, 100, 150, "B"),  # above B's upper line (126 at 100), below C's (179)
        (1, 100, 200, "C"),
        (1, 100, 400, "D"),  # above D's upper line (364 at 100)
        (1, 20, 200, "E"),  # above E's upper line (153 at 20)
        (1, 300, 100, "C"),  # below C's lower line (147 at 300), above D's (58)
        (1, 300, 50, "D"),
        (1, 140, 171, "B"),  # just above B's upper vertex (140, 170) ...
        (1, 140, 169, "A"),  # ... and just below it
        (1, 35, 156, "E"),  # just above E's vertex (35, 155)
        (1, 30, 10, "A"),  # no lower zone before 50 mg/dL
        (1, 600, 400, "B"),  # beyond the last vertex the lines go on with their last slope
        (2, 100, 100, "A"),
        (2, 20, 190, "D"),  # type 2's E starts at 200 ...
        (2, 20, 210, "E"),
        (1, 20, 190, "E"),  # ... type 1's at 153
        (2, 300, 50, "D"),  # below D's lower line (62 at 300)
        (2, 100, 70, "B"),  # below B's lower line (86 at 100)
    ],
)
def test_parkes_zones_of_points_on_the_published_grid(
    diabetes_type: int, reference: float, prediction: float, zone: str
) -> None:
    found = parkes_zones(
        np.array([reference], dtype=np.float64), np.array([prediction], dtype=np.float64), diabetes_type
    )
    assert "ABCDE"[int(found[0])] == zone


def test_the_parkes_grid_is_for_type_1_or_2() -> None:
    with pytest.raises(ValueError, match="type 1 or 2"):
        parkes_zones(np.array([100.0]), np.array([100.0]), 3)


def test_grmse_of_a_hand_computed_case() -> None:
    reference = np.array([40.0, 100.0, 400.0, 65.0])
    prediction = np.array([60.0, 110.0, 300.0, 100.0])
    # 40 -> 60: a low over-estimated by more than 10, fully low (<= 50): weight 1 + 1.5.
    # 100 -> 110: in range: weight 1.
    # 400 -> 300: a high under-estimated by more than 20, fully high (>= 350): weight 1 + 1.
    # 65 -> 100: over-estimated, 65 is halfway through the fade from 50 to 80: the smooth step at 0 is 1/2,
    #   weight 1 + 1.5 / 2.
    expected = math.sqrt((2.5 * 20**2 + 1 * 10**2 + 2 * 100**2 + 1.75 * 35**2) / 4)
    assert float(grmse(reference, prediction)) == pytest.approx(expected)
    # Under-estimating a low or over-estimating a high costs no more than RMSE does.
    assert float(grmse(np.array([50.0, 300.0]), np.array([40.0, 330.0]))) == pytest.approx(math.sqrt(500))


def windows_of(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every window of a 5-minute series: its origin reading and its 12 targets."""
    n = len(series) - HORIZONS
    origin = series[:n]
    target = np.stack([series[1 + h : 1 + h + n] for h in range(HORIZONS)], axis=1)
    return origin, target


def test_the_lag_of_a_forecast_is_the_shift_that_aligns_it_with_the_readings() -> None:
    steps = np.arange(2_000)
    series = 150 + 50 * np.sin(2 * np.pi * steps / 37) + 20 * np.sin(2 * np.pi * steps / 101)
    origin, target = windows_of(series)
    persistence = np.repeat(origin[:, None], HORIZONS, axis=1)
    assert time_lag(persistence, target, origin) == tuple(float(m) for m in HORIZON_MINUTES)
    assert time_lag(target, target, origin) == (0.0,) * HORIZONS
    # A forecast that is the reading of 10 minutes before its target lags 10 minutes (5 at 5 minutes ahead:
    # nothing older than the origin is compared).
    late = np.column_stack([origin, target])[:, [max(h - 1, 0) for h in range(HORIZONS)]]
    assert time_lag(late, target, origin) == (5.0,) + (10.0,) * (HORIZONS - 1)
    # Flat forecasts have no lag to find.
    assert time_lag(np.full_like(target, 120.0), target, origin) == (None,) * HORIZONS


def test_detection_of_lows_and_highs_and_coverage_per_glucose_range() -> None:
    target = np.array([60.0, 65.0, 120.0, 150.0, 200.0, 250.0, 100.0, 190.0])[:, None].repeat(HORIZONS, axis=1)
    prediction = np.array([62.0, 80.0, 66.0, 150.0, 195.0, 170.0, 100.0, 185.0])[:, None].repeat(HORIZONS, axis=1)
    low, high = prediction - 10, prediction + 10  # covers 60, 150, 200, 100, 190; misses 65, 120, 250
    metrics = evaluate(prediction, target, bands=(low, high), origin=target[:, 0])
    at_30 = metrics.at(30)
    # Lows: 60 and 65 were low; 62 and 66 were forecast low; only 60 both.
    assert at_30["lows"] == {"events": 2, "forecast": 2, "detected": 1, "sensitivity": 0.5, "precision": 0.5}
    # Highs: 200, 250, 190 were high; 195 and 185 forecast high, both right.
    assert at_30["highs"] == {"events": 3, "forecast": 2, "detected": 2, "sensitivity": 2 / 3, "precision": 1.0}
    assert at_30["coverage"] == pytest.approx(5 / 8)
    assert at_30["coverage_by_range"] == {
        "below_70": pytest.approx(1 / 2),
        "70_180": pytest.approx(2 / 3),
        "above_180": pytest.approx(2 / 3),
    }
    assert metrics.range_coverage("above_180") == pytest.approx(2 / 3)
    assert metrics.range_counts == {
        "below_70": (2,) * HORIZONS,
        "70_180": (3,) * HORIZONS,
        "above_180": (3,) * HORIZONS,
    }


def test_a_range_or_a_detection_with_nothing_in_it_is_none_and_the_metrics_are_strict_json() -> None:
    target = np.full((4, HORIZONS), 120.0)
    prediction = target + np.array([5.0, -5.0, 10.0, 0.0])[:, None]
    bands = (prediction - 6, prediction + 6)
    metrics = evaluate(prediction, target, bands=bands, origin=target[:, 0])
    at_60 = metrics.at(60)
    assert at_60["lows"]["sensitivity"] is None
    assert at_60["highs"]["precision"] is None
    assert at_60["coverage_by_range"]["below_70"] is None
    assert metrics.range_coverage("below_70") is None
    assert at_60["parkes_type1"]["A"] == at_60["parkes_type2"]["A"] == 1.0
    json.dumps(metrics.as_dict(), allow_nan=False)
