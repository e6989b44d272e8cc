"""A small world for the access tests: users A and B, person A and person B.

Each person has two observations, a successful and a failed training run, an active model with
artifacts in the models bucket, one prediction anchored to the first
observation, and one stored model file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from psycopg.types.json import Jsonb

from glucokit.sessions import Connection
from glucokit.units import CGM_CODE, LOINC, MG_DL


@dataclass(frozen=True)
class PersonRows:
    user_id: UUID
    person_id: UUID
    observation_ids: tuple[UUID, UUID]
    observation_times: tuple[datetime, datetime]
    training_run_id: UUID
    model_id: UUID
    prediction_id: UUID

    @property
    def folder(self) -> str:
        return f"{self.user_id}/{self.person_id}/glucose-forecast/v1.0.0/"


@dataclass(frozen=True)
class World:
    a: PersonRows
    b: PersonRows


def _seed_person(conn: Connection, now: datetime) -> PersonRows:
    user_id, person_id = uuid4(), uuid4()
    conn.execute("insert into auth.users (id, email) values (%s, %s)", (user_id, f"{user_id}@example.org"))
    conn.execute("insert into public.person (id, owner_id, display_name) values (%s, %s, 'P')", (person_id, user_id))
    times = (now - timedelta(minutes=10), now - timedelta(minutes=5))
    observation_ids = (uuid4(), uuid4())
    for observation_id, at, value in zip(observation_ids, times, (110, 115), strict=True):
        conn.execute(
            """insert into public.observation
               (id, person_id, code_system, code, value, unit, effective_at, source_system, source_id)
               values (%s, %s, %s, %s, %s, %s, %s, 'urn:test', %s)""",
            (observation_id, person_id, LOINC, CGM_CODE, value, MG_DL, at, str(observation_id)),
        )
    run_id, model_id, prediction_id = uuid4(), uuid4(), uuid4()
    conn.execute(
        """insert into public.training_run (id, person_id, trigger, status, started_at, finished_at)
           values (%s, %s, 'initial', 'succeeded', now(), now())""",
        (run_id, person_id),
    )
    conn.execute(
        """insert into public.training_run (person_id, trigger, status, started_at, finished_at, error)
           values (%s, 'scheduled', 'failed', now(), now(), 'not enough data')""",
        (person_id,),
    )
    folder = f"{user_id}/{person_id}/glucose-forecast/v1.0.0/"
    conn.execute(
        """insert into public.ml_model
           (id, person_id, version, algorithm, training_run_id, storage_path, artifact_sha256,
            data_from, data_to, stage, metrics)
           values (%s, %s, '1.0.0', 'ridge', %s, %s, %s, %s, %s, 'active', %s)""",
        (
            model_id,
            person_id,
            run_id,
            folder,
            "0" * 64,
            times[0] - timedelta(days=7),
            times[0],
            Jsonb({"rmse_30": 15.0}),
        ),
    )
    conn.execute(
        """insert into public.prediction
           (id, person_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl,
            upper_mg_dl, coverage, disclaimer_version, model_version, training_run_id, data_from, data_to,
            code_version)
           values (%s, %s, %s, %s, %s, 30, 120, 100, 140, 0.8, 'v1', '1.0.0', %s, %s, %s, 'test')""",
        (
            prediction_id,
            person_id,
            model_id,
            times[1],
            times[1] + timedelta(minutes=30),
            run_id,
            times[0] - timedelta(days=7),
            times[0],
        ),
    )
    conn.execute(
        """insert into public.prediction_source (prediction_id, person_id, observation_id, observation_effective_at)
           values (%s, %s, %s, %s)""",
        (prediction_id, person_id, observation_ids[0], times[0]),
    )
    conn.execute(
        "insert into storage.objects (bucket_id, name, owner_id) values ('models', %s, null)",
        (folder + "model.safetensors",),
    )
    return PersonRows(
        user_id=user_id,
        person_id=person_id,
        observation_ids=observation_ids,
        observation_times=times,
        training_run_id=run_id,
        model_id=model_id,
        prediction_id=prediction_id,
    )


def seed_world(conn: Connection) -> World:
    now = datetime.now(UTC).replace(microsecond=0)
    with conn.transaction():
        return World(a=_seed_person(conn, now), b=_seed_person(conn, now))
