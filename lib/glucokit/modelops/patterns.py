"""Day patterns: each local day of a person as a glucose profile, and the person's days most like one of theirs.

The embedding (``profile-v1``) of a day is its 48 half-hour mean glucose
values in mg/dL, from local midnight in the person's time zone
(``person.time_zone``), computed from the day's valid CGM readings:

- a reading belongs to the half-hour slot its local clock time falls in (on
  the day clocks go back, the repeated hour's readings share their slots);
- a day qualifies when its readings cover at least ``MIN_COVERAGE`` of the
  readings a sensor reporting every ``READING_MINUTES`` would give over the
  day's real length (23, 24 or 25 hours), and no run of empty slots is longer
  than ``MAX_FILLED_SLOTS``;
- empty slots are filled by linear interpolation between their neighbours, or
  with the nearest slot's value at the start or end of the day;
- only days that have ended (local midnight has passed) are computed.

Days that do not qualify are skipped, each with its reason. Days are compared by
Euclidean distance; divided by sqrt(48) it is the root mean square difference of
the two profiles in mg/dL, which is what ``similar_days`` reports.

Workers write the patterns in the person's scope for ``Purpose.PATTERN_SEARCH``
(``refresh``; the pattern job, ``jobs.pattern_job``, refreshes every person
due); the signed-in owner reads them (``similar_days``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Final
from uuid import UUID
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from psycopg.rows import class_row

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, as_worker
from glucokit.fhir.validation import cgm_filter
from glucokit.privacy.consent import Purpose

SOURCE: Final = "profile-v1"
SLOT_MINUTES: Final = 30
SLOTS: Final = 24 * 60 // SLOT_MINUTES  # the dimension of public.day_pattern.embedding
READING_MINUTES: Final = 5
MIN_COVERAGE: Final = 0.7
MAX_FILLED_SLOTS: Final = 2  # one hour
MAX_SIMILAR: Final = 100  # the most similar days one request returns

Profile = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DayPattern:
    day: date
    embedding: Profile
    readings: int
    filled_slots: int


@dataclass(frozen=True)
class SkippedDay:
    day: date
    reason: str


def _clock(slot: int) -> str:
    minutes = slot * SLOT_MINUTES
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _empty_runs(filled: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """The runs of empty slots as (first, end) slot indices."""
    runs, start = [], None
    for slot, has_value in enumerate([*filled.tolist(), True]):
        if not has_value and start is None:
            start = slot
        elif has_value and start is not None:
            runs.append((start, slot))
            start = None
    return runs


def day_pattern(day: date, readings: Sequence[tuple[datetime, float]], tz: ZoneInfo) -> DayPattern | SkippedDay:
    """The profile of one local day from its readings (local times in ``tz``, mg/dL), or why it has none."""
    start = datetime.combine(day, time(), tz)
    length = datetime.combine(day + timedelta(days=1), time(), tz) - start
    expected = round(length / timedelta(minutes=READING_MINUTES))
    if len(readings) < MIN_COVERAGE * expected:
        return SkippedDay(
            day,
            f"{len(readings)} readings of the {expected} a day of {length / timedelta(hours=1):.0f} hours has; "
            f"at least {MIN_COVERAGE:.0%} are needed",
        )
    sums, counts = np.zeros(SLOTS), np.zeros(SLOTS)
    for at, value in readings:
        local = at.astimezone(tz)
        slot = (local.hour * 60 + local.minute) // SLOT_MINUTES
        sums[slot] += value
        counts[slot] += 1
    filled = counts > 0
    for first, end in _empty_runs(filled):
        if end - first > MAX_FILLED_SLOTS:
            return SkippedDay(
                day,
                f"no readings from {_clock(first)} to {_clock(end)}; "
                f"gaps of at most {MAX_FILLED_SLOTS * SLOT_MINUTES} minutes are filled",
            )
    slots = np.arange(SLOTS)
    means = sums[filled] / counts[filled]
    profile = np.interp(slots, slots[filled], means).astype(np.float32)
    return DayPattern(day, profile, readings=len(readings), filled_slots=int(SLOTS - filled.sum()))


def day_patterns(
    readings: Sequence[tuple[datetime, float]], tz: ZoneInfo, until: date
) -> tuple[list[DayPattern], list[SkippedDay]]:
    """The patterns of the local days from the first reading's to the last reading's, before ``until``, and the
    days skipped with their reasons (a day without readings among them too), in day order."""
    by_day: defaultdict[date, list[tuple[datetime, float]]] = defaultdict(list)
    for at, value in readings:
        by_day[at.astimezone(tz).date()].append((at, value))
    patterns: list[DayPattern] = []
    skipped: list[SkippedDay] = []
    if not by_day:
        return patterns, skipped
    day, last = min(by_day), min(max(by_day), until - timedelta(days=1))
    while day <= last:
        found = day_pattern(day, by_day[day], tz) if day in by_day else SkippedDay(day, "no readings")
        if isinstance(found, DayPattern):
            patterns.append(found)
        else:
            skipped.append(found)
        day += timedelta(days=1)
    return patterns, skipped


def vector_text(profile: Profile) -> str:
    """A profile as pgvector's text form, each float32 written so that it reads back exactly."""
    return "[" + ",".join(np.format_float_positional(value, unique=True, trim="-") for value in profile) + "]"


@dataclass
class Refresh:
    """What computing one person's day patterns did."""

    person_id: UUID
    written: list[date] = field(default_factory=list)
    skipped: list[SkippedDay] = field(default_factory=list)
    removed: int = 0

    def summary(self) -> str:
        return (
            f"person {self.person_id}: {len(self.written)} day(s) written, {len(self.skipped)} skipped, "
            f"{self.removed} removed"
        )


def refresh(conn: Connection, person_id: UUID, *, full: bool = False, reason: str = "day patterns") -> Refresh:
    """Compute the person's ended local days, in the person's scope for pattern search (one transaction).

    By default only the days after the newest stored pattern; ``full`` recomputes every day and removes
    the patterns of days that no longer qualify (after readings were corrected or withdrawn)."""
    report = Refresh(person_id)
    with as_worker(conn, person_id, Purpose.PATTERN_SEARCH, reason):
        row = conn.execute(query("patterns_person"), {"person_id": person_id}).fetchone()
        assert row is not None  # the scope exists only for an existing person
        tz_name, today, newest = row
        assert isinstance(tz_name, str)
        assert isinstance(today, date)
        tz = ZoneInfo(tz_name)
        first = None if full or not isinstance(newest, date) else newest + timedelta(days=1)
        readings = conn.execute(
            query("patterns_readings"),
            {
                "person_id": person_id, **cgm_filter(),
                "since": None if first is None else datetime.combine(first, time(), tz),
                "until": datetime.combine(today, time(), tz),
            },
        ).fetchall()  # fmt: skip
        patterns, report.skipped = day_patterns(
            [(at, float(str(value))) for at, value in readings if isinstance(at, datetime)], tz, today
        )
        days = [pattern.day for pattern in patterns]
        if patterns:
            conn.execute(
                query("patterns_upsert"),
                {
                    "person_id": person_id, "source": SOURCE, "days": days,
                    "embeddings": [vector_text(pattern.embedding) for pattern in patterns],
                    "readings": [pattern.readings for pattern in patterns],
                    "filled_slots": [pattern.filled_slots for pattern in patterns],
                },
            )  # fmt: skip
        report.written = days
        removed = conn.execute(query("patterns_remove"), {"person_id": person_id, "from": first, "keep": days})
        report.removed = removed.rowcount
    return report


@dataclass(frozen=True)
class SimilarDay:
    day: date
    rms_difference_mg_dl: float
    readings: int
    filled_slots: int


def similar_days(conn: Connection, person_id: UUID, day: date, limit: int = 10) -> list[SimilarDay] | None:
    """In a user's transaction: the person's ``limit`` days whose profiles are nearest to ``day``'s, nearest
    first (ties by day); None when the user sees no pattern of that day (no such person, not theirs, or a day
    without one). Exact: the person's days are few, so all of them are compared (docs/patterns.md)."""
    with conn.cursor(row_factory=class_row(SimilarDay)) as cursor:
        found = cursor.execute(
            query("patterns_similar"),
            {"person_id": person_id, "day": day, "limit": limit, "scale": math.sqrt(SLOTS)},
        ).fetchall()
    if found or conn.execute(query("patterns_day"), {"person_id": person_id, "day": day}).fetchone():
        return found
    return None
