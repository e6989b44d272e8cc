"""A person's glucose chart: recent readings, the forecast with its band, and the disclaimer, as SVG or PNG.

Pure rendering: ``render`` draws a ``ChartData`` and reads nothing else, so the
API, the CLI and the demo can all feed it. The chart spans six hours before
the forecast's origin to its last point (six hours up to the latest reading
when there is no forecast) and shows the readings in that span, a marker at
the origin, the forecast curve and its band, a neutral reference band for
70-180 mg/dL, and, on the image itself, the model version and the disclaimer
with its version. Times are shown in the person's local time.

Rendering uses a ``Figure`` of its own (never pyplot's global state) with the
Agg canvas. The SVG and PNG settings are set with ``rc_context``, which swaps
matplotlib's process-wide rcParams for the duration, and matplotlib is not
thread-safe, so ``render`` holds a lock while it draws: charts render one at a
time in a process, each in about a tenth of a second (a PNG in up to two). The same data gives
the same bytes: SVG ids come from a fixed salt and no date is written.

Informational trend charts only: never for dosing, diagnosis or triage.
"""

from __future__ import annotations

import functools
import io
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from glucokit.disclaimer import DISCLAIMER_VERSION, DISCLAIMERS, Language, disclaimer_text
from glucokit.units import MG_DL

if TYPE_CHECKING:  # matplotlib loads on the first render: importing this module stays cheap
    from matplotlib.figure import Figure

ChartFormat = Literal["svg", "png"]

# Readings drawn before the forecast's origin.
HISTORY_SPAN: Final = timedelta(hours=6)
# The consensus target range for CGM readings of most people with type 1 or type 2 diabetes (time in range):
# Battelino T, et al. Clinical Targets for Continuous Glucose Monitoring Data Interpretation: Recommendations
# From the International Consensus on Time in Range. Diabetes Care 2019;42(8):1593-1603, doi:10.2337/dci19-0028.
# Drawn as a neutral reference, labelled with its numbers only.
CONSENSUS_RANGE_MG_DL: Final = (70, 180)

SIZE_PX: Final = (800, 600)  # width, height of the PNG
DPI: Final = 100
MARGIN_PX: Final = 12

READINGS_COLOR: Final = "#1f4e79"
FORECAST_COLOR: Final = "#a34a0c"
BAND_COLOR: Final = "#f6c39b"  # opaque, so the band's pixels have exactly this colour
RANGE_COLOR: Final = "#e4ecf2"
NOTE_COLOR: Final = "#555555"

# Every string the chart shows besides the caller's title and the disclaimer, per language.
LABELS: Final[dict[Language, dict[str, str]]] = {
    "en": {
        "readings": "Glucose readings",
        "forecast": "Forecast",
        "band": "{percent} % band",
        "range": "{low}–{high} {unit} range",  # noqa: RUF001 (an en dash between numbers)
        "origin": "Forecast from {time}",
        "datetime": "%Y-%m-%d %H:%M",
        "no_forecast": "No forecast available",
        "no_readings": "No readings in this period",
        "time": "Local time ({tz})",
        "glucose": "Glucose ({unit})",
        "model": "Model {version}",
        "disclaimer": "Disclaimer {version}",
    },
    "de": {
        "readings": "Glukosewerte",
        "forecast": "Vorhersage",
        "band": "{percent} %-Band",
        "range": "Bereich {low}–{high} {unit}",  # noqa: RUF001
        "origin": "Vorhersage ab {time}",
        "datetime": "%d.%m.%Y %H:%M",
        "no_forecast": "Keine Vorhersage verfügbar",
        "no_readings": "Keine Messwerte in diesem Zeitraum",
        "time": "Ortszeit ({tz})",
        "glucose": "Glukose ({unit})",
        "model": "Modell {version}",
        "disclaimer": "Hinweis {version}",
    },
}

# Settings for the duration of a render: SVG text as <text> elements, fixed SVG ids, a font that ships with
# matplotlib, and titles taken literally (a "$" in a name is not mathtext).
_RC: Final[dict[str, Any]] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "glucokit-chart",
    "font.family": "DejaVu Sans",
    "text.usetex": False,
    "text.parse_math": False,
}
_LOCK: Final = threading.Lock()


@dataclass(frozen=True)
class ChartPoint:
    """One forecast point: its target time (tz-aware) and value with its band, mg/dL."""

    at: datetime
    value: float
    low: float
    high: float

    def __post_init__(self) -> None:
        _check_aware(self.at, "forecast point")
        numbers = (self.value, self.low, self.high)
        if not all(math.isfinite(number) for number in numbers):
            raise ValueError(f"forecast point at {self.at.isoformat()}: value and band must be finite, got {numbers}")
        if not self.low <= self.value <= self.high:
            raise ValueError(
                f"forecast point at {self.at.isoformat()}: band [{self.low}, {self.high}]"
                f" does not contain the value {self.value}"
            )


@dataclass(frozen=True)
class ChartForecast:
    """A forecast to draw: its origin (the latest reading it starts from), band coverage, model and points."""

    origin: datetime
    coverage: float  # nominal coverage of the band, e.g. 0.8
    model_version: str
    points: Sequence[ChartPoint]

    def __post_init__(self) -> None:
        _check_aware(self.origin, "forecast origin")
        if not 0 < self.coverage < 1:
            raise ValueError(f"band coverage must be between 0 and 1, got {self.coverage}")
        if not self.points:
            raise ValueError("a forecast needs at least one point; pass forecast=None for none")
        for point in self.points:
            if point.at <= self.origin:
                raise ValueError(
                    f"forecast point at {point.at.isoformat()} is not after the origin {self.origin.isoformat()}"
                )


@dataclass(frozen=True)
class ChartData:
    """Everything a chart shows: readings (tz-aware, mg/dL), the forecast if there is one, and how to label it.

    ``disclaimer_version`` is the version the shown forecast was stored with;
    the chart prints that version's text.
    """

    title: str
    history: Sequence[tuple[datetime, float]]
    forecast: ChartForecast | None
    language: Language
    tz: str  # IANA time zone; the time axis shows local time
    disclaimer_version: str = DISCLAIMER_VERSION

    def __post_init__(self) -> None:
        if not self.history and self.forecast is None:
            raise ValueError("a chart needs readings or a forecast; got neither")
        if self.language not in LABELS:
            raise ValueError(f"unknown language {self.language!r}; expected one of {', '.join(LABELS)}")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {self.tz!r}") from error
        if self.disclaimer_version not in DISCLAIMERS:
            raise ValueError(
                f"unknown disclaimer version {self.disclaimer_version!r} (known: {', '.join(DISCLAIMERS)})"
            )
        for at, value in self.history:
            _check_aware(at, "reading")
            if not math.isfinite(value):
                raise ValueError(f"reading at {at.isoformat()}: value must be finite, got {value}")


def render(data: ChartData, format: ChartFormat) -> bytes:
    """The chart as SVG (text as <text> elements) or as a PNG of SIZE_PX pixels."""
    if format not in get_args(ChartFormat):
        raise ValueError(f"unknown chart format {format!r}; expected one of {', '.join(get_args(ChartFormat))}")
    buffer = io.BytesIO()
    import matplotlib as mpl  # noqa: PLC0415 - see the import block

    with _LOCK, mpl.rc_context(_RC):  # type: ignore[arg-type]
        _draw(data).savefig(buffer, format=format, dpi=DPI, metadata={"Date": None} if format == "svg" else None)
    return buffer.getvalue()


def _draw(data: ChartData) -> Figure:
    labels = LABELS[data.language]
    zone = ZoneInfo(data.tz)
    forecast = data.forecast
    points = sorted(forecast.points, key=lambda point: point.at) if forecast is not None else []
    anchor = forecast.origin if forecast is not None else max(at for at, _ in data.history)
    start, end = anchor - HISTORY_SPAN, points[-1].at if points else anchor
    readings = sorted((at, value) for at, value in data.history if start <= at <= end)

    def hours(at: datetime) -> float:  # the x axis: hours since the anchor
        return (at - anchor) / timedelta(hours=1)

    width, height = SIZE_PX
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - see the import block
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)  # measures text while the layout is made
    # Bottom up: the disclaimer, its version and the model's, then the axes above them.
    disclaimer = figure.text(
        MARGIN_PX / width,
        MARGIN_PX / height,
        _wrapped(data.disclaimer_version, data.language),
        fontsize=8,
        va="bottom",
        gid="disclaimer",
    )
    versions = [labels["model"].format(version=forecast.model_version)] if forecast is not None else []
    versions.append(labels["disclaimer"].format(version=data.disclaimer_version))
    provenance = figure.text(
        MARGIN_PX / width,
        (disclaimer.get_window_extent().y1 + 6) / height,
        " · ".join(versions),
        fontsize=8,
        color=NOTE_COLOR,
        va="bottom",
        gid="provenance",
    )
    bottom = provenance.get_window_extent().y1 + 52  # room for the tick labels and the time axis label
    left, top = 64, height - 72  # room for the glucose axis; the title and the legend above
    figure.text(MARGIN_PX / width, 1 - MARGIN_PX / height, data.title, fontsize=14, va="top", gid="title")
    axes = figure.add_axes((left / width, bottom / height, (width - left - 20) / width, (top - bottom) / height))

    low, high = CONSENSUS_RANGE_MG_DL
    axes.axhspan(
        low,
        high,
        color=RANGE_COLOR,
        linewidth=0,
        zorder=0,
        label=labels["range"].format(low=low, high=high, unit=MG_DL),
        gid="reference-range",
    )
    if readings:
        axes.plot(
            [hours(at) for at, _ in readings],
            [value for _, value in readings],
            color=READINGS_COLOR,
            linewidth=1.8,
            label=labels["readings"],
            gid="readings",
        )
    else:
        axes.text(0.02, 0.96, labels["no_readings"], transform=axes.transAxes, va="top", color=NOTE_COLOR)
    if forecast is not None:
        # The curve and its band start from the origin's reading when it is drawn.
        rows = [(at, value, value, value) for at, value in readings if at == forecast.origin][:1]
        rows += [(point.at, point.value, point.low, point.high) for point in points]
        axes.fill_between(
            [hours(row[0]) for row in rows],
            [row[2] for row in rows],
            [row[3] for row in rows],
            color=BAND_COLOR,
            linewidth=0,
            zorder=1,
            label=labels["band"].format(percent=f"{forecast.coverage * 100:.3g}"),
            gid="forecast-band",
        )
        axes.plot(
            [hours(row[0]) for row in rows],
            [row[1] for row in rows],
            color=FORECAST_COLOR,
            linewidth=1.8,
            linestyle="--",
            zorder=2,
            label=labels["forecast"],
            gid="forecast",
        )
        axes.axvline(0, color=NOTE_COLOR, linewidth=1, linestyle=":", gid="forecast-origin")
        axes.text(
            0,
            0.96,
            labels["origin"].format(time=forecast.origin.astimezone(zone).strftime(labels["datetime"])),
            transform=axes.get_xaxis_transform(),
            ha="right",
            va="top",
            fontsize=9,
            color=NOTE_COLOR,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 2},
        )
    else:
        axes.text(0.98, 0.96, labels["no_forecast"], transform=axes.transAxes, ha="right", va="top", color=NOTE_COLOR)

    axes.set_xlim(hours(start), hours(end + timedelta(minutes=5)))
    ticks = _ticks(start, end, zone)
    axes.set_xticks([hours(tick) for tick in ticks], [tick.strftime("%H:%M") for tick in ticks])
    shown = [value for _, value in readings] + [bound for point in points for bound in (point.low, point.high)]
    axes.set_ylim(max(0.0, min([*shown, low]) - 20), max([*shown, high]) + 20)
    axes.set_xlabel(labels["time"].format(tz=data.tz))
    axes.set_ylabel(labels["glucose"].format(unit=MG_DL))
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncols=4, frameon=False, fontsize=9, borderaxespad=0)
    return figure


def _ticks(start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    """The whole local hours from start to end, every so many hours that there are at most 8 of them.

    Candidates go in 15-minute steps of absolute time, so daylight saving changes and zones a
    half or quarter of an hour off UTC get their local whole hours too.
    """
    step = max(1, math.ceil((end - start) / timedelta(hours=8)))
    quarter = 15 * 60
    moments = (
        datetime.fromtimestamp(seconds, zone)
        for seconds in range(math.ceil(start.timestamp() / quarter) * quarter, math.floor(end.timestamp()) + 1, quarter)
    )
    return [moment for moment in moments if moment.minute == 0 and moment.hour % step == 0]


@functools.cache
def _wrapped(version: str, language: Language) -> str:
    """A disclaimer version's text broken at spaces into lines that fit the chart's width at its size (8 pt).

    Measured once per version, language and process: a word longer than a line keeps a line to itself.
    """
    width, height = SIZE_PX
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - see the import block
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    text = figure.text(0, 0, "", fontsize=8)
    lines: list[str] = []
    for word in disclaimer_text(version, language).split():
        text.set_text(f"{lines[-1]} {word}" if lines else word)
        if lines and text.get_window_extent().width <= width - 2 * MARGIN_PX:
            lines[-1] = text.get_text()
        else:
            lines.append(word)
    return "\n".join(lines)


def _check_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} at {moment.isoformat()} is a naive datetime; give it a time zone")
