"""Retraining one person: read their data, train, store the artifacts, register, keep the better version.

Everything happens in one transaction scoped to the person for training
(``as_worker``; the person must consent to training, and a consent withdrawn
while the person trains rolls everything back): the worker sees only that
person's observations, models and model folder, and a worker killed half-way
leaves no half-registered version (the transaction rolls back). Files it
stored before the kill belong to no registered version (with the local store
they have no row either; Supabase Storage commits each upload on its own):
every retrain starts by sweeping them away.

The new version is compared with the active one on the same recent holdout
(the test split of the data as it is now) and becomes active only when its
RMSE there is lower; otherwise it is kept as rejected, with the reason. With
too little data, or when training fails, a persistence/AR2 baseline flagged
as a fallback stands in, but never replaces a trained model.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import numpy as np

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, Purpose, as_worker
from glucokit.fhir.validation import WITHDRAWN
from glucokit.forecast import (
    ForecastState,
    InsufficientData,
    TrainingOutcome,
    TrainingSettings,
    fallback_state,
    holdout_rmse,
    train_person,
)
from glucokit.forecast.evaluation import headline
from glucokit.forecast.pipeline import DEFAULT_SETTINGS
from glucokit.modelops import experiments, registry
from glucokit.modelops.experiments import Assignment
from glucokit.modelops.model_store import (
    ModelArtifacts,
    ModelStore,
    load_state,
    model_folder,
    person_folder,
    save_model,
)
from glucokit.modelops.registry import Candidate, ModelVersion
from glucokit.units import CARBOHYDRATE_CODE, CGM_CODES, INSULIN_CODE

Readings = list[tuple[datetime, float]]
FALLBACK_FEATURES: Final = ("glucose",)


@dataclass(frozen=True)
class RetrainResult:
    """What one retrain did."""

    person_id: UUID
    run_id: UUID
    version: str | None  # the version registered (None: not even a baseline was possible)
    algorithm: str | None
    activated: bool
    reason: str
    test: dict[str, float]  # headline test metrics of the registered version (empty for a fallback)


def person_readings(conn: Connection, person_id: UUID) -> tuple[Readings, Readings, Readings]:
    """The person's CGM glucose (mg/dL), carbohydrate intakes and insulin deliveries, oldest first."""
    glucose: Readings = []
    carbs: Readings = []
    insulin: Readings = []
    lists = {**dict.fromkeys(CGM_CODES, glucose), CARBOHYDRATE_CODE: carbs, INSULIN_CODE: insulin}
    rows = conn.execute(
        query("retrain_person_readings"),
        {"person_id": person_id, "codes": list(lists), "withdrawn": sorted(WITHDRAWN)},
    )
    for code, effective_at, value in rows:
        assert isinstance(effective_at, datetime)
        lists[str(code)].append((effective_at, float(str(value))))
    return glucose, carbs, insulin


def _artifacts(state: ForecastState, metadata: dict[str, Any], log: list[str]) -> ModelArtifacts:
    return ModelArtifacts(
        weights=state.tensors, metadata={"forecast_state": state.config(), **metadata}, log="\n".join(log) + "\n"
    )


def _metrics(outcome: TrainingOutcome) -> dict[str, float]:
    """The champion's headline test metrics, with the baselines' errors on the same test windows beside them."""
    baselines = {
        f"{name}_rmse_{minutes}": outcome.test[name].at(minutes)["rmse"]
        for name in ("persistence", "ar2")
        for minutes in (30, 60)
    }
    return headline(outcome.test[outcome.champion]) | baselines


@dataclass(frozen=True)
class _Job:
    """One retrain in progress: its transaction, store, person, run and data."""

    conn: Connection
    store: ModelStore
    owner_id: UUID
    person_id: UUID
    run_id: UUID
    data: tuple[Readings, Readings, Readings]
    tz: str
    settings: TrainingSettings
    arm: Assignment | None  # the person's variant in the running experiment

    def register(self, candidate: Candidate, artifacts: ModelArtifacts) -> ModelVersion:
        version = registry.next_version(registry.latest(self.conn, self.person_id), candidate.features)
        folder = model_folder(self.owner_id, self.person_id, version)
        metadata = {**artifacts.metadata, "version": version, "algorithm": candidate.algorithm}
        digest = save_model(self.store, self.conn, folder, ModelArtifacts(artifacts.weights, metadata, artifacts.log))
        return registry.register(
            self.conn,
            self.person_id,
            self.run_id,
            candidate,
            version=version,
            storage_path=folder,
            artifact_sha256=digest,
        )

    def trained(self, outcome: TrainingOutcome) -> RetrainResult:
        candidate = Candidate(
            algorithm=outcome.family,
            features=outcome.features,
            hyperparameters=outcome.hyperparameters[outcome.champion],
            metrics=_metrics(outcome),
            data_from=outcome.first_reading,
            data_to=outcome.last_reading,
        )
        model = self.register(candidate, _artifacts(outcome.state, {"training": outcome.summary()}, outcome.log))
        current = registry.active(self.conn, self.person_id)
        new_score = float(np.mean(outcome.test[outcome.champion].rmse))
        if current is None or current.is_fallback:
            activated, reason = True, f"first trained model: holdout RMSE {new_score:.2f} mg/dL (mean over 5-60 min)"
        elif self.arm is not None and not self.arm.covers(current):
            # Serving the old version would contaminate the person's part in the experiment.
            replaced = f"replaces {current.algorithm} version {current.version}, not trained under the variant"
            activated, reason = True, f"{self.arm}: {replaced}; holdout RMSE {new_score:.2f} mg/dL (mean over 5-60 min)"
        else:
            old_score = holdout_rmse(load_state(self.conn, self.store, current), *self.data, settings=self.settings)
            comparison = f"holdout RMSE {new_score:.2f} vs {old_score:.2f} mg/dL of active {current.version}"
            activated, reason = (
                new_score < old_score,
                comparison if new_score < old_score else f"not better: {comparison}",
            )
        if activated:
            registry.activate(self.conn, self.person_id, model, reason=reason)
        else:
            registry.reject(self.conn, model, reason=reason)
        registry.finish_run(
            self.conn, self.run_id, succeeded=True, metrics={"version": model.version, **candidate.metrics}
        )
        return RetrainResult(
            self.person_id, self.run_id, model.version, outcome.family, activated, reason, candidate.metrics
        )

    def fallback(self, why: str, log: list[str]) -> RetrainResult:
        try:
            state = fallback_state(*self.data, tz=self.tz)
        except InsufficientData as short:
            error = f"{why}; no baseline either: {short.reason}"
            registry.finish_run(self.conn, self.run_id, succeeded=False, error=error)
            return RetrainResult(self.person_id, self.run_id, None, None, False, error, {})
        glucose = self.data[0]
        candidate = Candidate(
            algorithm=state.model.family,
            features=FALLBACK_FEATURES,
            hyperparameters=state.model.config,
            metrics={},
            data_from=glucose[0][0],
            data_to=glucose[-1][0],
            is_fallback=True,
        )
        model = self.register(candidate, _artifacts(state, {"fallback": why}, log))
        current = registry.active(self.conn, self.person_id)
        if current is None or current.is_fallback:
            activated, reason = True, f"baseline fallback ({why})"
            registry.activate(self.conn, self.person_id, model, reason=reason)
        else:
            activated, reason = False, f"a baseline does not replace trained version {current.version} ({why})"
            registry.reject(self.conn, model, reason=reason)
        registry.finish_run(self.conn, self.run_id, succeeded=True, metrics={"version": model.version, "fallback": why})
        return RetrainResult(self.person_id, self.run_id, model.version, state.model.family, activated, reason, {})


def retrain(
    conn: Connection,
    store: ModelStore,
    person_id: UUID,
    trigger: str,
    *,
    attempt: int = 1,
    settings: TrainingSettings = DEFAULT_SETTINGS,
) -> RetrainResult:
    """Retrains ``person_id`` in one transaction scoped to them; see the module's docstring."""
    with as_worker(conn, person_id, Purpose.TRAINING, f"{trigger} retrain, attempt {attempt}"):
        person = conn.execute(query("retrain_person"), {"person_id": person_id}).fetchone()
        if person is None:
            raise ValueError(f"person {person_id} is not in this worker's scope")
        owner_id, tz = person
        assert isinstance(owner_id, UUID)
        # Files of an earlier retrain that died before its version was registered.
        store.sweep(conn, person_folder(owner_id, person_id))
        run_id = registry.start_run(conn, person_id, trigger, attempt=attempt)
        # In a running experiment the person trains only their variant's families.
        arm = experiments.assign(conn, person_id)
        if arm is not None:
            settings = arm.settings(settings)
        job = _Job(conn, store, owner_id, person_id, run_id, person_readings(conn, person_id), str(tz), settings, arm)
        try:
            outcome = train_person(*job.data, tz=job.tz, settings=settings)
        except InsufficientData as short:
            result = job.fallback(short.reason, [short.reason])
        except Exception as failure:
            why = f"training failed: {failure!r}"
            result = job.fallback(why, [why, traceback.format_exc()])
        else:
            result = job.trained(outcome)
        # Consent withdrawn while the person trained: nothing of this retrain may stay.
        conn.execute(query("assert_consent"))
        return result
