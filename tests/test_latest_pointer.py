"""private.latest_forecast: the pointer public.latest_forecast reads a person's newest forecast from.

The statement triggers on public.forecast keep it at the newest origin (by generated_at, then created_at):
inserts move it forward only, deletes move it back to the newest forecast left, and a new owner of the
person takes it over. The RPC's answer is checked against the same order taken over the table itself.

The pointer also carries what the RPC shows (migration 20261207100000): the forecast's provenance (with the
number of observations it was computed from, as its writer recorded it) and its points. ``_from_tables``
computes that answer from the tables themselves, and the tests compare it with the RPC's after every kind of
write: points in their forecast's statement and after it, deletes, privileged updates (retention:
tests/test_retention.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from forecast_rows import point
from glucokit.db.sessions import Connection, as_user
from owners import Owner

ORIGIN = datetime(2026, 1, 11, 8, 0, tzinfo=UTC)


def _model(conn: Connection, person: UUID, version: str) -> UUID:
    row = conn.execute(
        "insert into public.ml_model (person_id, version, algorithm, data_from, data_to) "
        "values (%s, %s, 'ridge', '2026-01-01', '2026-01-10') returning id",
        (person, version),
    ).fetchone()
    assert row is not None
    return UUID(str(row[0]))


def _curve(conn: Connection, model: UUID, generated_at: datetime, value: float) -> None:
    for horizon in (5, 10):
        point(conn, model, generated_at, horizon, value, (value - 10, value + 10))


# The RPC's answer computed from the tables (as public.latest_forecast read it before the pointer carried it).
FROM_TABLES = """
select p.id, f.id, p.person_id, p.generated_at, p.target_at, p.horizon_minutes, p.value_mg_dl, p.lower_mg_dl,
  p.upper_mg_dl, f.coverage, f.disclaimer_version, private.disclaimer_text(f.disclaimer_version, 'en'), f.model_id,
  f.model_version, f.training_run_id, f.data_from, f.data_to, f.code_version, f.source_count
from public.forecast f
join public.prediction p on p.forecast_id = f.id and p.generated_at = f.generated_at
where (f.id, f.generated_at) = (
  select n.id, n.generated_at from public.forecast n where n.person_id = %(person)s
  order by n.generated_at desc, n.created_at desc limit 1
)
order by p.horizon_minutes
"""


def _from_tables(conn: Connection, person: UUID) -> list[tuple[object, ...]]:
    with conn.transaction():
        return conn.execute(FROM_TABLES, {"person": person}).fetchall()


def _rpc(conn: Connection, owner: Owner) -> list[tuple[object, ...]]:
    with as_user(conn, owner.user):
        return conn.execute("select * from public.latest_forecast(%s)", (owner.person,)).fetchall()


def _latest(conn: Connection, owner: Owner) -> list[tuple[object, ...]]:
    with as_user(conn, owner.user):
        return conn.execute(
            "select model_id, generated_at, horizon_minutes, value_mg_dl from public.latest_forecast(%s)",
            (owner.person,),
        ).fetchall()


def _newest_in_table(conn: Connection, person: UUID) -> tuple[object, ...] | None:
    with conn.transaction():
        return conn.execute(
            "select id, generated_at from public.forecast where person_id = %s "
            "order by generated_at desc, created_at desc limit 1",
            (person,),
        ).fetchone()


def _pointer(conn: Connection, person: UUID) -> tuple[object, ...] | None:
    with conn.transaction():
        return conn.execute(
            "select forecast_id, generated_at from private.latest_forecast where person_id = %s", (person,)
        ).fetchone()


def test_the_pointer_moves_forward_only(conn: Connection, owner: Owner) -> None:
    model = _model(conn, owner.person, "1.0.0")
    _curve(conn, model, ORIGIN, 120)
    _curve(conn, model, ORIGIN + timedelta(minutes=5), 130)
    _curve(conn, model, ORIGIN - timedelta(hours=1), 90)  # a late write of an older origin
    conn.commit()

    assert _pointer(conn, owner.person) == _newest_in_table(conn, owner.person)
    assert _latest(conn, owner) == [
        (model, ORIGIN + timedelta(minutes=5), 5, 130.0),
        (model, ORIGIN + timedelta(minutes=5), 10, 130.0),
    ]


def test_of_two_models_at_one_origin_the_later_written_is_the_latest(conn: Connection, owner: Owner) -> None:
    first = _model(conn, owner.person, "1.0.0")
    _curve(conn, first, ORIGIN, 120)
    conn.commit()
    second = _model(conn, owner.person, "1.1.0")
    _curve(conn, second, ORIGIN, 140)
    conn.commit()

    assert _pointer(conn, owner.person) == _newest_in_table(conn, owner.person)
    assert {row[0] for row in _latest(conn, owner)} == {second}


def test_deleting_the_newest_forecasts_moves_the_pointer_back(conn: Connection, owner: Owner) -> None:
    older = _model(conn, owner.person, "1.0.0")
    _curve(conn, older, ORIGIN, 120)
    newer = _model(conn, owner.person, "1.1.0")
    _curve(conn, newer, ORIGIN + timedelta(minutes=5), 140)
    conn.commit()
    assert {row[0] for row in _latest(conn, owner)} == {newer}

    conn.execute("delete from public.forecast where model_id = %s", (newer,))
    conn.commit()
    assert _pointer(conn, owner.person) == _newest_in_table(conn, owner.person)
    assert _rpc(conn, owner) == _from_tables(conn, owner.person)
    assert [row[:2] for row in _latest(conn, owner)] == [(older, ORIGIN), (older, ORIGIN)]

    conn.execute("delete from public.forecast where model_id = %s", (older,))
    conn.commit()
    assert _pointer(conn, owner.person) is None
    assert _latest(conn, owner) == []


def test_the_new_owner_of_a_person_takes_the_pointer_over(conn: Connection, make_owner: Callable[[], Owner]) -> None:
    owner, other = make_owner(), make_owner()
    model = _model(conn, owner.person, "1.0.0")
    _curve(conn, model, ORIGIN, 120)
    conn.commit()
    assert _latest(conn, Owner(other.user, owner.person)) == []

    conn.execute("update public.person set owner_id = %s where id = %s", (other.user, owner.person))
    conn.commit()
    assert len(_latest(conn, Owner(other.user, owner.person))) == 2
    assert _latest(conn, owner) == []
    with as_user(conn, owner.user):
        assert conn.execute("select count(*) from private.latest_forecast").fetchone() == (0,)


def test_the_pointer_carries_the_curve_whatever_the_order_of_the_writes(conn: Connection, owner: Owner) -> None:
    model = _model(conn, owner.person, "1.0.0")
    # A forecast row alone (with the count of observations its writer used), then its points, each its own
    # statement and out of order.
    conn.execute(
        "insert into public.forecast (person_id, owner_id, model_id, generated_at, coverage, disclaimer_version,"
        " model_version, data_from, data_to, code_version, source_count) values (%s, %s, %s, %s, 0.8, 'v1',"
        " '1.0.0', '2026-01-01', '2026-01-10', 'test', 6)",
        (owner.person, owner.user, model, ORIGIN),
    )
    conn.commit()
    assert _rpc(conn, owner) == _from_tables(conn, owner.person) == []
    for horizon in (15, 5, 10):
        point(conn, model, ORIGIN, horizon, 100 + horizon, (90, 130))
        conn.commit()
        assert _rpc(conn, owner) == _from_tables(conn, owner.person)
    latest = _rpc(conn, owner)
    assert [row[5] for row in latest] == [5, 10, 15]
    assert {row[18] for row in latest} == {6}

    # Points written with their forecast in one statement (as the writer does) are there too.
    _curve(conn, model, ORIGIN + timedelta(minutes=5), 140)
    conn.commit()
    assert [row[6] for row in _rpc(conn, owner)] == [140.0, 140.0]
    assert _rpc(conn, owner) == _from_tables(conn, owner.person)


def test_removed_points_and_changed_forecasts_are_refilled(conn: Connection, owner: Owner) -> None:
    model = _model(conn, owner.person, "1.0.0")
    _curve(conn, model, ORIGIN, 120)
    conn.commit()
    assert _rpc(conn, owner) == _from_tables(conn, owner.person)

    # Privileged paths (the table owner here; service_role may do the same).
    conn.execute("delete from public.prediction where person_id = %s and horizon_minutes = 10", (owner.person,))
    conn.commit()
    assert [row[5] for row in _rpc(conn, owner)] == [5]
    conn.execute("update public.forecast set coverage = 0.9, source_count = 3 where person_id = %s", (owner.person,))
    conn.execute("update public.prediction set value_mg_dl = 125 where person_id = %s", (owner.person,))
    conn.commit()
    latest = _rpc(conn, owner)
    assert latest == _from_tables(conn, owner.person)
    assert [(row[6], round(float(str(row[9])), 6), row[18]) for row in latest] == [(125.0, 0.9, 3)]
