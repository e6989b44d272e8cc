"""The model registry: training runs, model versions and which one is active, for the person in a worker's scope.

Every function runs inside the caller's transaction, which is scoped to one
person (``sessions.as_worker``): the policies let a worker see and write that
person's runs and models only. Because a version is registered, judged and
(when it wins) activated in that one transaction together with its files'
rows, a worker killed half-way leaves nothing half-registered: the transaction
rolls back, and the previous active version stays active.

Versions are semantic: a retrain with the same features bumps the minor
version, a change of the feature set bumps the major version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from glucokit.db.queries import query
from glucokit.db.sessions import Connection
from glucokit.errors import GlucokitError
from glucokit.modelops.model_store import MODEL_TYPE

FIRST_VERSION: Final = "1.0.0"


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version (a row of public.ml_model)."""

    id: UUID
    version: str
    algorithm: str
    stage: str
    stage_reason: str | None
    is_fallback: bool
    storage_path: str | None
    artifact_sha256: str | None
    features: list[str]
    metrics: dict[str, Any]
    trained_at: datetime
    training_run_id: UUID | None
    data_from: datetime
    data_to: datetime


def _semver(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.split("-", 1)[0].split("+", 1)[0].split("."))
    return major, minor, patch


def next_version(latest: ModelVersion | None, features: Sequence[str]) -> str:
    """The version a new model gets: minor bump for a retrain, major bump when the features change."""
    if latest is None:
        return FIRST_VERSION
    major, minor, _patch = _semver(latest.version)
    if sorted(latest.features) != sorted(features):
        return f"{major + 1}.0.0"
    return f"{major}.{minor + 1}.0"


def versions(conn: Connection, person_id: UUID, model_type: str = MODEL_TYPE) -> list[ModelVersion]:
    """The person's model versions, oldest first by semantic version."""
    with conn.cursor(row_factory=class_row(ModelVersion)) as cursor:
        found = cursor.execute(
            query("registry_versions"), {"person_id": person_id, "model_type": model_type}
        ).fetchall()
    return sorted(found, key=lambda model: _semver(model.version))


def latest(conn: Connection, person_id: UUID, model_type: str = MODEL_TYPE) -> ModelVersion | None:
    """The person's highest version, whatever its stage (the base of the next version number)."""
    found = versions(conn, person_id, model_type)
    return found[-1] if found else None


def active(conn: Connection, person_id: UUID, model_type: str = MODEL_TYPE) -> ModelVersion | None:
    """The person's active version (at most one: ``ml_model_one_active_idx``), read by that index alone: a forecast
    pass reads it for every person, however many versions they have."""
    with conn.cursor(row_factory=class_row(ModelVersion)) as cursor:
        return cursor.execute(query("registry_active"), {"person_id": person_id, "model_type": model_type}).fetchone()


def start_run(conn: Connection, person_id: UUID, trigger: str, *, reason: str | None = None, attempt: int = 1) -> UUID:
    """Records a training run that starts now."""
    row = conn.execute(
        query("registry_start_run"), {"person_id": person_id, "trigger": trigger, "reason": reason, "attempt": attempt}
    ).fetchone()
    assert row is not None
    run_id = row[0]
    assert isinstance(run_id, UUID)
    return run_id


def finish_run(
    conn: Connection, run_id: UUID, *, succeeded: bool, metrics: dict[str, Any] | None = None, error: str | None = None
) -> None:
    conn.execute(
        query("registry_finish_run"),
        {
            "run_id": run_id,
            "status": "succeeded" if succeeded else "failed",
            "metrics": Jsonb(metrics or {}),
            "error": None if succeeded else (error or "failed"),
        },
    )


@dataclass(frozen=True)
class Candidate:
    """What a training run produced, to be registered as a new version."""

    algorithm: str
    features: Sequence[str]
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any]
    data_from: datetime
    data_to: datetime
    is_fallback: bool = False


def register(
    conn: Connection,
    person_id: UUID,
    run_id: UUID,
    candidate: Candidate,
    *,
    version: str,
    storage_path: str | None,
    artifact_sha256: str | None,
    card: dict[str, Any] | None = None,
) -> ModelVersion:
    """Registers a candidate version (not active yet), with its model card's facts (``model_card.facts``)."""
    with conn.cursor(row_factory=class_row(ModelVersion)) as cursor:
        model = cursor.execute(
            query("registry_register"),
            {
                "person_id": person_id,
                "model_type": MODEL_TYPE,
                "version": version,
                "algorithm": candidate.algorithm,
                "is_fallback": candidate.is_fallback,
                "training_run_id": run_id,
                "storage_path": storage_path,
                "artifact_sha256": artifact_sha256,
                "data_from": candidate.data_from,
                "data_to": candidate.data_to,
                "features": list(candidate.features),
                "hyperparameters": Jsonb(candidate.hyperparameters),
                "metrics": Jsonb(candidate.metrics),
                "card": None if card is None else Jsonb(card),
            },
        ).fetchone()
    assert model is not None
    return model


def _set_stage(conn: Connection, model_id: UUID, stage: str, reason: str) -> None:
    conn.execute(query("registry_set_stage"), {"id": model_id, "stage": stage, "reason": reason})


def activate(conn: Connection, person_id: UUID, model: ModelVersion, *, reason: str) -> None:
    """Makes ``model`` the person's active version; the one it replaces is archived."""
    current = active(conn, person_id)
    if current is not None:
        _set_stage(conn, current.id, "archived", f"replaced by {model.version}")
    _set_stage(conn, model.id, "active", reason)


def reject(conn: Connection, model: ModelVersion, *, reason: str) -> None:
    """Records that ``model`` lost to the active version (it stays registered, with its files)."""
    _set_stage(conn, model.id, "rejected", reason)


def rollback(conn: Connection, person_id: UUID, *, reason: str) -> ModelVersion:
    """Archives the active version and reactivates the newest archived one before it; returns that one."""
    history = versions(conn, person_id)
    current = next((model for model in history if model.stage == "active"), None)
    if current is None:
        raise GlucokitError(f"person {person_id} has no active model to roll back")
    earlier = [
        model for model in history if model.stage == "archived" and _semver(model.version) < _semver(current.version)
    ]
    if not earlier:
        raise GlucokitError(f"person {person_id} has no earlier version to roll back to from {current.version}")
    previous = earlier[-1]
    _set_stage(conn, current.id, "archived", f"rolled back: {reason}")
    _set_stage(conn, previous.id, "active", f"restored by a rollback from {current.version}: {reason}")
    return previous
