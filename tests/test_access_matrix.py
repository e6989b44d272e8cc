"""Every cell of policies/access.toml, checked by a real attempt against the migrated database.

Each attempt runs in a transaction that is rolled back, as one actor, on a
row of person A (owned by user A), and its outcome is compared with the matrix:
allowed (the row is reached), filtered (zero rows, no error) or refused
(SQLSTATE 42501).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from glucokit import sessions
from glucokit.project import PROJECT_DIR
from glucokit.sessions import Connection
from world import World

MATRIX = tomllib.loads((PROJECT_DIR / "policies" / "access.toml").read_text())

Params = dict[str, Any]
Actor = Callable[[Connection, World], AbstractContextManager[Connection]]

ACTORS: dict[str, Actor] = {
    "anon": lambda conn, world: sessions.as_anon(conn),
    "owner": lambda conn, world: sessions.as_user(conn, world.a.user_id),
    "other_user": lambda conn, world: sessions.as_user(conn, world.b.user_id),
    "worker_in_scope": lambda conn, world: sessions.as_worker(conn, world.a.person_id),
    "worker_other_scope": lambda conn, world: sessions.as_worker(conn, world.b.person_id),
    "worker_unscoped": lambda conn, world: sessions.as_worker(conn, None),
    "service_role": lambda conn, world: sessions.as_role(conn, "service_role", {"role": "service_role"}),
}


def _params(world: World) -> Params:
    a = world.a
    return {
        "user": a.user_id,
        "person": a.person_id,
        "model": a.model_id,
        "run": a.training_run_id,
        "prediction": a.prediction_id,
        "observation": a.observation_ids[1],
        "observation_at": a.observation_times[1],
        "new_id": uuid4(),
        "at": a.observation_times[1] + timedelta(minutes=1),
        "at_30": a.observation_times[1] + timedelta(minutes=31),
        "folder": a.folder,
        "prefix": a.folder + "%",
    }


# For each table: how to select, insert, update and delete rows of person A.
ATTEMPTS: dict[str, dict[str, str]] = {
    "public.person": {
        "select": "select count(*) from public.person where id = %(person)s",
        "insert": "insert into public.person (id, owner_id) values (%(new_id)s, %(user)s)",
        "update": "update public.person set display_name = 'renamed' where id = %(person)s",
        "delete": "delete from public.person where id = %(person)s",
    },
    "public.observation": {
        "select": "select count(*) from public.observation where person_id = %(person)s",
        "insert": """insert into public.observation
            (person_id, code, value, unit, effective_at, source_system, source_id)
            values (%(person)s, '99504-3', 120, 'mg/dL', %(at)s, 'urn:test', %(new_id)s::text)""",
        "update": "update public.observation set status = 'amended' where person_id = %(person)s",
        "delete": "delete from public.observation where person_id = %(person)s",
    },
    "public.training_run": {
        "select": "select count(*) from public.training_run where person_id = %(person)s",
        "insert": "insert into public.training_run (person_id, trigger) values (%(person)s, 'user_request')",
        "update": "update public.training_run set reason = 'checked' where person_id = %(person)s",
        # The failed run: the successful one is still referenced by the model.
        "delete": "delete from public.training_run where person_id = %(person)s and status = 'failed'",
    },
    "public.ml_model": {
        "select": "select count(*) from public.ml_model where person_id = %(person)s",
        "insert": """insert into public.ml_model (person_id, version, algorithm, data_from, data_to)
            values (%(person)s, '9.9.9', 'ridge', %(at)s - interval '1 day', %(at)s)""",
        "update": "update public.ml_model set stage_reason = 'checked' where person_id = %(person)s",
        "delete": "delete from public.ml_model where person_id = %(person)s",
    },
    "public.prediction": {
        "select": "select count(*) from public.prediction where person_id = %(person)s",
        "insert": """insert into public.prediction
            (person_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl,
             upper_mg_dl, coverage, disclaimer_version, model_version, data_from, data_to, code_version)
            values (%(person)s, %(model)s, %(at)s, %(at_30)s, 30, 120, 100, 140, 0.8, 'v1', '1.0.0',
                    %(at)s - interval '2 days', %(at)s - interval '1 day', 'test')""",
        "update": "update public.prediction set value_mg_dl = 121 where person_id = %(person)s",
        "delete": "delete from public.prediction where person_id = %(person)s",
    },
    "public.prediction_source": {
        "select": "select count(*) from public.prediction_source where person_id = %(person)s",
        "insert": """insert into public.prediction_source
            (prediction_id, person_id, observation_id, observation_effective_at)
            values (%(prediction)s, %(person)s, %(observation)s, %(observation_at)s)""",
        "update": "update public.prediction_source set role = 'covariate' where person_id = %(person)s",
        "delete": "delete from public.prediction_source where person_id = %(person)s",
    },
    "models": {
        "select": "select count(*) from storage.objects where bucket_id = 'models' and name like %(prefix)s",
        "insert": """insert into storage.objects (bucket_id, name)
            values ('models', %(folder)s || 'metadata.json')""",
        "update": """update storage.objects set metadata = '{"checked": true}'
            where bucket_id = 'models' and name like %(prefix)s""",
        "delete": "delete from storage.objects where bucket_id = 'models' and name like %(prefix)s",
    },
}


def _cells() -> Iterator[Any]:
    entries = {**MATRIX["tables"], **{name: spec for name, spec in MATRIX["buckets"].items()}}
    for target, spec in entries.items():
        for actor in MATRIX["actors"]:
            for operation in MATRIX["operations"]:
                yield pytest.param(target, actor, operation, spec[actor][operation], id=f"{target}-{actor}-{operation}")


def attempt(conn: Connection, world: World, target: str, actor: str, operation: str) -> str:
    """Run one attempt, roll it back, and name its outcome."""
    statement = ATTEMPTS[target][operation]
    try:
        with conn.transaction(force_rollback=True), ACTORS[actor](conn, world):
            cursor = conn.execute(statement.encode(), _params(world))
            reached = cursor.fetchone()[0] if operation == "select" else cursor.rowcount  # type: ignore[index]
    except psycopg.errors.InsufficientPrivilege:
        return "refused"
    return "allowed" if reached else "filtered"


def test_matrix_covers_every_table_and_bucket() -> None:
    assert set(ATTEMPTS) == set(MATRIX["tables"]) | set(MATRIX["buckets"])
    for spec in [*MATRIX["tables"].values(), *MATRIX["buckets"].values()]:
        assert spec["owner_path"]
        for actor in MATRIX["actors"]:
            assert set(spec[actor]) == set(MATRIX["operations"])
            assert set(spec[actor].values()) <= {"allowed", "filtered", "refused"}


@pytest.mark.parametrize(("target", "actor", "operation", "expected"), list(_cells()))
def test_access(conn: Connection, world: World, target: str, actor: str, operation: str, expected: str) -> None:
    assert attempt(conn, world, target, actor, operation) == expected
