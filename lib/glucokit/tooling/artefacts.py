"""Sensor artefacts over simulated CGM readings: the roughness of real recordings, seeded and reproducible.

simglucose's sensor reads every 5 minutes on the dot, never fails and never
drifts. Real recordings have gaps (a sensor change, a lost phone, a multi-day
break), readings at the sensor's limits, compression lows (the wearer lies on
the sensor at night: a sharp fall and recovery that the blood never saw),
calibration jumps, clocks that drift, duplicates, and noise that is correlated
in time. ``degrade`` lays these over a trace of readings, and ``degrade_bundle``
over the CGM readings of a simulated FHIR Bundle (``glucokit.tooling.simulate``),
leaving its carbohydrate and insulin entries as they are.

Each artefact is a small frozen settings object; an ``Artefacts`` holds the ones
to apply (none by default) and ``REALISTIC`` all of them with their defaults.
They are applied in this order, each from its own random stream derived from
the seed, so switching one off never changes what the others do:

1. ``Timing``: the sensor's clock, readings every 4-6 minutes with jitter
   (values interpolated from the trace);
2. ``Noise``: autocorrelated noise, an AR(1) in continuous time;
3. ``Drift``: a bias that drifts linearly within each sensor session;
4. ``Calibration``: steps of 10-25 mg/dL at random times that persist;
5. ``Compression``: night-time compression lows;
6. readings are rounded to whole mg/dL, as sensors report them;
7. ``Limits``: clipped to 40-400 mg/dL, flagged LOW/HIGH;
8. ``Gaps``: readings removed over spans of minutes to days;
9. ``duplicates``: a fraction of readings sent twice.

Where the numbers come from. The error structure (a smooth calibration error
that drifts with time since calibration, plus autocorrelated measurement noise)
is that of Facchinetti A, Del Favero S, Sparacino G, Castle JR, Ward WK,
Cobelli C, "Modeling the glucose sensor error", IEEE Trans Biomed Eng
2014;61(3):620-629 (doi:10.1109/TBME.2013.2284023). For orientation, its
sensor-specific noise for the Dexcom SEVEN Plus is an AR(2) at 1-minute steps
(coefficients 1.23 and -0.3995, innovation variance 11.3 (mg/dL)^2, eq. 13),
whose stationary sd works out to about 7.7 mg/dL. simglucose's own sensor noise
(Breton M, Kovatchev B, J Diabetes Sci Technol 2008;2(5):853-862) is an AR(1)
with coefficient 0.7 per 15 minutes, already in the simulated readings: the
noise here comes on top of it, so its default sd (5 mg/dL) is smaller. The
other defaults (drift, jump sizes, compression-low shapes, gap lengths) are
this project's choices for a test bed, not published figures; each is a
setting. The 40-400 mg/dL limits are those of Dexcom G6/G7 and FreeStyle Libre
(``glucokit.units.SENSOR_RANGE_MG_DL``); a G6 sensor session lasts 10 days.

Simulated data are for testing software, not for any clinical use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Final
from uuid import NAMESPACE_URL, uuid5

import numpy as np
import numpy.typing as npt

from glucokit.errors import GlucokitError
from glucokit.fhir.resources import instant, observation
from glucokit.fhir.validation import ObservationValidator, Reading
from glucokit.units import CGM_CODE, KINDS, LOINC, SENSOR_RANGE_MG_DL

FloatArray = npt.NDArray[np.float64]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE: Final = 60.0  # seconds
_DAY: Final = 86400.0
# Timing interpolates the trace between two readings only when they are at most
# this far apart: a gap already in the trace stays a gap (glucokit fills gaps of
# up to 15 minutes itself, see glucokit.forecast.series).
_INTERPOLATE_ACROSS: Final = 15 * _MINUTE
# One random stream per artefact, so that switching one off changes no other.
_STREAMS: Final = ("timing", "noise", "drift", "calibration", "compression", "gaps", "duplicates")
_CGM = KINDS[(LOINC, CGM_CODE)]
_NAMESPACE: Final = uuid5(NAMESPACE_URL, "urn:glucokit:artefacts")


@dataclass(frozen=True)
class Timing:
    """The sensor's clock: a reading every ``shortest``-``longest`` (uniform), each time off by up to ±``jitter``."""

    shortest: timedelta = timedelta(minutes=4)
    longest: timedelta = timedelta(minutes=6)
    jitter: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class Noise:
    """Additive noise, an AR(1) in continuous time: sd ``sd`` mg/dL, correlation exp(-dt / ``memory``)."""

    sd: float = 5.0
    memory: timedelta = timedelta(minutes=20)


@dataclass(frozen=True)
class Drift:
    """A bias per sensor session: offset ~ N(0, offset_sd) mg/dL plus slope ~ N(0, slope_sd) mg/dL per day."""

    session: timedelta = timedelta(days=10)
    offset_sd: float = 5.0
    slope_sd: float = 2.0


@dataclass(frozen=True)
class Calibration:
    """``count`` calibration jumps at uniform random times: steps of ±``smallest``-``largest`` mg/dL that persist."""

    count: int = 3
    smallest: float = 10.0
    largest: float = 25.0


@dataclass(frozen=True)
class Compression:
    """Compression lows: on each night with probability ``per_night``, one dip that starts between ``night_start``
    and ``night_end`` local hours.

    The reading falls linearly over ``fall`` to a floor drawn from ``floor`` mg/dL, stays there for a time drawn
    from ``hold`` and recovers linearly over ``recover``: a fall of tens of mg/dL in minutes, faster than blood
    glucose moves.
    """

    per_night: float = 0.3
    night_start: int = 0
    night_end: int = 6
    fall: timedelta = timedelta(minutes=10)
    hold: tuple[timedelta, timedelta] = (timedelta(minutes=5), timedelta(minutes=25))
    recover: timedelta = timedelta(minutes=15)
    floor: tuple[float, float] = (40.0, 65.0)


@dataclass(frozen=True)
class Limits:
    """Readings outside [low, high] mg/dL are clipped to the limit and flagged LOW/HIGH (``Degraded.limit``)."""

    low: float = float(SENSOR_RANGE_MG_DL[0])
    high: float = float(SENSOR_RANGE_MG_DL[1])


@dataclass(frozen=True)
class Gaps:
    """``count`` spans without readings, each ``shortest``-``longest`` long (uniform), at uniform random times."""

    count: int
    shortest: timedelta
    longest: timedelta


@dataclass(frozen=True)
class Artefacts:
    """Which artefacts to apply, with their settings; None (or empty, or 0) leaves one out."""

    timing: Timing | None = None
    noise: Noise | None = None
    drift: Drift | None = None
    calibration: Calibration | None = None
    compression: Compression | None = None
    limits: Limits | None = None
    gaps: tuple[Gaps, ...] = ()
    duplicates: float = 0.0  # fraction of readings sent twice (same time, same value)


# Gaps of minutes (a lost signal), of hours (a phone left at home, a sensor
# warming up) and one of days (a break between sensors).
DEFAULT_GAPS: Final = (
    Gaps(12, timedelta(minutes=10), timedelta(hours=1)),
    Gaps(3, timedelta(hours=2), timedelta(hours=12)),
    Gaps(1, timedelta(days=2), timedelta(days=3)),
)
REALISTIC: Final = Artefacts(
    timing=Timing(),
    noise=Noise(),
    drift=Drift(),
    calibration=Calibration(),
    compression=Compression(),
    limits=Limits(),
    gaps=DEFAULT_GAPS,
    duplicates=0.01,
)


@dataclass(frozen=True)
class Degraded:
    """The readings after the artefacts, in time order, and what was done to them."""

    times: tuple[datetime, ...]
    values: tuple[float, ...]  # whole mg/dL
    limit: tuple[str | None, ...]  # "low" or "high" where a reading was clipped to a sensor limit
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)  # [start, end): no readings
    jumps: list[tuple[datetime, float]] = field(default_factory=list)  # calibration steps, mg/dL
    compression: list[tuple[datetime, datetime]] = field(default_factory=list)  # dip start, recovered
    duplicates: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON-able counts: readings, limits hit, gaps (and the days they cover), jumps, compression lows."""
        return {
            "readings": len(self.times),
            "low": self.limit.count("low"),
            "high": self.limit.count("high"),
            "gaps": len(self.gaps),
            "gap_days": round(sum((end - start) / timedelta(days=1) for start, end in self.gaps), 2),
            "calibration_jumps": len(self.jumps),
            "compression_lows": len(self.compression),
            "duplicates": self.duplicates,
        }


def degrade(
    times: Sequence[datetime], values: Sequence[float], artefacts: Artefacts, *, seed: int, tz: tzinfo = UTC
) -> Degraded:
    """The readings (times in order, values in mg/dL) with the artefacts laid over them; ``tz`` says when it is night.

    The same input, artefacts and seed give the same result.
    """
    seconds, trace = _checked(times, values)
    streams = {name: np.random.default_rng([seed, index]) for index, name in enumerate(_STREAMS)}
    first, last = float(seconds[0]), float(seconds[-1])
    at, value = (
        (seconds, trace.copy())
        if artefacts.timing is None
        else _retime(seconds, trace, artefacts.timing, streams["timing"])
    )
    if artefacts.noise is not None:
        value += _noise(at, artefacts.noise, streams["noise"])
    if artefacts.drift is not None:
        value += _drift(at, first, artefacts.drift, streams["drift"])
    jumps: list[tuple[float, float]] = []
    if artefacts.calibration is not None:
        jumps = _jumps(first, last, artefacts.calibration, streams["calibration"])
        for when, step in jumps:
            value[at >= when] += step
    dips: list[tuple[float, float]] = []
    if artefacts.compression is not None:
        dips = _compress(
            at, value, first=first, last=last, compression=artefacts.compression, rng=streams["compression"], tz=tz
        )
    value = np.round(value)
    limit = np.full(len(value), None, dtype=object)
    if artefacts.limits is not None:
        low, high = artefacts.limits.low, artefacts.limits.high
        limit[value < low], limit[value > high] = "low", "high"
        value = np.clip(value, low, high)
    spans = [span for gaps in artefacts.gaps for span in _spans(first, last, gaps, streams["gaps"])]
    kept = np.ones(len(at), dtype=bool)
    for start, end in spans:
        kept &= (at < start) | (at >= end)
    at, value, limit = at[kept], value[kept], limit[kept]
    twice = streams["duplicates"].random(len(at)) < artefacts.duplicates
    repeat = np.where(twice, 2, 1)
    at, value, limit = np.repeat(at, repeat), np.repeat(value, repeat), np.repeat(limit, repeat)
    return Degraded(
        times=tuple(_moment(float(s)) for s in at),
        values=tuple(float(v) for v in value),
        limit=tuple(limit.tolist()),
        gaps=[(_moment(start), _moment(end)) for start, end in sorted(spans)],
        jumps=[(_moment(when), step) for when, step in jumps],
        compression=[(_moment(start), _moment(end)) for start, end in dips],
        duplicates=int(twice.sum()),
    )


def degrade_bundle(
    bundle: dict[str, Any], artefacts: Artefacts, *, seed: int, tz: tzinfo = UTC
) -> tuple[dict[str, Any], Degraded]:
    """A copy of a simulated Bundle whose CGM readings (LOINC 99504-3, mg/dL) went through ``degrade``, and what
    ``degrade`` did.

    Other entries stay as they are. A reading clipped at a sensor limit is
    written as FHIR writes a bound, ``<40`` or ``>400`` (valueQuantity.comparator),
    which is how LOW and HIGH reach glucokit from an export. A reading sent twice
    keeps its identifier, as a re-sent reading would.
    """
    validator = ObservationValidator("R4B", datetime.now(UTC))
    readings: list[Reading] = []
    others = []
    for entry in bundle.get("entry", []):
        reading = validator.validate(entry.get("resource"))
        if isinstance(reading, Reading) and reading.code == CGM_CODE:
            readings.append(reading)
        else:
            others.append(entry)
    if not readings:
        raise GlucokitError("the bundle has no valid CGM readings (LOINC 99504-3) to lay artefacts over")
    readings.sort(key=lambda reading: reading.effective_at)
    # The simulator's identifiers end in the reading's instant; the rest names the patient, the seed and the kind.
    prefix, device, system = readings[0].source_id.rsplit("/", 1)[0], readings[0].device, readings[0].source_system
    degraded = degrade(
        [reading.effective_at for reading in readings], [float(reading.value) for reading in readings],
        artefacts, seed=seed, tz=tz,
    )  # fmt: skip
    entries = []
    for moment, value, limit in zip(degraded.times, degraded.values, degraded.limit, strict=True):
        source_id = f"{prefix}/artefacts-{seed}/{instant(moment)}"
        resource = observation(
            _CGM, Decimal(int(value)), moment, source_system=system, source_id=source_id,
            device=device, comparator={"low": "<", "high": ">", None: None}[limit],
        )  # fmt: skip
        full_url = f"urn:uuid:{uuid5(_NAMESPACE, source_id)}"
        entries.append((moment, 0, {"fullUrl": full_url, "resource": resource}))
    entries += [(_effective(entry), 1, entry) for entry in others]
    entries.sort(key=lambda item: (item[0], item[1]))
    copy = {**bundle, "id": f"{bundle.get('id', 'bundle')}-artefacts-{seed}", "entry": [e for _, _, e in entries]}
    return copy, degraded


# ---- the artefacts -----------------------------------------------------------


def _checked(times: Sequence[datetime], values: Sequence[float]) -> tuple[FloatArray, FloatArray]:
    if len(times) != len(values):
        raise GlucokitError(f"{len(times)} times but {len(values)} values: one value per time is needed")
    if len(times) < 2:
        raise GlucokitError(f"at least 2 readings are needed to lay artefacts over, not {len(times)}")
    if any(moment.tzinfo is None for moment in times):
        raise GlucokitError("every time needs a time zone")
    seconds = np.array([(moment - _EPOCH).total_seconds() for moment in times])
    trace = np.asarray(values, dtype=np.float64)
    if not np.isfinite(trace).all():
        raise GlucokitError("every value must be a finite number of mg/dL")
    if (np.diff(seconds) < 0).any():
        raise GlucokitError("the times must be in order, oldest first")
    return seconds, trace


def _retime(
    seconds: FloatArray, trace: FloatArray, timing: Timing, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    shortest, longest = timing.shortest.total_seconds(), timing.longest.total_seconds()
    if not 0 < shortest <= longest:
        raise GlucokitError(f"timing needs 0 < shortest <= longest, not {timing.shortest} and {timing.longest}")
    span = seconds[-1] - seconds[0]
    steps = rng.uniform(shortest, longest, size=int(span / shortest) + 1)
    at = seconds[0] + np.concatenate([[0.0], np.cumsum(steps)])
    at = at[at <= seconds[-1]]
    jitter = timing.jitter.total_seconds()
    at = np.sort(np.clip(at + rng.uniform(-jitter, jitter, size=len(at)), seconds[0], seconds[-1]))
    # Only between two readings of the trace that are close enough: its own gaps stay gaps.
    after = np.clip(np.searchsorted(seconds, at, side="left"), 1, len(seconds) - 1)
    bridged = seconds[after] - seconds[after - 1] <= _INTERPOLATE_ACROSS
    at = at[bridged]
    return at, np.interp(at, seconds, trace)


def _noise(at: FloatArray, noise: Noise, rng: np.random.Generator) -> FloatArray:
    # Exact discretization of an Ornstein-Uhlenbeck process at irregular times:
    # e_k = r e_{k-1} + sd sqrt(1 - r^2) z_k, r = exp(-dt / memory).
    memory = noise.memory.total_seconds()
    if noise.sd < 0 or memory <= 0:
        raise GlucokitError(f"noise needs sd >= 0 and memory > 0, not {noise.sd} and {noise.memory}")
    r = np.exp(-np.diff(at, prepend=at[0]) / memory)
    z = rng.standard_normal(len(at))
    error = np.empty(len(at))
    error[0] = noise.sd * z[0]
    for k in range(1, len(at)):
        error[k] = r[k] * error[k - 1] + noise.sd * math.sqrt(1 - r[k] ** 2) * z[k]
    return error


def _drift(at: FloatArray, first: float, drift: Drift, rng: np.random.Generator) -> FloatArray:
    session = drift.session.total_seconds()
    if session <= 0:
        raise GlucokitError(f"a sensor session must be longer than 0, not {drift.session}")
    index = ((at - first) // session).astype(np.int64)
    sessions = int(index.max()) + 1
    offset = rng.normal(0.0, drift.offset_sd, sessions)
    slope = rng.normal(0.0, drift.slope_sd, sessions)
    since = (at - first - index * session) / _DAY
    bias: FloatArray = offset[index] + slope[index] * since
    return bias


def _jumps(first: float, last: float, calibration: Calibration, rng: np.random.Generator) -> list[tuple[float, float]]:
    if not 0 <= calibration.smallest <= calibration.largest:
        raise GlucokitError(
            f"calibration jumps need 0 <= smallest <= largest, not {calibration.smallest} and {calibration.largest}"
        )
    when = np.sort(rng.uniform(first, last, calibration.count))
    size = rng.uniform(calibration.smallest, calibration.largest, calibration.count)
    sign = rng.choice([-1.0, 1.0], calibration.count)
    return [(float(t), float(s * m)) for t, s, m in zip(when, sign, size, strict=True)]


def _compress(
    at: FloatArray,
    value: FloatArray,
    *,
    first: float,
    last: float,
    compression: Compression,
    rng: np.random.Generator,
    tz: tzinfo,
) -> list[tuple[float, float]]:
    """Lay compression lows into ``value`` in place; their (start, recovered) times."""
    if not 0 <= compression.night_start < compression.night_end <= 24:
        raise GlucokitError(
            "a night needs 0 <= night_start < night_end <= 24 hours,"
            f" not {compression.night_start}-{compression.night_end}"
        )
    fall, recover = compression.fall.total_seconds(), compression.recover.total_seconds()
    shortest_hold, longest_hold = (bound.total_seconds() for bound in compression.hold)
    dips = []
    day = _moment(first).astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    while (day - _EPOCH).total_seconds() <= last:
        happens, offset, held, floor = (
            rng.random(),
            rng.uniform(compression.night_start, compression.night_end) * 3600,
            rng.uniform(shortest_hold, longest_hold),
            rng.uniform(*compression.floor),
        )
        # Local midnight plus hours: a DST night is an hour shorter or longer, which moves a dip by at most that.
        start = (day - _EPOCH).total_seconds() + offset
        end = start + fall + held + recover
        day += timedelta(days=1)  # wall-clock arithmetic: the next local midnight
        if happens >= compression.per_night or start < first or end > last:
            continue
        since = at - start
        # 0 before and after, rising to 1 over the fall, 1 while held, back to 0 over the recovery.
        depth = np.clip(np.minimum(since / fall, (end - at) / recover), 0.0, 1.0)
        inside = depth > 0
        value[inside] = (1 - depth[inside]) * value[inside] + depth[inside] * np.minimum(floor, value[inside])
        dips.append((start, end))
    return dips


def _spans(first: float, last: float, gaps: Gaps, rng: np.random.Generator) -> list[tuple[float, float]]:
    shortest, longest = gaps.shortest.total_seconds(), gaps.longest.total_seconds()
    if gaps.count < 0 or not 0 < shortest <= longest:
        raise GlucokitError(f"gaps need count >= 0 and 0 < shortest <= longest, not {gaps}")
    length = np.minimum(rng.uniform(shortest, longest, gaps.count), last - first)
    start = first + rng.uniform(0.0, 1.0, gaps.count) * (last - first - length)
    return [(float(s), float(s + n)) for s, n in zip(start, length, strict=True)]


def _moment(seconds: float) -> datetime:
    # Whole milliseconds: what FHIR instants carry, so a written and reread time is the same.
    return _EPOCH + timedelta(milliseconds=round(seconds * 1000))


def _effective(entry: dict[str, Any]) -> datetime:
    text = str(entry.get("resource", {}).get("effectiveDateTime", ""))
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return _EPOCH  # an entry without a time keeps its place at the start; ingest will say what is wrong with it
