"""glucokit.api.chart: what a rendered chart shows in both languages, as SVG and as PNG, and the input it refuses.

Synthetic readings and forecasts only; no database.
"""

from __future__ import annotations

import io
import math
import re
import struct
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import cast, get_args

import numpy as np
import pytest
from matplotlib import colors, image

from glucokit.api.chart import (
    BAND_COLOR,
    LABELS,
    SIZE_PX,
    ChartData,
    ChartForecast,
    ChartFormat,
    ChartPoint,
    render,
)
from glucokit.disclaimer import DISCLAIMER, DISCLAIMER_VERSION, Language
from wording import forbidden_words

SVG = "{http://www.w3.org/2000/svg}"
ORIGIN = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # 13:00 in Berlin
STEP = timedelta(minutes=5)
TITLE = "Alex's glucose, $5 sensor"  # a "$" must stay a dollar sign, not start mathtext


def readings(start: datetime, end: datetime, value: float = 130.0) -> list[tuple[datetime, float]]:
    count = int((end - start) / STEP) + 1
    return [(start + i * STEP, value + 10 * math.sin(i / 6)) for i in range(count)]


def points(origin: datetime = ORIGIN) -> list[ChartPoint]:
    return [ChartPoint(origin + m * STEP, 130 + m, 130 + m - 3 * m, 130 + m + 3 * m) for m in range(1, 13)]


def chart(language: Language = "en") -> ChartData:
    return ChartData(
        title=TITLE,
        history=readings(ORIGIN - timedelta(hours=6), ORIGIN),
        forecast=ChartForecast(ORIGIN, 0.8, "v3", points()),
        language=language,
        tz="Europe/Berlin",
    )


def parse(svg: bytes) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 (the chart module's own output, not untrusted input)


def texts(svg: bytes, under: str | None = None) -> list[str]:
    """The SVG's <text> elements, in document order; only those in the group with id ``under`` if given."""
    root = parse(svg) if under is None else group(svg, under)
    return ["".join(element.itertext()) for element in root.iter(f"{SVG}text")]


def group(svg: bytes, gid: str) -> ET.Element:
    found = [element for element in parse(svg).iter(f"{SVG}g") if element.get("id") == gid]
    assert len(found) == 1, f"one group {gid!r} expected, found {len(found)}"
    return found[0]


def groups(svg: bytes) -> set[str]:
    return {element.get("id", "") for element in parse(svg).iter(f"{SVG}g")}


@pytest.mark.parametrize("language", get_args(Language))
def test_labels_use_no_urgency_dosing_or_diagnostic_wording(language: Language) -> None:
    assert {key: forbidden_words(text) for key, text in LABELS[language].items() if forbidden_words(text)} == {}


@pytest.mark.parametrize("language", get_args(Language))
def test_rendered_wording_besides_the_disclaimer_is_neutral(language: Language) -> None:
    svg = render(chart(language), "svg")
    own = set(texts(svg)) - set(texts(svg, "disclaimer")) - {TITLE}
    assert own
    assert [text for text in own if forbidden_words(text)] == []


def test_every_language_has_every_label_and_a_disclaimer() -> None:
    assert tuple(LABELS) == get_args(Language)
    assert LABELS.keys() == DISCLAIMER.keys()
    assert LABELS["de"].keys() == LABELS["en"].keys()


# ---- SVG: the text on the image --------------------------------------------------


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "en",
            [
                "Glucose (mg/dL)",
                "Local time (Europe/Berlin)",
                "80 % band",
                "Forecast",
                "Glucose readings",
                "70–180 mg/dL range",  # noqa: RUF001
                "Forecast from 2026-01-15 13:00",
                f"Model v3 · Disclaimer {DISCLAIMER_VERSION}",
            ],
        ),
        (
            "de",
            [
                "Glukose (mg/dL)",
                "Ortszeit (Europe/Berlin)",
                "80 %-Band",
                "Vorhersage",
                "Glukosewerte",
                "Bereich 70–180 mg/dL",  # noqa: RUF001
                "Vorhersage ab 15.01.2026 13:00",
                f"Modell v3 · Hinweis {DISCLAIMER_VERSION}",
            ],
        ),
    ],
)
def test_svg_has_title_labels_versions_and_the_full_disclaimer(language: Language, expected: list[str]) -> None:
    svg = render(chart(language), "svg")
    shown = texts(svg)
    assert TITLE in shown
    assert [text for text in expected if text not in shown] == []
    lines = texts(svg, "disclaimer")
    assert len(lines) > 1  # wrapped
    assert " ".join(lines) == " ".join(DISCLAIMER[language].split())


def test_time_axis_shows_local_whole_hours() -> None:
    berlin = texts(render(chart(), "svg"))
    assert [f"{hour:02}:00" for hour in range(7, 15)] == [text for text in berlin if re.fullmatch(r"\d\d:\d\d", text)]
    # India is 5:30 ahead of UTC: the ticks still fall on local whole hours.
    kolkata = texts(render(replace(chart(), tz="Asia/Kolkata"), "svg"))
    assert [f"{hour:02}:00" for hour in range(12, 19)] == [text for text in kolkata if re.fullmatch(r"\d\d:\d\d", text)]
    assert "Forecast from 2026-01-15 17:30" in kolkata


def test_band_readings_forecast_and_reference_range_are_drawn() -> None:
    svg = render(chart(), "svg")
    band = group(svg, "forecast-band")
    outline = [path.get("d", "") for path in band.iter(f"{SVG}path")]
    assert len(outline) == 1
    assert outline[0].rstrip().endswith("z")  # a closed polygon
    assert outline[0].count("L") >= 2 * len(points())
    assert any(f"fill: {BAND_COLOR}" in element.get("style", "") for element in band.iter())
    for gid in ("readings", "forecast", "forecast-origin", "reference-range"):
        assert list(group(svg, gid).iter(f"{SVG}path")), gid


def test_same_data_gives_the_same_svg_bytes() -> None:
    first = render(chart(), "svg")
    assert render(chart(), "svg") == first
    assert b"<dc:date>" not in first
    assert render(replace(chart(), title="Another title"), "svg") != first


def test_history_only_and_forecast_only_charts() -> None:
    history_only = render(replace(chart(), forecast=None), "svg")
    shown = texts(history_only)
    assert "No forecast available" in shown
    assert f"Disclaimer {DISCLAIMER_VERSION}" in shown
    assert not [text for text in shown if text.startswith("Model")]
    assert {"forecast", "forecast-band", "forecast-origin"}.isdisjoint(groups(history_only))
    assert "readings" in groups(history_only)

    forecast_only = render(replace(chart("de"), history=[]), "svg")
    assert "Keine Messwerte in diesem Zeitraum" in texts(forecast_only)
    assert "readings" not in groups(forecast_only)
    assert "forecast-band" in groups(forecast_only)


def test_readings_outside_the_six_hours_before_the_forecast_and_after_it_are_left_out() -> None:
    older = readings(ORIGIN - timedelta(hours=10), ORIGIN - timedelta(hours=7), value=390)
    later = readings(ORIGIN + timedelta(hours=2), ORIGIN + timedelta(hours=3), value=30)
    svg = render(replace(chart(), history=[*older, *chart().history, *later]), "svg")
    assert svg == render(chart(), "svg")


# ---- PNG -------------------------------------------------------------------------


def test_png_has_its_size_and_band_coloured_pixels() -> None:
    png = render(chart(), "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    length, kind, width, height = struct.unpack(">I4sII", png[8:24])
    assert (kind, length) == (b"IHDR", 13)
    assert (width, height) == SIZE_PX
    pixels = np.round(image.imread(io.BytesIO(png), format="png")[..., :3] * 255).astype(int)
    band = np.array(colors.to_rgb(BAND_COLOR)) * 255
    assert int(np.all(np.abs(pixels - band) <= 1, axis=-1).sum()) > 1000
    without = render(replace(chart(), forecast=None), "png")
    pixels = np.round(image.imread(io.BytesIO(without), format="png")[..., :3] * 255).astype(int)
    assert int(np.all(np.abs(pixels - band) <= 1, axis=-1).sum()) == 0


@pytest.mark.parametrize("language", get_args(Language))
def test_everything_fits_inside_the_png(language: Language) -> None:
    pixels = image.imread(io.BytesIO(render(chart(language), "png")), format="png")[..., :3]
    margin = 6
    for edge in (pixels[:margin], pixels[-margin:], pixels[:, :margin], pixels[:, -margin:]):
        assert np.all(edge == 1.0)  # white: no text runs off the image


# ---- refused input -----------------------------------------------------------------

NAIVE = datetime(2026, 1, 15, 12, 0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: replace(chart(), history=[], forecast=None), "a chart needs readings or a forecast; got neither"),
        (
            lambda: replace(chart(), history=[(NAIVE, 120.0)]),
            "reading at 2026-01-15T12:00:00 is a naive datetime; give it a time zone",
        ),
        (
            lambda: ChartForecast(NAIVE, 0.8, "v3", points()),
            "forecast origin at 2026-01-15T12:00:00 is a naive datetime",
        ),
        (lambda: ChartPoint(NAIVE, 120, 110, 130), "forecast point at 2026-01-15T12:00:00 is a naive datetime"),
        (lambda: replace(chart(), language=cast(Language, "fr")), "unknown language 'fr'; expected one of en, de"),
        (lambda: render(chart(), cast(ChartFormat, "pdf")), "unknown chart format 'pdf'; expected one of svg, png"),
        (
            lambda: ChartPoint(ORIGIN + STEP, 120, 125, 130),
            "forecast point at 2026-01-15T12:05:00+00:00: band [125, 130] does not contain the value 120",
        ),
        (lambda: ChartPoint(ORIGIN + STEP, float("nan"), 110, 130), "value and band must be finite"),
        (lambda: replace(chart(), history=[(ORIGIN, float("inf"))]), "value must be finite"),
        (lambda: ChartForecast(ORIGIN, 80, "v3", points()), "band coverage must be between 0 and 1, got 80"),
        (lambda: ChartForecast(ORIGIN, 0.8, "v3", []), "a forecast needs at least one point"),
        (
            lambda: ChartForecast(ORIGIN, 0.8, "v3", points(ORIGIN - 2 * STEP)),
            "forecast point at 2026-01-15T11:55:00+00:00 is not after the origin 2026-01-15T12:00:00+00:00",
        ),
        (lambda: replace(chart(), tz="Mars/Olympus_Mons"), "unknown time zone 'Mars/Olympus_Mons'"),
        (lambda: replace(chart(), disclaimer_version="v0"), "unknown disclaimer version 'v0' (known: v1)"),
    ],
)
def test_bad_input_is_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


# ---- threads -----------------------------------------------------------------------


def test_concurrent_renders_give_the_same_charts() -> None:
    expected = {language: render(chart(language), "svg") for language in get_args(Language)}
    results: list[bool] = []

    def draw(language: Language) -> None:
        results.append(render(chart(language), "svg") == expected[language])

    threads = [threading.Thread(target=draw, args=(language,)) for language in get_args(Language) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * len(threads)
