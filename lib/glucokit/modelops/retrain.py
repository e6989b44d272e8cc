"""Retraining persons: read their data, train, store the artifacts, register, keep the better version.

A retrain has three phases, and persons retrain in batches (the retrain job's
batch; one person alone is a batch of one, ``retrain``):

1. ``read``: in a transaction scoped to the person for training (``as_worker``;
   the person must consent to training, and the audit log records it), their
   observations, time zone and experiment variant;
2. ``train``: no database; every person's network candidates of the batch
   train as one stack (``forecast.pipeline.fit_networks``, on the ``device``
   asked for), then each person's cheap candidates and the scoring, choice and
   bands (``finish_training``). On the CPU a person's outcome is the same, to
   the bit, in any batch. A person whose training fails (or who has too
   little data) gets the fallback below; the others of the batch train on;
3. ``finish``: in a second transaction scoped to the person for training, the
   training run, the artifacts, the registration and the champion/challenger
   judgement. A consent withdrawn since the read makes the transaction fail
   (nothing of the retrain stays), and one withdrawn while it runs rolls it
   back. A worker killed half-way leaves no half-registered version (the
   transaction rolls back). Files it stored before the kill belong to no
   registered version (with the local store they have no row either;
   Supabase Storage commits each upload on its own): every finish starts by
   sweeping them away.

The new version is compared with the active one on the same recent holdout
(the test split of the data read) and becomes active only when its RMSE there
is lower; otherwise it is kept as rejected, with the reason. With too little
data, or when training fails, a persistence/AR2 baseline flagged as a
fallback stands in, but never replaces a trained model.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
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
)
from glucokit.forecast.evaluation import headline
from glucokit.forecast.pipeline import DEFAULT_SETTINGS, Training, finish_training, fit_networks, prepare_training
from glucokit.modelops import experiments, model_card, registry
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

logger = logging.getLogger(__name__)

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
class Request:
    """A retrain to do: whose, why (the trigger) and which attempt of the request it is."""

    person_id: UUID
    trigger: str
    attempt: int = 1

    @property
    def reason(self) -> str:
        """Why the worker reads and writes the person's data, for the audit log."""
        return f"{self.trigger} retrain, attempt {self.attempt}"


@dataclass
class Person:
    """A person of a batch, from ``read`` to ``finish``: their data, then their training's outcome or fallback."""

    request: Request
    owner_id: UUID
    tz: str
    data: tuple[Readings, Readings, Readings]
    settings: TrainingSettings  # the variant's, in a running experiment
    arm: Assignment | None  # the person's variant in the running experiment
    training: Training | None = None
    outcome: TrainingOutcome | None = None
    fallback: tuple[str, list[str]] = ("not trained", ["not trained"])  # why, and the log, without an outcome

    @property
    def person_id(self) -> UUID:
        return self.request.person_id

    def fall_back(self, why: str, *log: str) -> None:
        self.training, self.fallback = None, (why, [why, *log])


@dataclass(frozen=True)
class _Job:
    """One retrain being finished: its transaction, store, person and run."""

    conn: Connection
    store: ModelStore
    person: Person
    run_id: UUID

    @property
    def owner_id(self) -> UUID:
        return self.person.owner_id

    @property
    def person_id(self) -> UUID:
        return self.person.person_id

    @property
    def data(self) -> tuple[Readings, Readings, Readings]:
        return self.person.data

    @property
    def settings(self) -> TrainingSettings:
        return self.person.settings

    @property
    def arm(self) -> Assignment | None:
        return self.person.arm

    def register(self, candidate: Candidate, artifacts: ModelArtifacts) -> ModelVersion:
        version = registry.next_version(registry.latest(self.conn, self.person_id), candidate.features)
        folder = model_folder(self.owner_id, self.person_id, version)
        metadata = {**artifacts.metadata, "version": version, "algorithm": candidate.algorithm}
        digest = save_model(self.store, self.conn, folder, ModelArtifacts(artifacts.weights, metadata, artifacts.log))
        card = model_card.facts(version, candidate, metadata)
        model_card.save(self.store, self.conn, folder, card)
        return registry.register(
            self.conn,
            self.person_id,
            self.run_id,
            candidate,
            version=version,
            storage_path=folder,
            artifact_sha256=digest,
            card=card,
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
            state = load_state(self.conn, self.store, current)
            old_score = holdout_rmse(state, *self.data, settings=self.settings, training=self.person.training)
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
            state = fallback_state(*self.data, tz=self.person.tz)
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


def read(conn: Connection, request: Request, settings: TrainingSettings = DEFAULT_SETTINGS) -> Person:
    """Phase 1: the person's data and experiment variant, in a transaction scoped to them for training."""
    person_id = request.person_id
    with as_worker(conn, person_id, Purpose.TRAINING, request.reason):
        person = conn.execute(query("retrain_person"), {"person_id": person_id}).fetchone()
        if person is None:
            raise ValueError(f"person {person_id} is not in this worker's scope")
        owner_id, tz = person
        assert isinstance(owner_id, UUID)
        # In a running experiment the person trains only their variant's families.
        arm = experiments.assign(conn, person_id)
        if arm is not None:
            settings = arm.settings(settings)
        return Person(request, owner_id, str(tz), person_readings(conn, person_id), settings, arm)


def train(persons: Sequence[Person], device: str | None = None) -> None:
    """Phase 2, no database: trains every person of the batch, their networks as one stack; never raises.

    Each person ends with an ``outcome``, or a ``fallback`` reason (too little
    data; their training failed). A stack that fails is trained again one
    person at a time, so that only the person whose training fails falls back.
    """
    for person in persons:
        try:
            person.training = prepare_training(*person.data, tz=person.tz, settings=person.settings)
        except InsufficientData as short:
            person.fall_back(short.reason)
        except Exception as failure:
            person.fall_back(f"training failed: {failure!r}", traceback.format_exc())
    ready = [person for person in persons if person.training is not None]
    if len(ready) > 1:
        try:
            fit_networks([person.training for person in ready if person.training is not None], device)
        except Exception as failure:
            logger.warning("a stack of %d persons failed to train (%r); each trains alone", len(ready), failure)
    for person in ready:
        assert person.training is not None
        try:
            fit_networks([person.training], device)  # nothing is left to fit unless the stack failed
            person.outcome = finish_training(person.training)
        except Exception as failure:
            person.fall_back(f"training failed: {failure!r}", traceback.format_exc())


def finish(conn: Connection, store: ModelStore, person: Person) -> RetrainResult:
    """Phase 3: stores, registers and judges the person's new version in a transaction scoped to them."""
    request = person.request
    with as_worker(conn, person.person_id, Purpose.TRAINING, request.reason):
        # Files of an earlier retrain that died before its version was registered.
        store.sweep(conn, person_folder(person.owner_id, person.person_id))
        run_id = registry.start_run(conn, person.person_id, request.trigger, attempt=request.attempt)
        job = _Job(conn, store, person, run_id)
        result = job.trained(person.outcome) if person.outcome is not None else job.fallback(*person.fallback)
        # Consent withdrawn since the read or while finishing: nothing of this retrain may stay.
        conn.execute(query("assert_consent"))
        return result


def retrain(
    conn: Connection,
    store: ModelStore,
    person_id: UUID,
    trigger: str,
    *,
    attempt: int = 1,
    settings: TrainingSettings = DEFAULT_SETTINGS,
    device: str | None = None,
) -> RetrainResult:
    """Retrains ``person_id``: a batch of one (``read``, ``train``, ``finish``); see the module's docstring."""
    person = read(conn, Request(person_id, trigger, attempt), settings)
    train([person], device)
    return finish(conn, store, person)
