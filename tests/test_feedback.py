"""Feedback on forecast points, as real users: one per user and point, replaced on re-send, kept to the owner."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from uuid import UUID

import psycopg
import pytest

import forecast_rows
from glucokit.db.sessions import Connection, Purpose, as_user, as_worker
from owners import Owner

GENERATED_AT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

# What the API runs for "send feedback": sending again replaces the rating and comment.
SEND = """insert into public.forecast_feedback (prediction_id, person_id, rating, comment)
          values (%(prediction)s, %(person)s, %(rating)s, %(comment)s)
          on conflict (prediction_id, user_id) do update set rating = excluded.rating, comment = excluded.comment
          returning id, user_id, rating::text, comment"""

FEEDBACK = """select id, user_id, rating::text, comment, created_at, updated_at
              from public.forecast_feedback where prediction_id = %s"""


@pytest.fixture
def point(conn: Connection, owner: Owner) -> UUID:
    """One forecast point of the owner's person, written by a worker in that person's scope."""
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        model = conn.execute(
            """insert into public.ml_model (person_id, version, algorithm, data_from, data_to)
               values (%s, '1.0.0', 'ridge', %s, %s) returning id""",
            (owner.person, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 19, tzinfo=UTC)),
        ).fetchone()
        assert model is not None
        assert isinstance(model[0], UUID)
        return forecast_rows.point(conn, model[0], GENERATED_AT, 30, 120, (100, 140))


def _send(conn: Connection, owner: Owner, point: UUID, rating: str, comment: str | None = None) -> tuple[object, ...]:
    with as_user(conn, owner.user):
        row = conn.execute(
            SEND, {"prediction": point, "person": owner.person, "rating": rating, "comment": comment}
        ).fetchone()
    assert row is not None
    return row


def _seen(conn: Connection, user: UUID, point: UUID) -> list[tuple[object, ...]]:
    with as_user(conn, user):
        return conn.execute(FEEDBACK, (point,)).fetchall()


def _refused(
    conn: Connection, error: type[psycopg.Error], statement: str, params: Mapping[str, object]
) -> psycopg.Error:
    """Run statement in a rolled-back savepoint; return the error it must raise."""
    with pytest.raises(error) as raised, conn.transaction():
        conn.execute(statement.encode(), params)
    return raised.value


def test_a_user_rates_a_forecast_point_of_their_person(conn: Connection, owner: Owner, point: UUID) -> None:
    feedback_id, user_id, rating, comment = _send(conn, owner, point, "up")
    assert (user_id, rating, comment) == (owner.user, "up", None)
    ((seen_id, _, _, _, created_at, updated_at),) = _seen(conn, owner.user, point)
    assert seen_id == feedback_id
    assert created_at == updated_at


def test_sending_again_replaces_the_feedback(conn: Connection, owner: Owner, point: UUID) -> None:
    first = _send(conn, owner, point, "up", "Right on target.")
    second = _send(conn, owner, point, "down", "Too high after lunch.")
    assert second[0] == first[0]
    ((_, user_id, rating, comment, created_at, updated_at),) = _seen(conn, owner.user, point)
    assert (user_id, rating, comment) == (owner.user, "down", "Too high after lunch.")
    assert isinstance(created_at, datetime)
    assert isinstance(updated_at, datetime)
    assert updated_at > created_at


def test_a_comment_may_be_2000_characters_long(conn: Connection, owner: Owner, point: UUID) -> None:
    assert _send(conn, owner, point, "down", "x" * 2000)[3] == "x" * 2000


@pytest.mark.parametrize(
    ("rating", "comment", "error", "broken"),
    [
        ("sideways", None, psycopg.errors.InvalidTextRepresentation, None),
        ("up", "x" * 2001, psycopg.errors.CheckViolation, "forecast_feedback_comment_length"),
        ("up", "", psycopg.errors.CheckViolation, "forecast_feedback_comment_not_blank"),
        ("down", " \t\n ", psycopg.errors.CheckViolation, "forecast_feedback_comment_not_blank"),
    ],
    ids=["unknown rating", "comment too long", "empty comment", "blank comment"],
)
def test_bad_feedback_is_refused_by_the_database(
    conn: Connection,
    owner: Owner,
    point: UUID,
    rating: str,
    comment: str | None,
    error: type[psycopg.Error],
    broken: str | None,
) -> None:
    params = {"prediction": point, "person": owner.person, "rating": rating, "comment": comment}
    with as_user(conn, owner.user):
        refused = _refused(conn, error, SEND, params)
    assert refused.diag.constraint_name == broken
    assert _seen(conn, owner.user, point) == []


def test_another_user_cannot_rate_see_or_change_the_feedback(
    conn: Connection, owner: Owner, point: UUID, make_owner: Callable[[], Owner]
) -> None:
    _send(conn, owner, point, "up", "Right on target.")
    other = make_owner()
    with as_user(conn, other.user):
        # Claiming the owner's person: the policy refuses it.
        params: dict[str, object] = {"prediction": point, "person": owner.person, "rating": "down", "comment": None}
        assert "row-level security" in str(_refused(conn, psycopg.errors.InsufficientPrivilege, SEND, params))
        # Claiming their own person: the point is not one of its forecasts.
        params["person"] = other.person
        fk = _refused(conn, psycopg.errors.ForeignKeyViolation, SEND, params)
        assert fk.diag.constraint_name == "forecast_feedback_point"
        # The owner's feedback is invisible, and out of reach of update and delete.
        assert conn.execute(FEEDBACK.encode(), (point,)).fetchall() == []
        assert conn.execute("update public.forecast_feedback set rating = 'down'").rowcount == 0
        assert conn.execute("delete from public.forecast_feedback").rowcount == 0
    assert [row[2:4] for row in _seen(conn, owner.user, point)] == [("up", "Right on target.")]


def test_feedback_cannot_be_given_or_moved_in_someone_elses_name(
    conn: Connection, owner: Owner, point: UUID, make_owner: Callable[[], Owner]
) -> None:
    other = make_owner()
    spoofed = {"prediction": point, "person": owner.person, "user": other.user}
    with as_user(conn, owner.user):
        refused = _refused(
            conn,
            psycopg.errors.InsufficientPrivilege,
            """insert into public.forecast_feedback (prediction_id, person_id, user_id, rating)
               values (%(prediction)s, %(person)s, %(user)s, 'up')""",
            spoofed,
        )
        assert "row-level security" in str(refused)
    _send(conn, owner, point, "up")
    with as_user(conn, owner.user):
        # Only the rating and the comment can change.
        for column in ("user_id", "prediction_id", "person_id"):
            statement = f"update public.forecast_feedback set {column} = %(user)s where prediction_id = %(prediction)s"
            refused = _refused(conn, psycopg.errors.InsufficientPrivilege, statement, spoofed)
            assert "permission denied" in str(refused)
    assert [row[1] for row in _seen(conn, owner.user, point)] == [owner.user]


def test_the_owner_withdraws_their_feedback(conn: Connection, owner: Owner, point: UUID) -> None:
    _send(conn, owner, point, "down")
    with as_user(conn, owner.user):
        assert conn.execute("delete from public.forecast_feedback where prediction_id = %s", (point,)).rowcount == 1
    assert _seen(conn, owner.user, point) == []


def test_a_worker_reads_the_feedback_of_the_person_in_scope_only(
    conn: Connection, owner: Owner, point: UUID, make_owner: Callable[[], Owner]
) -> None:
    _send(conn, owner, point, "down", "Too high after lunch.")
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        assert conn.execute("select rating::text, comment from public.forecast_feedback").fetchall() == [
            ("down", "Too high after lunch.")
        ]
    with as_worker(conn, make_owner().person, Purpose.TRAINING, "test"):
        assert conn.execute("select count(*) from public.forecast_feedback").fetchone() == (0,)


def test_feedback_outlives_its_point_and_goes_with_its_model(conn: Connection, owner: Owner, point: UUID) -> None:
    # A point expires with its day's partition (retention); the feedback on it, and its model's summary, stay.
    _send(conn, owner, point, "up")
    with conn.transaction():
        conn.execute("delete from public.prediction where id = %s", (point,))
    with as_user(conn, owner.user):
        assert conn.execute(
            "select thumbs_up, thumbs_down from public.model_feedback_summary where person_id = %s", (owner.person,)
        ).fetchall() == [(1, 0)]
    with conn.transaction():
        conn.execute("delete from public.ml_model where person_id = %s", (owner.person,))
        assert conn.execute(
            "select count(*) from public.forecast_feedback where prediction_id = %s", (point,)
        ).fetchone() == (0,)
