"""A/B experiments against the real database: sticky assignment, the contamination guard, exposure through the
API, row-level security, per-variant metrics, the sequential rule, the retrain hook and the CLI."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import jwt
import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

import forecast_rows
from glucokit.api import ApiSettings, TokenVerifier, create_app
from glucokit.cli import main as cli
from glucokit.db.sessions import Connection, Purpose, as_anon, as_user, as_worker
from glucokit.errors import GlucokitError
from glucokit.fhir.ingest import Ingest
from glucokit.modelops import experiments
from glucokit.modelops.experiments import Experiment, Rule, Variant
from glucokit.modelops.model_store import LocalModelStore
from glucokit.modelops.retrain import retrain
from glucokit.project import SIMULATED_DIR
from owners import Owner

SECRET = "experiments-test-jwt-secret-of-32-characters-or-more"
VARIANTS = (Variant("control", ("ridge",)), Variant("treatment", ("network",)))
DEFAULT_RULE = Rule()
ORIGIN = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def operator(database_url: str) -> Iterator[Connection]:
    """The database owner on an autocommit connection, as `glucokit experiments` works: each step commits, so the
    API's and the workers' transactions see it."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def define(operator: Connection) -> Iterator[Callable[..., Experiment]]:
    """Defines experiments (started unless told otherwise); deletes them, with their assignments, afterwards."""
    made: list[str] = []

    def make(*, start: bool = True, variants: tuple[Variant, ...] = VARIANTS, rule: Rule = DEFAULT_RULE) -> Experiment:
        key = f"test-{uuid4().hex[:12]}"
        made.append(key)
        experiment = experiments.create(operator, key, "Ridge against the network", variants, rule)
        return experiments.transition(operator, key, "start") if start else experiment

    yield make
    operator.execute("delete from public.experiment where key = any(%s)", (made,))


def _worker_assign(conn: Connection, person: UUID) -> experiments.Assignment | None:
    with as_worker(conn, person, Purpose.TRAINING, "experiment test"):
        return experiments.assign(conn, person)


def _model(conn: Connection, person: UUID, algorithm: str, trained_at: datetime, version: str = "1.0.0") -> UUID:
    with conn.transaction():
        row = conn.execute(
            """insert into public.ml_model (person_id, version, algorithm, data_from, data_to, trained_at, stage)
               values (%s, %s, %s, %s, %s, %s, 'active') returning id""",
            (person, version, algorithm, ORIGIN - timedelta(days=14), ORIGIN, trained_at),
        ).fetchone()
    assert row is not None
    assert isinstance(row[0], UUID)
    return row[0]


def _curve(conn: Connection, person: UUID, model: UUID, origin: datetime, errors: list[float]) -> None:
    """Forecast points of ``model`` 30 min ahead from ``origin`` on, every 5 min, with an outcome each:
    predicted 120 + error with a band of +-20, observed 120 (inside the band when |error| <= 20)."""
    with conn.transaction():
        for k, error in enumerate(errors):
            at = origin + timedelta(minutes=5 * k)
            target = at + timedelta(minutes=30)
            observation = conn.execute(
                """insert into public.observation (person_id, code, value, unit, effective_at, source_system, source_id)
                   values (%s, '99504-3', 120, 'mg/dL', %s, 'urn:test', %s) returning id""",
                (person, target, f"outcome-{model}-{k}"),
            ).fetchone()
            assert observation is not None
            prediction = forecast_rows.point(conn, model, at, 30, 120 + error, (100 + error, 140 + error))
            conn.execute(
                """insert into public.forecast_outcome (prediction_id, person_id, owner_id, model_id,
                     model_version, coverage, generated_at, target_at, horizon_minutes, predicted_mg_dl,
                     observed_mg_dl, observation_id, observed_at, error_mg_dl, inside_band)
                   select %s, m.person_id, pe.owner_id, m.id, m.version, 0.8, %s, %s, 30, %s, 120, %s, %s, %s, %s
                   from public.ml_model m join public.person pe on pe.id = m.person_id where m.id = %s""",
                (prediction, at, target, 120 + error, observation[0], target, float(np.float32(error)),
                 abs(error) <= 20, model),
            )  # fmt: skip


def _expose(conn: Connection, owner: Owner, model: UUID) -> int:
    with as_user(conn, owner.user):
        return experiments.log_exposure(conn, owner.person, model, ORIGIN)


# -----------------------------------------------------------------------------
# Sticky, deterministic assignment
# -----------------------------------------------------------------------------
def test_sql_and_python_give_every_person_the_same_variant_in_the_stated_shares(
    operator: Connection, define: Callable[..., Experiment]
) -> None:
    weighted = (Variant("a", ("ridge",), 1), Variant("b", ("network",), 3))
    experiment = define(variants=weighted)
    persons = [uuid4() for _ in range(4000)]
    in_sql = [
        row[0]
        for row in operator.execute(
            "select private.experiment_variant_for(%s, p) from unnest(%s::uuid[]) with ordinality as t (p, n) "
            "order by n",
            (experiment.id, persons),
        )
    ]
    in_python = [experiments.variant_for(experiment.key, person, weighted) for person in persons]
    assert in_sql == in_python
    share = in_python.count("b") / len(persons)
    assert abs(share - 0.75) < 4 * math.sqrt(0.75 * 0.25 / len(persons))


def test_the_worker_assigns_a_person_once_and_for_good(
    conn: Connection, owner: Owner, define: Callable[..., Experiment]
) -> None:
    assert _worker_assign(conn, owner.person) is None  # nothing runs
    experiment = define()
    first = _worker_assign(conn, owner.person)
    again = _worker_assign(conn, owner.person)
    assert first is not None
    assert first == again
    assert first.variant == experiments.variant_for(experiment.key, owner.person, VARIANTS)
    assert first.families == list(next(v.families for v in VARIANTS if v.name == first.variant))
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="not in this worker's scope"),
        as_worker(conn, owner.person, Purpose.TRAINING, "experiment test"),
    ):
        conn.execute("select * from private.assign_experiment(%s)", (uuid4(),))


def test_assignments_never_change_and_started_variants_are_frozen(
    conn: Connection, owner: Owner, define: Callable[..., Experiment]
) -> None:
    experiment = define()
    arm = _worker_assign(conn, owner.person)
    assert arm is not None
    other = next(v.name for v in VARIANTS if v.name != arm.variant)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="assignments never change"), conn.transaction():
        conn.execute("update public.experiment_assignment set variant = %s where person_id = %s", (other, owner.person))
    with conn.transaction():
        conn.execute("delete from public.experiment_assignment where person_id = %s", (owner.person,))
    with (
        pytest.raises(psycopg.errors.IntegrityConstraintViolation, match=f"belongs in variant {arm.variant}"),
        conn.transaction(),
    ):
        conn.execute(
            "insert into public.experiment_assignment (experiment_id, person_id, variant) values (%s, %s, %s)",
            (experiment.id, owner.person, other),
        )
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="variants of a running experiment are frozen"),
        conn.transaction(),
    ):
        conn.execute("update public.experiment_variant set weight = 5 where experiment_id = %s", (experiment.id,))
    draft = define(start=False)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="is a draft"), conn.transaction():
        conn.execute(
            "insert into public.experiment_assignment (experiment_id, person_id) values (%s, %s)",
            (draft.id, owner.person),
        )


def test_one_experiment_runs_at_a_time(define: Callable[..., Experiment], operator: Connection) -> None:
    running = define()
    draft = define(start=False)
    with pytest.raises(GlucokitError, match=f"experiment {running.key} is running"):
        experiments.transition(operator, draft.key, "start")


# -----------------------------------------------------------------------------
# Exposure, contamination and row-level security
# -----------------------------------------------------------------------------
@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(ApiSettings(database_url, TokenVerifier(secret=SECRET), pool_size=1))) as test_client:
        yield test_client


def _bearer(user: UUID) -> dict[str, str]:
    claims = {"sub": str(user), "role": "authenticated", "aud": "authenticated", "exp": int(time.time()) + 600}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def _exposures(conn: Connection, user: UUID) -> list[tuple[object, ...]]:
    with as_user(conn, user):
        return conn.execute(
            "select variant, model_id, forecast_generated_at, contaminated, contamination "
            "from public.experiment_exposure"
        ).fetchall()


def test_serving_the_latest_curve_logs_an_exposure_in_the_owners_transaction(
    conn: Connection, make_owner: Callable[[], Owner], define: Callable[..., Experiment], client: TestClient
) -> None:
    owner, other = make_owner(), make_owner()
    define()
    arm = _worker_assign(conn, owner.person)
    assert arm is not None
    model = _model(conn, owner.person, arm.families[0], datetime.now(UTC) + timedelta(seconds=1))
    _curve(conn, owner.person, model, ORIGIN, [3.0])
    response = client.get(f"/v1/persons/{owner.person}/forecast", headers=_bearer(owner.user))
    assert response.status_code == 200, response.text
    assert _exposures(conn, owner.user) == [(arm.variant, model, ORIGIN, False, None)]
    # Another user reads nothing of it, and cannot log an exposure for the owner's person.
    assert client.get(f"/v1/persons/{owner.person}/forecast", headers=_bearer(other.user)).status_code == 404
    assert _exposures(conn, other.user) == []
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not one of your persons"):
        _expose(conn, Owner(other.user, owner.person), model)
    # A person outside any running experiment logs nothing.
    other_model = _model(conn, other.person, "ridge", datetime.now(UTC))
    assert _expose(conn, other, other_model) == 0


def test_a_model_not_trained_under_the_variant_contaminates(
    conn: Connection, owner: Owner, define: Callable[..., Experiment]
) -> None:
    define()
    arm = _worker_assign(conn, owner.person)
    assert arm is not None
    outside = "ar2"
    old = _model(conn, owner.person, arm.families[0], arm.assigned_at - timedelta(days=1))
    assert _expose(conn, owner, old) == 1
    with conn.transaction():
        conn.execute("update public.ml_model set stage = 'archived' where id = %s", (old,))
    foreign = _model(conn, owner.person, outside, datetime.now(UTC), version="1.1.0")
    assert _expose(conn, owner, foreign) == 1
    (_, _, _, before, why_before), (_, _, _, family, why_family) = sorted(
        _exposures(conn, owner.user), key=lambda row: str(row[4])
    )
    assert before
    assert family
    assert str(why_family).startswith(f"served version 1.1.0 ({outside}); variant {arm.variant} trains ")
    assert str(why_before).startswith(f"served version 1.0.0 ({arm.families[0]}), trained ")
    assert f"before the assignment to variant {arm.variant} at " in str(why_before)


def test_row_level_security_on_the_experiment_tables(
    conn: Connection, make_owner: Callable[[], Owner], define: Callable[..., Experiment]
) -> None:
    owner, other = make_owner(), make_owner()
    experiment = define()
    arm = _worker_assign(conn, owner.person)
    assert arm is not None
    _expose(conn, owner, _model(conn, owner.person, arm.families[0], datetime.now(UTC) + timedelta(seconds=1)))
    tables = ("experiment", "experiment_variant", "experiment_assignment", "experiment_exposure")
    counts = "select " + ", ".join(f"(select count(*) from public.{table})" for table in tables)
    with as_user(conn, owner.user):
        assert conn.execute(counts).fetchone() == (1, 2, 1, 1)
        assert conn.execute("select key from public.experiment").fetchone() == (experiment.key,)
    with as_user(conn, other.user):
        assert conn.execute(counts).fetchone() == (0, 0, 0, 0)
    with as_worker(conn, owner.person, Purpose.TRAINING, "experiment test"):
        assert conn.execute(counts.replace(", (select count(*) from public.experiment_exposure)", "")).fetchone() == (
            1, 2, 1,
        )  # fmt: skip
    for table in tables:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_anon(conn):
            conn.execute(f"select count(*) from public.{table}")


# -----------------------------------------------------------------------------
# Per-variant metrics and the decision rule
# -----------------------------------------------------------------------------
def test_per_variant_metrics_count_each_clean_person_once(
    conn: Connection, operator: Connection, make_owner: Callable[[], Owner], define: Callable[..., Experiment]
) -> None:
    experiment = define(rule=Rule(min_points_per_person=3, min_persons_per_variant=2))
    by_variant: dict[str, list[Owner]] = {"control": [], "treatment": []}
    while len(by_variant["control"]) < 4 or len(by_variant["treatment"]) < 2:
        owner = make_owner()
        arm = _worker_assign(conn, owner.person)
        assert arm is not None
        by_variant[arm.variant].append(owner)
    errors = {"control": [[4.0, -4.0, 4.0], [2.0, 2.0, -2.0]], "treatment": [[10.0, -30.0, 10.0], [6.0, 6.0, 6.0]]}
    expected = {}
    for variant, persons in by_variant.items():
        families = dict((v.name, v.families) for v in VARIANTS)[variant]
        for owner, person_errors in zip(persons, errors[variant], strict=False):
            model = _model(conn, owner.person, families[0], datetime.now(UTC) + timedelta(seconds=1))
            _curve(conn, owner.person, model, ORIGIN, person_errors)
            _expose(conn, owner, model)
        expected[variant] = (
            2,
            6,
            np.mean([np.mean(np.abs(e)) for e in errors[variant]]),
            math.sqrt(np.mean([np.mean(np.square(e)) for e in errors[variant]])),
            np.mean([np.mean(np.abs(e) <= 20) for e in errors[variant]]),
        )
    # Two more persons of the control variant: one with too few points, one served a model from outside.
    short, dirty = by_variant["control"][2:4]
    short_model = _model(conn, short.person, "ridge", datetime.now(UTC) + timedelta(seconds=1))
    _curve(conn, short.person, short_model, ORIGIN, [1.0])
    _expose(conn, short, short_model)
    _expose(conn, dirty, _model(conn, dirty.person, "ar2", datetime.now(UTC)))
    analysis = experiments.analyse(operator, experiments.get(operator, experiment.key))
    measured = {m.variant: (m.persons, m.points, m.mae, m.rmse, m.coverage) for m in analysis.metrics}
    for variant, values in expected.items():
        assert measured[variant] == pytest.approx(values)
    assert analysis.excluded[short.person] == "1 forecast point(s) with an outcome at 30 min, fewer than the 3 needed"
    assert analysis.excluded[dirty.person].startswith("contaminated: served version 1.0.0 (ar2); variant control")
    assert analysis.verdict is not None
    assert analysis.verdict.difference == pytest.approx(expected["treatment"][2] - expected["control"][2])


def test_the_rule_does_not_stop_an_a_a_comparison_and_stops_a_large_effect() -> None:
    rng = np.random.default_rng(20261122)
    rule = Rule(min_persons_per_variant=10)
    names = ("a", "b")
    same = [experiments.decide(rng.normal(12, 3, n), rng.normal(12, 3, n), rule, names) for n in range(10, 200, 10)]
    assert [verdict.decision for verdict in same] == ["continue"] * len(same)
    effect = experiments.decide(rng.normal(12, 3, 60), rng.normal(8, 3, 60), rule, names)
    assert (effect.decision, effect.winner) == ("better", "b")
    assert effect.p_value is not None
    assert effect.p_value <= rule.alpha
    assert experiments.decide(rng.normal(12, 3, 5), rng.normal(6, 3, 5), rule, names).decision == "continue"
    budget = Rule(min_persons_per_variant=10, max_persons_per_variant=40)
    assert experiments.decide(rng.normal(12, 3, 40), rng.normal(12, 3, 40), budget, names).decision == "futility"


# -----------------------------------------------------------------------------
# Training honours the assignment
# -----------------------------------------------------------------------------
def test_a_retrain_trains_the_variants_families_and_replaces_a_model_from_outside(
    conn: Connection, owner: Owner, define: Callable[..., Experiment], tmp_path: Path
) -> None:
    only_ridge = (Variant("a", ("ridge",)), Variant("b", ("ridge",)))
    define(variants=only_ridge)
    Ingest([conn], user_id=owner.user, person_id=owner.person).path(SIMULATED_DIR / "adult-001.json.gz")
    _model(conn, owner.person, "network", ORIGIN)  # active, trained before the experiment
    result = retrain(conn, LocalModelStore(tmp_path), owner.person, "initial")
    assert result.algorithm == "ridge"
    assert result.activated
    assert "replaces network version 1.0.0, not trained under the variant" in result.reason


# -----------------------------------------------------------------------------
# The command line
# -----------------------------------------------------------------------------
def test_the_cli_defines_starts_reports_decides_and_stops(
    database_url: str, operator: Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    key = f"cli-{uuid4().hex[:12]}"
    url = ["--database-url", database_url]
    try:
        assert cli.main(["experiments", "create", key, "--description", "Ridge or network",
                         "--variant", "a=ridge", "--variant", "b=network,ridge:2", *url]) == 0  # fmt: skip
        assert cli.main(["experiments", "start", key, *url]) == 0
        assert cli.main(["experiments", "status", key, *url]) == 0
        out = capsys.readouterr().out
        assert f"{key}  running" in out
        assert "b            weight 2    network,ridge" in out
        assert cli.main(["experiments", "decide", key, *url]) == 3
        assert "continue: a 0, b 0 persons: each variant needs 10" in capsys.readouterr().out
        assert cli.main(["experiments", "start", key, *url]) == 1
        assert f"experiment {key} is running: only a draft experiment can start" in capsys.readouterr().err
        assert cli.main(["experiments", "stop", key, *url]) == 0
        assert f"experiment {key} is stopped" in capsys.readouterr().out
    finally:
        operator.execute("delete from public.experiment where key = %s", (key,))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--variant", "a=ridge", "--variant", "b=lstm"], "families must be some of persistence, ar2, ridge, network"),
        (["--variant", "a=ridge", "--variant", "b"], "'b' is not NAME=FAMILY[,FAMILY...][:WEIGHT]"),
        (["--variant", "a=ridge", "--variant", "b=ridge:x"], "'b=ridge:x' is not NAME=FAMILY"),
        (["--variant", "a=ridge"], "exactly 2 variants with distinct names; got ['a']"),
        (["--variant", "a=ridge", "--variant", "a=network"], "exactly 2 variants with distinct names"),
        (["--variant", "a=ridge", "--variant", "b=network", "--alpha", "0.7"], "alpha 0.7 is not in (0, 0.5)"),
        (["--variant", "a=ridge", "--variant", "b=network", "--horizon", "7"], "horizon 7 is not one of 5, 10"),
    ],
    ids=["unknown family", "no families", "bad weight", "one variant", "same name", "alpha", "horizon"],
)
def test_the_cli_refuses_a_bad_definition_with_exit_2(
    database_url: str, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    argv = ["experiments", "create", "bad-one", "--description", "x", *arguments, "--database-url", database_url]
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        code = int(str(exit_.code))
    assert code == 2
    assert message in capsys.readouterr().err
