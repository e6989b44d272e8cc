"""The model registry in a worker's person scope: versions, champion/challenger decisions, rollback, atomicity."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import torch

from glucokit.db.sessions import Connection, Purpose, as_user, as_worker
from glucokit.errors import GlucokitError
from glucokit.modelops import registry
from glucokit.modelops.model_store import LocalModelStore, ModelArtifacts, model_folder, save_model
from glucokit.modelops.registry import Candidate, ModelVersion
from owners import Owner
from test_cli import glucokit

CANDIDATE = Candidate(
    algorithm="ridge",
    features=["glucose_12", "time_of_day"],
    hyperparameters={"alpha": 1.0},
    metrics={"rmse_30": 15.9},
    data_from=datetime(2026, 10, 1, tzinfo=UTC),
    data_to=datetime(2026, 10, 15, tzinfo=UTC),
)


def register(conn: Connection, owner: Owner, store: LocalModelStore, candidate: Candidate = CANDIDATE) -> ModelVersion:
    """Trains nothing: registers ``candidate`` as the next version with real files, in one scoped transaction."""
    run = registry.start_run(conn, owner.person, "initial")
    version = registry.next_version(registry.latest(conn, owner.person), candidate.features)
    folder = model_folder(owner.user, owner.person, version)
    artifacts = ModelArtifacts({"w": torch.ones(3)}, {"version": version}, "trained\n")
    digest = save_model(store, conn, folder, artifacts)
    model = registry.register(
        conn, owner.person, run, candidate, version=version, storage_path=folder, artifact_sha256=digest
    )
    registry.finish_run(conn, run, succeeded=True, metrics=candidate.metrics)
    return model


def stages(conn: Connection, owner: Owner) -> dict[str, str]:
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        return {model.version: model.stage for model in registry.versions(conn, owner.person)}


def test_versions_bump_minor_for_a_retrain_and_major_for_new_features() -> None:
    latest = ModelVersion(
        id=None, version="1.3.0", algorithm="ridge", stage="active", stage_reason=None, is_fallback=False,  # type: ignore[arg-type]
        storage_path=None, artifact_sha256=None, features=["a", "b"], metrics={}, trained_at=datetime.now(UTC),
        training_run_id=None, data_from=datetime.now(UTC), data_to=datetime.now(UTC),
    )  # fmt: skip
    assert registry.next_version(None, ["a"]) == "1.0.0"
    assert registry.next_version(latest, ["b", "a"]) == "1.4.0"
    assert registry.next_version(latest, ["a", "b", "carbs"]) == "2.0.0"


def test_a_challenger_wins_or_is_rejected_with_its_reason(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        first = register(conn, owner, store)
        registry.activate(conn, owner.person, first, reason="first model")
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        loser = register(conn, owner, store)
        registry.reject(conn, loser, reason="RMSE 30 min 16.2 vs active 15.9 on the same holdout")
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        winner = register(conn, owner, store, Candidate(**{**CANDIDATE.__dict__, "features": ["glucose_12", "carbs"]}))
        registry.activate(conn, owner.person, winner, reason="RMSE 30 min 14.8 vs active 15.9")
    assert stages(conn, owner) == {"1.0.0": "archived", "1.1.0": "rejected", "2.0.0": "active"}
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        reasons = {model.version: model.stage_reason for model in registry.versions(conn, owner.person)}
    assert reasons["1.1.0"] == "RMSE 30 min 16.2 vs active 15.9 on the same holdout"
    assert reasons["1.0.0"] == "replaced by 2.0.0"


def test_rollback_restores_the_previous_version(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    for _ in range(2):
        with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
            registry.activate(conn, owner.person, register(conn, owner, store), reason="better")
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        restored = registry.rollback(conn, owner.person, reason="live error above the trained error")
    assert restored.version == "1.0.0"
    assert stages(conn, owner) == {"1.0.0": "active", "1.1.0": "archived"}
    with (
        as_worker(conn, owner.person, Purpose.TRAINING, "test"),
        pytest.raises(GlucokitError, match="no earlier version to roll back to"),
    ):
        registry.rollback(conn, owner.person, reason="again")


def test_the_models_command_lists_versions_and_rolls_back(
    database_url: str, conn: Connection, owner: Owner, tmp_path: Path
) -> None:
    store = LocalModelStore(tmp_path)
    person = ["--person", str(owner.person), "--database-url", database_url]
    assert glucokit("models", "list", *person).returncode == 3
    for _ in range(2):
        with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
            registry.activate(conn, owner.person, register(conn, owner, store), reason="better")
    listed = glucokit("models", "list", *person)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split()[:3] == ["1.0.0", "archived", "ridge"]
    assert "RMSE30 15.90" in listed.stdout.splitlines()[0]
    assert listed.stdout.splitlines()[2].split()[:2] == ["1.1.0", "active"]
    rolled = glucokit("models", "rollback", *person, "--reason", "live error doubled")
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout == f"person {owner.person}: version 1.0.0 (ridge) is active again\n"
    assert stages(conn, owner) == {"1.0.0": "active", "1.1.0": "archived"}
    again = glucokit("models", "rollback", *person, "--reason", "again")
    assert (again.returncode, again.stderr) == (
        1,
        f"glucokit: error: person {owner.person} has no earlier version to roll back to from 1.0.0\n",
    )


def test_a_worker_killed_mid_registration_leaves_no_model(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        registry.activate(conn, owner.person, register(conn, owner, store), reason="first")

    def killed_before_commit() -> None:
        with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
            model = register(conn, owner, store)
            registry.activate(conn, owner.person, model, reason="better")
            raise KeyboardInterrupt  # the process dies before the transaction commits

    with pytest.raises(KeyboardInterrupt):
        killed_before_commit()
    assert stages(conn, owner) == {"1.0.0": "active"}


def test_users_read_their_models_but_cannot_promote_one(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        candidate = register(conn, owner, store)
    with as_user(conn, owner.user):
        assert [model.version for model in registry.versions(conn, owner.person)] == ["1.0.0"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(conn, owner.user):
        registry.activate(conn, owner.person, candidate, reason="self-promoted")
