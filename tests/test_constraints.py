"""What must hold is held by the database, with errors that name the broken rule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from glucokit.db.sessions import Connection
from glucokit.tooling.policies import ProbeWorld
from glucokit.units import GLUCOSE_CODES, LOINC, MG_DL, MMOL_L


@pytest.fixture
def tx(conn: Connection) -> Iterator[Connection]:
    """The owner's connection inside a transaction that is rolled back."""
    with conn.transaction(force_rollback=True):
        yield conn


def _violates(conn: Connection, error: type[psycopg.Error], statement: str, params: tuple[object, ...]) -> str:
    with pytest.raises(error) as raised, conn.transaction():
        conn.execute(statement.encode(), params)
    diag = raised.value.diag
    return diag.constraint_name or diag.message_primary or ""


OBSERVATION = """insert into public.observation (person_id, code_system, code, value, unit, effective_at,
                                                 source_system, source_id)
                 values (%s, %s, %s, %s, %s, now(), 'urn:test', gen_random_uuid()::text)"""


@pytest.mark.parametrize("code", sorted(GLUCOSE_CODES))
def test_glucose_is_stored_in_mg_dl_only(tx: Connection, world: ProbeWorld, code: str) -> None:
    violated = _violates(tx, psycopg.errors.CheckViolation, OBSERVATION, (world.a.person, LOINC, code, 6.5, MMOL_L))
    assert violated == "observation_glucose_in_mg_dl"
    tx.execute(OBSERVATION.encode(), (world.a.person, LOINC, code, 117.1, MG_DL))


@pytest.mark.parametrize("value", [5, 1200])
def test_glucose_outside_what_a_person_can_have_is_refused(tx: Connection, world: ProbeWorld, value: float) -> None:
    violated = _violates(
        tx, psycopg.errors.CheckViolation, OBSERVATION, (world.a.person, LOINC, "99504-3", value, MG_DL)
    )
    assert violated == "observation_glucose_in_mg_dl"


def test_other_observations_keep_their_own_units(tx: Connection, world: ProbeWorld) -> None:
    tx.execute(OBSERVATION.encode(), (world.a.person, LOINC, "9059-7", 45, "g"))  # carbohydrate intake


def test_not_a_number_is_refused(tx: Connection, world: ProbeWorld) -> None:
    violated = _violates(
        tx, psycopg.errors.CheckViolation, OBSERVATION, (world.a.person, LOINC, "9059-7", float("nan"), "g")
    )
    assert violated == "observation_value_check"


def test_the_same_source_reading_is_stored_once(tx: Connection, world: ProbeWorld) -> None:
    statement = """insert into public.observation (person_id, code, value, unit, effective_at, source_system, source_id)
                   values (%s, '99504-3', 120, 'mg/dL', %s, 'urn:cgm', 'reading-1')"""
    at = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    tx.execute(statement.encode(), (world.a.person, at))
    violated = _violates(tx, psycopg.errors.UniqueViolation, statement, (world.a.person, at))
    # Reported by the partition's copy of the constraint.
    assert "source_system_source_id" in violated


def test_old_readings_move_into_their_month_when_it_is_created(tx: Connection, world: ProbeWorld) -> None:
    at = datetime(2001, 3, 14, 9, 30, tzinfo=UTC)
    tx.execute(
        """insert into public.observation (person_id, code, value, unit, effective_at, source_system, source_id)
           values (%s, '99504-3', 130, 'mg/dL', %s, 'urn:cgm', 'old-1')""",
        (world.a.person, at),
    )
    where = "select tableoid::regclass::text from public.observation where source_id = 'old-1'"
    assert tx.execute(where.encode()).fetchone() == ("partitions.observation_default",)
    created = tx.execute("select private.create_observation_partitions('2001-01-01', '2001-06-01')").fetchone()
    assert created == (5,)
    assert tx.execute(where.encode()).fetchone() == ("partitions.observation_y2001m03",)


def test_an_unknown_time_zone_is_refused(tx: Connection, world: ProbeWorld) -> None:
    message = _violates(
        tx,
        psycopg.errors.InvalidParameterValue,
        "update public.person set time_zone = %s where id = %s",
        ("Mars/Olympus_Mons", world.a.person),
    )
    assert message == 'time zone "Mars/Olympus_Mons" not recognized'


def test_glucose_unit_preference_is_a_known_unit(tx: Connection, world: ProbeWorld) -> None:
    violated = _violates(
        tx,
        psycopg.errors.CheckViolation,
        "update public.person set glucose_unit = %s where id = %s",
        ("mg", world.a.person),
    )
    assert violated == "person_glucose_unit_check"


MODEL = """insert into public.ml_model (person_id, version, algorithm, storage_path, artifact_sha256, data_from,
                                       data_to, stage)
           values (%s, %s, 'ridge', %s, %s, now() - interval '2 days', now() - interval '1 day', %s)"""


def test_at_most_one_active_model_per_person_and_type(tx: Connection, world: ProbeWorld) -> None:
    violated = _violates(tx, psycopg.errors.UniqueViolation, MODEL, (world.a.person, "1.1.0", None, None, "active"))
    assert violated == "ml_model_one_active_idx"
    tx.execute(MODEL.encode(), (world.a.person, "1.1.0", None, None, "candidate"))


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "01.0.0", "1.0.0-rc1", ""])
def test_model_versions_are_semantic(tx: Connection, world: ProbeWorld, version: str) -> None:
    violated = _violates(tx, psycopg.errors.CheckViolation, MODEL, (world.a.person, version, None, None, "candidate"))
    assert violated == "ml_model_version_check"


def test_a_version_is_registered_once_per_person(tx: Connection, world: ProbeWorld) -> None:
    violated = _violates(tx, psycopg.errors.UniqueViolation, MODEL, (world.a.person, "1.0.0", None, None, "candidate"))
    assert violated == "ml_model_person_id_model_type_version_key"


def test_artifacts_live_in_the_models_own_folder(tx: Connection, world: ProbeWorld) -> None:
    wrong_person = world.b.folder.replace("v1.0.0", "v1.2.0")
    violated = _violates(
        tx, psycopg.errors.CheckViolation, MODEL, (world.a.person, "1.2.0", wrong_person, "a" * 64, "candidate")
    )
    assert violated == "ml_model_storage_path"
    wrong_version = world.a.folder
    violated = _violates(
        tx, psycopg.errors.CheckViolation, MODEL, (world.a.person, "1.2.0", wrong_version, "a" * 64, "candidate")
    )
    assert violated == "ml_model_storage_path"
    no_hash = world.a.folder.replace("v1.0.0", "v1.2.0")
    violated = _violates(
        tx, psycopg.errors.CheckViolation, MODEL, (world.a.person, "1.2.0", no_hash, None, "candidate")
    )
    assert violated == "ml_model_artifact_hashed"
    tx.execute(MODEL.encode(), (world.a.person, "1.2.0", no_hash, "a" * 64, "candidate"))


def test_a_failed_training_run_says_why(tx: Connection, world: ProbeWorld) -> None:
    violated = _violates(
        tx,
        psycopg.errors.CheckViolation,
        """insert into public.training_run (person_id, trigger, status, started_at, finished_at)
           values (%s, 'initial', 'failed', now(), now())""",
        (world.a.person,),
    )
    assert violated == "training_run_error_when_failed"


FORECAST = """insert into public.forecast
    (person_id, owner_id, model_id, generated_at, coverage, disclaimer_version, model_version, data_from, data_to,
     code_version)
    values (%s, %s, %s, %s, %s, 'v1', '1.0.0', %s, %s, 'test')"""

# A point of the forecast above (the origin's forecast row is found by model and origin).
PREDICTION = """insert into public.prediction
    (forecast_id, person_id, owner_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl,
     upper_mg_dl)
    select f.id, f.person_id, f.owner_id, f.model_id, f.generated_at, %s, %s, %s, %s, %s
    from public.forecast f where f.model_id = %s and f.generated_at = %s"""

GENERATED = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def _forecast(world: ProbeWorld, **changes: object) -> tuple[object, ...]:
    values: dict[str, object] = {
        "person": world.a.person,
        "owner": world.a.user,
        "model": world.a.model,
        "generated_at": GENERATED,
        "coverage": 0.8,
        "data_from": datetime(2026, 11, 1, tzinfo=UTC),
        "data_to": datetime(2026, 11, 19, tzinfo=UTC),
    } | changes
    return tuple(values.values())


def _prediction(world: ProbeWorld, **changes: object) -> tuple[object, ...]:
    values: dict[str, object] = {
        "target_at": datetime(2026, 11, 20, 8, 30, tzinfo=UTC),
        "horizon": 30,
        "value": 120.0,
        "lower": 100.0,
        "upper": 140.0,
    } | changes
    return (*values.values(), world.a.model, GENERATED)


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        ({"coverage": 1.0}, "forecast_coverage_check"),
        ({"generated_at": datetime(2026, 11, 18, 8, 0, tzinfo=UTC)}, "forecast_data_window"),
    ],
)
def test_forecasts_are_consistent(
    tx: Connection, world: ProbeWorld, changes: dict[str, object], constraint: str
) -> None:
    assert _violates(tx, psycopg.errors.CheckViolation, FORECAST, _forecast(world, **changes)) == constraint


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        ({"horizon": 7, "target_at": datetime(2026, 11, 20, 8, 7, tzinfo=UTC)}, "prediction_horizon_minutes_check"),
        ({"horizon": 0, "target_at": datetime(2026, 11, 20, 8, 0, tzinfo=UTC)}, "prediction_horizon_minutes_check"),
        ({"target_at": datetime(2026, 11, 20, 9, 0, tzinfo=UTC)}, "prediction_target_at"),
        ({"lower": 130.0}, "prediction_band"),
        ({"upper": 110.0}, "prediction_band"),
        ({"value": 3.0, "lower": 1.0}, "prediction_value_mg_dl_check"),
    ],
)
def test_forecast_points_are_consistent(
    tx: Connection, world: ProbeWorld, changes: dict[str, object], constraint: str
) -> None:
    tx.execute(FORECAST.encode(), _forecast(world))
    assert _violates(tx, psycopg.errors.CheckViolation, PREDICTION, _prediction(world, **changes)) == constraint


def test_writing_the_same_forecast_twice_stores_it_once(tx: Connection, world: ProbeWorld) -> None:
    tx.execute(FORECAST.encode(), _forecast(world))
    violated = _violates(tx, psycopg.errors.UniqueViolation, FORECAST, _forecast(world, coverage=0.9))
    assert violated.endswith("model_id_generated_at_key")  # forecast_idempotency_key, as its partition names it
    tx.execute(PREDICTION.encode(), _prediction(world))
    violated = _violates(tx, psycopg.errors.UniqueViolation, PREDICTION, _prediction(world, value=121.0))
    assert violated.endswith("horizon_minutes_generated_at_key")  # prediction_idempotency_key, in its partition
    again = tx.execute(
        (FORECAST + " on conflict on constraint forecast_idempotency_key do nothing").encode(), _forecast(world)
    )
    assert again.rowcount == 0


def test_a_forecast_cannot_point_at_another_persons_model(tx: Connection, world: ProbeWorld) -> None:
    violated = _violates(tx, psycopg.errors.ForeignKeyViolation, FORECAST, _forecast(world, model=world.b.model))
    assert violated == "forecast_model_id_person_id_fkey"
