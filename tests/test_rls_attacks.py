"""Attempts to get around the policies: forged rows, ownership changes, scope and claim tricks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql

from glucokit.db import sessions
from glucokit.db.sessions import Connection, Purpose
from glucokit.tooling.policies import ProbePerson, ProbeWorld


def _refused(conn: Connection, statement: str, params: tuple[object, ...] | dict[str, object] = ()) -> str:
    """Run statement in a rolled-back savepoint; return the error message it must raise (42501)."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as raised, conn.transaction():
        conn.execute(statement.encode(), params)
    return str(raised.value)


@pytest.mark.parametrize("who", ["a", "b"], ids=["owner gives it away", "other user takes it"])
def test_nobody_can_move_a_person_to_another_owner(conn: Connection, world: ProbeWorld, who: str) -> None:
    actor = getattr(world, who)
    with conn.transaction(force_rollback=True), sessions.as_user(conn, actor.user):
        message = _refused(conn, "update public.person set owner_id = %s where id = %s", (world.b.user, world.a.person))
    assert "permission denied" in message


def test_a_user_cannot_create_a_person_for_someone_else(conn: Connection, world: ProbeWorld) -> None:
    with conn.transaction(force_rollback=True), sessions.as_user(conn, world.a.user):
        message = _refused(conn, "insert into public.person (owner_id) values (%s)", (world.b.user,))
    assert "row-level security" in message


def test_owner_defaults_to_the_signed_in_user(conn: Connection, world: ProbeWorld) -> None:
    with conn.transaction(force_rollback=True), sessions.as_user(conn, world.a.user):
        row = conn.execute("insert into public.person (display_name) values ('Kid') returning owner_id").fetchone()
    assert row == (world.a.user,)


def test_a_user_cannot_add_observations_to_another_users_person(conn: Connection, world: ProbeWorld) -> None:
    with conn.transaction(force_rollback=True), sessions.as_user(conn, world.a.user):
        message = _refused(
            conn,
            """insert into public.observation (person_id, code, value, unit, effective_at, source_system, source_id)
               values (%s, '99504-3', 120, 'mg/dL', now(), 'urn:test', 'forged')""",
            (world.b.person,),
        )
    assert "row-level security" in message


def test_a_user_cannot_move_an_observation_to_another_users_person(conn: Connection, world: ProbeWorld) -> None:
    with conn.transaction(force_rollback=True), sessions.as_user(conn, world.a.user):
        message = _refused(
            conn,
            "update public.observation set person_id = %s where id = %s",
            (world.b.person, world.a.observation),
        )
    assert "row-level security" in message


@pytest.mark.parametrize(
    "assignment",
    ["value_mg_dl = 50", "lower_mg_dl = 0", "upper_mg_dl = 999", "owner_id = gen_random_uuid()"],
)
def test_owners_cannot_edit_their_forecasts(conn: Connection, world: ProbeWorld, assignment: str) -> None:
    with conn.transaction(force_rollback=True), sessions.as_user(conn, world.a.user):
        _refused(conn, f"update public.prediction set {assignment} where id = %s", (world.a.prediction,))


@pytest.mark.parametrize(
    "assignment", ["disclaimer_version = 'none'", "coverage = 0.99", "owner_id = gen_random_uuid()"]
)
def test_owners_cannot_edit_the_provenance_of_their_forecasts(
    conn: Connection, world: ProbeWorld, assignment: str
) -> None:
    with conn.transaction(force_rollback=True), sessions.as_user(conn, world.a.user):
        _refused(conn, f"update public.forecast set {assignment} where person_id = %s", (world.a.person,))


def test_owners_cannot_change_the_source_anchors_of_a_forecast(conn: Connection, world: ProbeWorld) -> None:
    with conn.transaction(force_rollback=True), sessions.as_user(conn, world.a.user):
        _refused(conn, "delete from public.prediction_source where person_id = %s", (world.a.person,))
        _refused(
            conn,
            """insert into public.prediction_source
                 (forecast_id, person_id, owner_id, model_id, generated_at, observation_id, observation_effective_at)
               select forecast_id, person_id, owner_id, model_id, generated_at, %s, %s
               from public.prediction where id = %s""",
            (world.a.second_observation, world.a.second_observation_at, world.a.prediction),
        )


def test_a_role_claim_of_service_role_gives_an_authenticated_session_nothing_more(
    conn: Connection, world: ProbeWorld
) -> None:
    claims = {"sub": str(world.a.user), "role": "service_role"}
    with conn.transaction(force_rollback=True), sessions.as_role(conn, "authenticated", claims):
        seen = conn.execute("select count(*) from public.prediction where person_id = %s", (world.b.person,))
        assert seen.fetchone() == (0,)
        _refused(conn, "delete from public.prediction where person_id = %s", (world.b.person,))


def test_claims_without_a_subject_see_nothing(conn: Connection, world: ProbeWorld) -> None:
    with conn.transaction(force_rollback=True), sessions.as_role(conn, "authenticated", {"role": "authenticated"}):
        assert conn.execute("select count(*) from public.person").fetchone() == (0,)
        assert conn.execute("select count(*) from public.prediction").fetchone() == (0,)


@pytest.mark.parametrize("subject", ["", "' or 1=1 --", "not-a-uuid"])
def test_a_malformed_subject_is_an_error_not_a_match(conn: Connection, world: ProbeWorld, subject: str) -> None:
    with (
        pytest.raises(psycopg.errors.InvalidTextRepresentation),
        conn.transaction(force_rollback=True),
        sessions.as_role(conn, "authenticated", {"sub": subject, "role": "authenticated"}),
    ):
        conn.execute("select count(*) from public.person")


def test_claims_end_with_their_transaction(conn: Connection, world: ProbeWorld) -> None:
    with sessions.as_user(conn, world.a.user):
        assert conn.execute("select auth.uid()").fetchone() == (world.a.user,)
    with conn.transaction():
        assert conn.execute("select auth.uid(), current_user").fetchone() == (None, "postgres")


def test_session_level_claims_do_not_reach_an_authenticated_transaction(conn: Connection, world: ProbeWorld) -> None:
    """A pooled connection where someone set claims for the session, then a new request runs."""
    conn.execute(
        "select set_config('request.jwt.claims', %s, false)",
        (json.dumps({"sub": str(world.b.user), "role": "authenticated"}),),
    )
    conn.commit()
    with sessions.as_user(conn, world.a.user):
        assert conn.execute("select count(*) from public.person where id = %s", (world.b.person,)).fetchone() == (0,)
    with conn.transaction():
        conn.execute("reset request.jwt.claims")


def test_worker_without_scope_sees_nothing(conn: Connection, world: ProbeWorld) -> None:
    with conn.transaction(force_rollback=True), sessions.as_worker(conn, None):
        for table in (
            "person",
            "observation",
            "training_run",
            "ml_model",
            "forecast",
            "prediction",
            "prediction_source",
        ):
            assert conn.execute(f"select count(*) from public.{table}".encode()).fetchone() == (0,), table
        assert conn.execute("select count(*) from storage.objects").fetchone() == (0,)


def test_worker_scope_cannot_move_to_another_person_in_the_same_transaction(
    conn: Connection, world: ProbeWorld
) -> None:
    with conn.transaction(force_rollback=True), sessions.as_worker(conn, world.a.person, Purpose.TRAINING, "test"):
        message = _refused(conn, "select private.begin_person_scope(%s, 'training', 'test')", (world.b.person,))
    assert "already scoped" in message


def test_worker_scope_ends_with_its_transaction(conn: Connection, world: ProbeWorld) -> None:
    with sessions.as_worker(conn, world.a.person, Purpose.TRAINING, "test"):
        assert conn.execute("select count(*) from public.person").fetchone() == (1,)
    with sessions.as_worker(conn, None):
        assert conn.execute("select count(*) from public.person").fetchone() == (0,)


def test_worker_scope_needs_an_existing_person(conn: Connection) -> None:
    with pytest.raises(psycopg.errors.NoDataFound), sessions.as_worker(conn, uuid4(), Purpose.TRAINING, "test"):
        pass


def test_worker_in_one_scope_cannot_write_for_another_person(conn: Connection, world: ProbeWorld) -> None:
    with conn.transaction(force_rollback=True), sessions.as_worker(conn, world.a.person, Purpose.TRAINING, "test"):
        _refused(
            conn,
            "insert into public.training_run (person_id, trigger) values (%s, 'initial')",
            (world.b.person,),
        )
        updated = conn.execute("update public.ml_model set stage = 'archived' where person_id = %s", (world.b.person,))
        assert updated.rowcount == 0


def test_worker_cannot_anchor_a_forecast_to_another_persons_observation(conn: Connection, world: ProbeWorld) -> None:
    with (
        pytest.raises(psycopg.errors.ForeignKeyViolation, match="does not belong to person"),
        conn.transaction(force_rollback=True),
        sessions.as_worker(conn, world.a.person, Purpose.TRAINING, "test"),
    ):
        conn.execute(
            """insert into public.prediction_source
                 (forecast_id, person_id, owner_id, model_id, generated_at, observation_id, observation_effective_at)
               select forecast_id, person_id, owner_id, model_id, generated_at, %s, %s
               from public.prediction where id = %s""",
            (world.b.second_observation, world.b.second_observation_at, world.a.prediction),
        )


@pytest.mark.parametrize(
    "name",
    [
        "{a}../{b}model.safetensors",
        "{a}%2e%2e/x.json",
        "/{a}model.safetensors",
        "{a}/model.safetensors",
        "{a}sub/model.safetensors",
        "{b}model.safetensors",
        "{a_owner}{b_person}/glucose-forecast/v1.0.0/model.safetensors",
        "{a_owner}{a_person}/glucose-forecast/v1.0/model.safetensors",
        "{a}.hidden",
    ],
)
def test_worker_cannot_store_outside_its_persons_folder(conn: Connection, world: ProbeWorld, name: str) -> None:
    resolved = name.format(
        a=world.a.folder,
        b=world.b.folder,
        a_owner=f"{world.a.user}/",
        a_person=world.a.person,
        b_person=world.b.person,
    )
    with conn.transaction(force_rollback=True), sessions.as_worker(conn, world.a.person, Purpose.TRAINING, "test"):
        _refused(conn, "insert into storage.objects (bucket_id, name) values ('models', %s)", (resolved,))


def test_worker_stores_files_in_its_persons_folder(conn: Connection, world: ProbeWorld) -> None:
    with conn.transaction(force_rollback=True), sessions.as_worker(conn, world.a.person, Purpose.TRAINING, "test"):
        conn.execute(
            "insert into storage.objects (bucket_id, name) values ('models', %s)",
            (world.a.folder.replace("v1.0.0", "v1.1.0") + "training_log.txt",),
        )


def test_users_read_only_their_own_model_files(conn: Connection, world: ProbeWorld) -> None:
    with conn.transaction(force_rollback=True), sessions.as_user(conn, world.a.user):
        names = [row[0] for row in conn.execute("select name from storage.objects where bucket_id = 'models'")]
    assert names == [world.a.folder + "model.safetensors"]


# -- a worker that forges its scope ----------------------------------------------------------------------------------
# What a worker's own database login can set in its transaction: the settings that held the scope before migration
# 20261205120000, and the claims Storage would set for a token naming the person.


@contextmanager
def _worker_login(conn: Connection) -> Iterator[Connection]:
    """A rolled-back transaction logged in as a worker's own login (a member of glucokit_worker, as
    docs/worker-role.md makes it) and switched to the role, with no person scope."""
    login = f"glucokit_test_worker_{uuid4().hex[:12]}"
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("create role {} noinherit").format(sql.Identifier(login)))
        conn.execute(sql.SQL("grant glucokit_worker to {}").format(sql.Identifier(login)))
        conn.execute(sql.SQL("set local session authorization {}").format(sql.Identifier(login)))
        conn.execute("set local role glucokit_worker")
        yield conn


def _forge(conn: Connection, person: ProbePerson) -> None:
    conn.execute(
        "select set_config('glucokit.worker_person_id', %s, true),"
        " set_config('glucokit.worker_purpose', 'training', true), set_config('request.jwt.claims', %s, true)",
        (
            str(person.person),
            json.dumps({"role": "glucokit_worker", "sub": str(person.user), "glucokit_person_id": str(person.person)}),
        ),
    )


def _audit_rows(conn: Connection, person: ProbePerson) -> int:
    row = conn.execute("select count(*) from public.audit_log where person_id = %s", (person.person,)).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_a_worker_that_sets_the_scope_variables_itself_reads_nothing(conn: Connection, world: ProbeWorld) -> None:
    with conn.transaction():
        audited = _audit_rows(conn, world.a)
    with _worker_login(conn):
        _forge(conn, world.a)
        assert conn.execute("select private.worker_person_id(), private.worker_purpose()").fetchone() == (None, None)
        for table in ("person", "observation", "training_run", "ml_model", "prediction", "consent"):
            column = "id" if table == "person" else "person_id"
            count = sql.SQL("select count(*) from {} where {} = %s").format(
                sql.Identifier("public", table), sql.Identifier(column)
            )
            assert conn.execute(count, (world.a.person,)).fetchone() == (0,), table
        assert conn.execute("select count(*) from storage.objects").fetchone() == (0,)
        assert conn.execute("select private.worker_storage_prefix()").fetchone() == (None,)
        conn.execute("reset role; reset session authorization")  # back to the database owner, who reads the log
        assert _audit_rows(conn, world.a) == audited  # nothing was opened, so nothing was logged


def test_a_worker_that_sets_the_scope_variables_itself_writes_nothing(conn: Connection, world: ProbeWorld) -> None:
    with _worker_login(conn):
        _forge(conn, world.a)
        _refused(conn, "insert into public.training_run (person_id, trigger) values (%s, 'initial')", (world.a.person,))
        _refused(
            conn,
            """insert into public.forecast (person_id, owner_id, model_id, generated_at, coverage, disclaimer_version,
                 model_version, data_from, data_to, code_version)
               values (%s, %s, %s, now(), 0.8, 'v1', '1.0.0', now() - interval '1 day', now() - interval '1 day',
                 'forged')""",
            (world.a.person, world.a.user, world.a.model),
        )
        _refused(
            conn,
            "insert into storage.objects (bucket_id, name) values ('models', %s)",
            (world.a.folder.replace("v1.0.0", "v9.0.0") + "training_log.txt",),
        )
        updated = conn.execute("update public.ml_model set stage = 'archived' where person_id = %s", (world.a.person,))
        assert updated.rowcount == 0
        _refused(conn, "select private.assert_consent()")


def test_a_worker_login_that_forges_the_storage_claim_reaches_no_file(conn: Connection, world: ProbeWorld) -> None:
    """Storage's own login sets request.jwt.claims from a token it verified; a worker's login sets them by hand."""
    claims = {"role": "glucokit_worker", "glucokit_person_id": str(world.a.person)}
    with _worker_login(conn):
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        assert conn.execute("select private.worker_storage_prefix()").fetchone() == (None,)
        assert conn.execute("select count(*) from storage.objects").fetchone() == (0,)
        removed = conn.execute("delete from storage.objects where bucket_id = 'models'")
        assert removed.rowcount == 0


def test_a_scope_opened_in_a_rolled_back_savepoint_is_gone(conn: Connection, world: ProbeWorld) -> None:
    with conn.transaction(force_rollback=True), sessions.as_worker(conn, None):
        conn.execute("savepoint scoped")
        conn.execute(sessions.Scope(world.a.person, Purpose.TRAINING, "test").statement())
        conn.execute("rollback to savepoint scoped")
        assert conn.execute("select private.worker_person_id()").fetchone() == (None,)
        assert conn.execute("select count(*) from public.observation").fetchone() == (0,)


def test_no_scope_record_outlives_its_transaction(conn: Connection, world: ProbeWorld) -> None:
    """The record holds a person's id: committed or rolled back, nothing of it stays (erasure relies on it)."""
    with sessions.as_worker(conn, world.a.person, Purpose.TRAINING, "test"):
        assert conn.execute("select private.worker_person_id()").fetchone() == (world.a.person,)
    with conn.transaction():
        row = conn.execute(
            "select count(*) from private.worker_scope where backend_pid = pg_backend_pid() and person_id is not null"
        ).fetchone()
    assert row == (0,)


def test_a_scope_ended_early_opens_no_second_person(conn: Connection, world: ProbeWorld) -> None:
    """A worker that fires the end-of-scope trigger early (set constraints all immediate) is left unscoped, and
    cannot scope the same transaction to another person."""
    with _worker_login(conn):
        conn.execute("set constraints all immediate")
        conn.execute(sessions.Scope(world.a.person, Purpose.TRAINING, "test").statement())
        assert conn.execute("select private.worker_person_id()").fetchone() == (None,)
        assert conn.execute("select count(*) from public.observation").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="worker scope has ended"), conn.transaction():
            conn.execute(sessions.Scope(world.b.person, Purpose.TRAINING, "test").statement())
