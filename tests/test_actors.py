"""The actors a Supabase project really has (migration 20261206150000): anonymous sign-ins store no health data,
and consent changes and erasure need a second factor (aal2), on every path into the database."""

from __future__ import annotations

from uuid import uuid4

import psycopg
import pytest

from glucokit.db.sessions import Connection, Purpose, as_role, user_claims
from glucokit.privacy import rights
from glucokit.tooling import policies

pytestmark = pytest.mark.full_schema

WORLD = policies.probe_world("actors")


def _claims(aal: str, *, anonymous: bool = False) -> dict[str, object]:
    return {**user_claims(WORLD.a.user), "aal": aal, "is_anonymous": anonymous}


def _seeded(conn: Connection) -> None:
    for statement in policies.world_statements(WORLD):
        conn.execute(statement)


def test_an_anonymous_user_cannot_create_a_person(conn: Connection) -> None:
    with conn.transaction(force_rollback=True):
        _seeded(conn)
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege),
            as_role(conn, "authenticated", _claims("aal1", anonymous=True)),
        ):
            conn.execute("insert into public.person (id, owner_id) values (%s, %s)", (uuid4(), WORLD.a.user))


def test_consent_changes_need_a_second_factor(conn: Connection) -> None:
    with conn.transaction(force_rollback=True):
        _seeded(conn)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(conn, "authenticated", _claims("aal1")):
            conn.execute("update public.consent set withdrawn_at = now() where person_id = %s", (WORLD.a.person,))
        with as_role(conn, "authenticated", _claims("aal2")):
            changed = conn.execute(
                "update public.consent set withdrawn_at = now() where person_id = %s", (WORLD.a.person,)
            ).rowcount
        assert changed == 2


@pytest.mark.parametrize(
    ("statement", "policy"),
    [
        ("insert into public.consent (person_id, purpose) values (%s, 'pattern_search')", "given"),
        ("update public.consent set withdrawn_at = now() where person_id = %s", "changed"),
    ],
)
def test_the_data_apis_answer_to_a_consent_change_at_aal1(conn: Connection, statement: str, policy: str) -> None:
    # What PostgREST passes on (403 with the SQLSTATE and message): the restrictive policy names the second factor.
    with conn.transaction(force_rollback=True):
        _seeded(conn)
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege) as refused,
            as_role(conn, "authenticated", _claims("aal1")),
        ):
            conn.execute(statement.encode(), (WORLD.a.person,))
    assert refused.value.sqlstate == "42501"
    assert str(refused.value) == (
        f'new row violates row-level security policy "Consent is {policy} with a second factor" for table "consent"'
    )


def test_erasure_at_aal1_erases_nothing(conn: Connection) -> None:
    with conn.transaction(force_rollback=True):
        _seeded(conn)
        with as_role(conn, "authenticated", _claims("aal1")):
            erased = conn.execute("delete from public.person where id = %s", (WORLD.a.person,)).rowcount
        assert erased == 0


def test_the_operators_cli_acts_with_the_second_factor(conn: Connection) -> None:
    with conn.transaction(force_rollback=True):
        _seeded(conn)
        records = rights.grant(conn, WORLD.a.user, WORLD.a.person, [Purpose.PATTERN_SEARCH])
        assert Purpose.PATTERN_SEARCH in {record.purpose for record in records if record.in_force}
