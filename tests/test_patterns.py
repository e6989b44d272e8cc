"""Day patterns against the real database: the profile embedding, the worker that writes it in scope, and
"days like this one" for the owner only (library, API and command line)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from uuid import uuid4
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from api_fixtures import SECRET, bearer, is_problem, token
from glucokit.api import ApiSettings, TokenVerifier, create_app
from glucokit.cli.main import main
from glucokit.db.queries import query
from glucokit.db.sessions import Connection, as_anon, as_user, as_worker
from glucokit.jobs import pattern_job
from glucokit.modelops import patterns
from glucokit.modelops.patterns import (
    SLOTS,
    DayPattern,
    SkippedDay,
    day_pattern,
    day_patterns,
    similar_days,
    vector_text,
)
from glucokit.privacy import rights
from glucokit.privacy.consent import Purpose
from owners import Owner

pytestmark = pytest.mark.full_schema

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def profile(shift: int) -> list[float]:
    """A day's half-hour values in mg/dL: one wave a day, its peak moved by ``shift`` slots."""
    return [round(130 + 50 * math.sin(2 * math.pi * (slot + shift) / SLOTS), 1) for slot in range(SLOTS)]


def readings(day: date, tz: ZoneInfo, values: Sequence[float], *, missing: range = range(0)) -> list[
    tuple[datetime, float]
]:  # fmt: skip
    """A reading every 5 minutes of the local day, each at its half-hour slot's value, none in ``missing`` slots."""
    start = datetime.combine(day, time(), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)
    found = []
    at = start
    while at < end:
        local = at.astimezone(tz)
        slot = (local.hour * 60 + local.minute) // 30
        if slot not in missing:
            found.append((at, values[slot]))
        at += timedelta(minutes=5)
    return found


def test_a_day_is_its_half_hour_means_in_local_time() -> None:
    day = date(2026, 11, 10)
    values = profile(0)
    found = day_pattern(day, readings(day, BERLIN, values), BERLIN)
    assert isinstance(found, DayPattern)
    assert found.embedding.dtype == np.float32
    assert found.embedding.tolist() == pytest.approx(values, abs=1e-4)
    assert (found.readings, found.filled_slots) == (288, 0)
    # Read in UTC, an hour behind Berlin in November, the same readings fall two slots earlier.
    shifted = day_pattern(day, readings(day, BERLIN, values), ZoneInfo("UTC"))
    assert isinstance(shifted, DayPattern)
    assert shifted.embedding.tolist() == pytest.approx(np.roll(values, -2).tolist(), abs=1e-4)


def test_short_gaps_are_filled_and_the_day_keeps_its_slots() -> None:
    day = date(2026, 11, 10)
    values = profile(7)
    found = day_pattern(day, readings(day, BERLIN, values, missing=range(12, 14)), BERLIN)
    assert isinstance(found, DayPattern)
    assert found.filled_slots == 2
    assert found.readings == 276
    assert (found.embedding[11], found.embedding[14]) == pytest.approx((values[11], values[14]), abs=1e-4)
    assert found.embedding[12] == pytest.approx(values[11] + (values[14] - values[11]) / 3, abs=1e-4)
    # At the edge of the day the nearest slot's value stands in.
    edge = day_pattern(day, readings(day, BERLIN, values, missing=range(0, 2)), BERLIN)
    assert isinstance(edge, DayPattern)
    assert edge.embedding[:3].tolist() == pytest.approx([values[2]] * 3, abs=1e-4)


def test_days_with_long_gaps_or_too_few_readings_are_skipped_with_the_reason() -> None:
    day = date(2026, 11, 10)
    gap = day_pattern(day, readings(day, BERLIN, profile(0), missing=range(12, 15)), BERLIN)
    assert gap == SkippedDay(day, "no readings from 06:00 to 07:30; gaps of at most 60 minutes are filled")
    sparse = readings(day, BERLIN, profile(0))[::2]
    assert day_pattern(day, sparse, BERLIN) == SkippedDay(
        day, "144 readings of the 288 a day of 24 hours has; at least 70% are needed"
    )


def test_days_are_as_long_as_the_clock_says() -> None:
    spring, autumn = date(2026, 3, 29), date(2026, 10, 25)  # Berlin: 23 and 25 hours
    short = day_pattern(spring, readings(spring, BERLIN, profile(0)), BERLIN)
    assert isinstance(short, DayPattern)
    assert (short.readings, short.filled_slots) == (276, 2)  # 02:00-03:00 never happened
    long = day_pattern(autumn, readings(autumn, BERLIN, profile(0)), BERLIN)
    assert isinstance(long, DayPattern)
    assert (long.readings, long.filled_slots) == (300, 0)  # 02:00-03:00 twice, in the same slots
    assert long.embedding.tolist() == pytest.approx(profile(0), abs=1e-4)


def test_days_between_readings_and_days_not_ended_are_handled() -> None:
    first, last = date(2026, 11, 1), date(2026, 11, 4)
    data = readings(first, BERLIN, profile(0)) + readings(last, BERLIN, profile(3))
    found, skipped = day_patterns(data, BERLIN, until=last)
    assert [pattern.day for pattern in found] == [first]
    assert skipped == [SkippedDay(date(2026, 11, 2), "no readings"), SkippedDay(date(2026, 11, 3), "no readings")]


# -----------------------------------------------------------------------------
# In the database
# -----------------------------------------------------------------------------
def _store(conn: Connection, owner: Owner, data: Sequence[tuple[datetime, float]]) -> None:
    """CGM readings of the owner's person, stored as the owner."""
    with as_user(conn, owner.user):
        conn.execute(
            """insert into public.observation (person_id, code, value, unit, effective_at, source_system, source_id)
               select %s, '99504-3', r.value, 'mg/dL', r.at, 'urn:test', 'reading-' || r.n
               from unnest(%s::timestamptz[], %s::numeric[]) with ordinality as r(at, value, n)""",
            (owner.person, [at for at, _ in data], [value for _, value in data]),
        )


def _local_today(conn: Connection, owner: Owner, tz: str) -> date:
    with as_user(conn, owner.user):
        conn.execute("update public.person set time_zone = %s where id = %s", (tz, owner.person))
        row = conn.execute("select (now() at time zone %s)::date", (tz,)).fetchone()
    assert row is not None
    assert isinstance(row[0], date)
    return row[0]


def _stored(conn: Connection, owner: Owner) -> dict[object, tuple[object, ...]]:
    """The person's stored days as the owner reads them: day -> (embedding, readings, filled slots)."""
    with as_user(conn, owner.user):
        rows = conn.execute(
            "select day, embedding::text, readings, filled_slots from public.day_pattern where person_id = %s",
            (owner.person,),
        ).fetchall()
    return {day: ([float(v) for v in str(text)[1:-1].split(",")], n, filled) for day, text, n, filled in rows}


def test_the_worker_computes_the_persons_ended_days(conn: Connection, owner: Owner) -> None:
    today = _local_today(conn, owner, "America/New_York")
    first, gap, last = (today - timedelta(days=n) for n in (3, 2, 1))
    _store(
        conn, owner,
        readings(first, NEW_YORK, profile(0))
        + readings(gap, NEW_YORK, profile(5), missing=range(12, 17))
        + readings(last, NEW_YORK, profile(9), missing=range(10, 11)),
    )  # fmt: skip
    assert owner.person in pattern_job.due_persons(conn, None, limit=100_000)

    done = patterns.refresh(conn, owner.person)
    assert (done.written, done.removed) == ([first, last], 0)
    assert done.skipped == [SkippedDay(gap, "no readings from 06:00 to 08:30; gaps of at most 60 minutes are filled")]
    stored = _stored(conn, owner)
    assert stored[first] == (pytest.approx(profile(0), abs=1e-4), 288, 0)
    expected = profile(9)
    expected[10] = (expected[9] + expected[11]) / 2
    assert stored[last] == (pytest.approx(expected, abs=1e-4), 282, 1)
    assert owner.person not in pattern_job.due_persons(conn, None, limit=100_000)
    assert patterns.refresh(conn, owner.person).written == []  # nothing new since

    # Readings withdrawn: a full refresh recomputes every day and removes the one that no longer qualifies.
    with as_user(conn, owner.user):
        conn.execute(
            "update public.observation set status = 'entered-in-error' where person_id = %s and effective_at < %s",
            (owner.person, datetime.combine(first, time(12), NEW_YORK)),
        )
    done = patterns.refresh(conn, owner.person, full=True)
    assert (done.written, done.removed) == ([last], 1)
    assert set(_stored(conn, owner)) == {last}


def test_a_person_without_consent_to_pattern_search_is_refused(conn: Connection, owner: Owner) -> None:
    today = _local_today(conn, owner, "UTC")
    _store(conn, owner, readings(today - timedelta(days=1), ZoneInfo("UTC"), profile(0)))
    rights.withdraw(conn, owner.user, owner.person, [Purpose.PATTERN_SEARCH])
    assert owner.person not in pattern_job.due_persons(conn, None, limit=100_000)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="has not consented to pattern_search"):
        patterns.refresh(conn, owner.person)
    assert _stored(conn, owner) == {}


def _write(conn: Connection, owner: Owner, embeddings: dict[date, np.ndarray]) -> None:
    """Day patterns of the owner's person, written by a worker in that person's scope."""
    with as_worker(conn, owner.person, Purpose.PATTERN_SEARCH, "test"):
        conn.execute(
            query("patterns_upsert"),
            {
                "person_id": owner.person, "source": patterns.SOURCE, "days": list(embeddings),
                "embeddings": [vector_text(e) for e in embeddings.values()],
                "readings": [288] * len(embeddings), "filled_slots": [0] * len(embeddings),
            },
        )  # fmt: skip


def test_the_worker_writes_only_the_person_in_scope(conn: Connection, make_owner: Callable[[], Owner]) -> None:
    alice, bob = make_owner(), make_owner()
    day = date(2026, 11, 1)
    _write(conn, alice, {day: np.full(SLOTS, 100, np.float32)})
    _write(conn, bob, {day: np.full(SLOTS, 120, np.float32)})
    theirs = {
        "person_id": alice.person,
        "source": patterns.SOURCE,
        "days": [day + timedelta(days=1)],
        "embeddings": [vector_text(np.full(SLOTS, 90, np.float32))],
        "readings": [288],
        "filled_slots": [0],
    }
    count = "select count(*) from public.day_pattern where person_id = %s"
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_worker(conn, None):
        conn.execute(query("patterns_upsert"), theirs)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_worker(conn, bob.person, Purpose.PATTERN_SEARCH, "t"):
        conn.execute(query("patterns_upsert"), theirs)
    with as_worker(conn, bob.person, Purpose.PATTERN_SEARCH, "test"):
        assert conn.execute(count, (alice.person,)).fetchone() == (0,)
        assert (
            conn.execute(query("patterns_remove"), {"person_id": alice.person, "from": None, "keep": []}).rowcount == 0
        )
        assert (
            conn.execute("update public.day_pattern set readings = 1 where person_id = %s", (alice.person,)).rowcount
            == 0
        )
    with as_worker(conn, None):
        assert conn.execute("select count(*) from public.day_pattern").fetchone() == (0,)
    assert _stored(conn, alice) == {day: ([100.0] * SLOTS, 288, 0)}
    assert set(_stored(conn, bob)) == {day}


@pytest.fixture
def days(conn: Connection, make_owner: Callable[[], Owner]) -> tuple[Owner, Owner, dict[date, np.ndarray]]:
    """Alice with 60 day patterns, Bob with 5 days of his own that lie right next to hers."""
    alice, bob = make_owner(), make_owner()
    rng = np.random.default_rng(7)
    first = date(2026, 9, 1)
    embeddings = {first + timedelta(days=n): rng.normal(140, 30, SLOTS).astype(np.float32) for n in range(60)}
    _write(conn, alice, embeddings)
    _write(conn, bob, {first + timedelta(days=n): embeddings[first] + n for n in range(5)})
    return alice, bob, embeddings


def _exact(embeddings: dict[date, np.ndarray], day: date, k: int) -> list[tuple[date, float]]:
    own = embeddings[day].astype(np.float64)
    distances = {
        other: float(np.sqrt(((e.astype(np.float64) - own) ** 2).mean()))
        for other, e in embeddings.items()
        if other != day
    }
    return sorted(distances.items(), key=lambda item: (item[1], item[0]))[:k]


def test_similar_days_are_the_owners_own_nearest_days_in_order(
    conn: Connection, days: tuple[Owner, Owner, dict[date, np.ndarray]]
) -> None:
    alice, _, embeddings = days
    for day in list(embeddings)[::15]:
        with as_user(conn, alice.user):
            found = similar_days(conn, alice.person, day, limit=10)
        assert found is not None
        expected = _exact(embeddings, day, 10)
        assert [similar.day for similar in found] == [other for other, _ in expected]
        assert [similar.rms_difference_mg_dl for similar in found] == pytest.approx([d for _, d in expected], rel=1e-5)
        assert {(similar.readings, similar.filled_slots) for similar in found} == {(288, 0)}


def test_nobody_else_sees_a_persons_days(conn: Connection, days: tuple[Owner, Owner, dict[date, np.ndarray]]) -> None:
    alice, bob, embeddings = days
    day = next(iter(embeddings))
    with as_user(conn, bob.user):
        assert similar_days(conn, alice.person, day) is None
        assert conn.execute(
            "select count(*) from public.day_pattern where person_id = %s", (alice.person,)
        ).fetchone() == (0,)
        bobs = similar_days(conn, bob.person, day)
    assert bobs is not None
    assert len(bobs) == 4  # only his own days, though Alice's lie as near
    with as_user(conn, alice.user):
        assert similar_days(conn, alice.person, date(2020, 1, 1)) is None  # no pattern that day
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_anon(conn):
        conn.execute("select count(*) from public.day_pattern")


def test_the_api_answers_the_owner_and_nobody_else(
    database_url: str, days: tuple[Owner, Owner, dict[date, np.ndarray]]
) -> None:
    alice, bob, embeddings = days
    day = next(iter(embeddings))
    app = create_app(ApiSettings(database_url, TokenVerifier(secret=SECRET), pool_size=1))
    with TestClient(app) as client:
        response = client.get(
            f"/v1/persons/{alice.person}/days/{day}/similar?limit=3", headers=bearer(token(alice.user))
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["person_id"], body["day"]) == (str(alice.person), day.isoformat())
        assert [item["day"] for item in body["days"]] == [other.isoformat() for other, _ in _exact(embeddings, day, 3)]
        missing = uuid4()
        theirs = is_problem(
            client.get(f"/v1/persons/{alice.person}/days/{day}/similar", headers=bearer(token(bob.user))), 404
        )
        absent = is_problem(
            client.get(f"/v1/persons/{missing}/days/{day}/similar", headers=bearer(token(bob.user))), 404
        )
        assert theirs["detail"].replace(str(alice.person), "X") == absent["detail"].replace(str(missing), "X")
        no_day = is_problem(
            client.get(f"/v1/persons/{alice.person}/days/2020-01-01/similar", headers=bearer(token(alice.user))), 404
        )
        assert no_day["detail"] == f"person {alice.person} has no day pattern for 2020-01-01"
        is_problem(
            client.get(f"/v1/persons/{alice.person}/days/{day}/similar?limit=101", headers=bearer(token(alice.user))),
            422,
        )
        is_problem(
            client.get(f"/v1/persons/{alice.person}/days/{day}/similar", headers=bearer(token(None, role="anon"))), 401
        )
        assert "/v1/persons/{person_id}/days/{day}/similar" in client.get("/openapi.json").json()["paths"]


def test_the_command_line_computes_and_finds_similar_days(
    database_url: str, conn: Connection, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    today = _local_today(conn, owner, "UTC")
    utc = ZoneInfo("UTC")
    _store(conn, owner, [r for n in range(1, 5) for r in readings(today - timedelta(days=n), utc, profile(n))])
    common = ["--person", str(owner.person), "--database-url", database_url]
    assert main(["patterns", "compute", *common]) == 0
    assert f"person {owner.person}: 4 day(s) written, 0 skipped, 0 removed" in capsys.readouterr().out
    assert main(["patterns", "similar", *common, "--day", str(today - timedelta(days=1)), "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == [str(today - timedelta(days=2)), str(today - timedelta(days=3))]
    assert main(["patterns", "similar", *common, "--day", str(today)]) == 5
    assert "has no day pattern for" in capsys.readouterr().err
