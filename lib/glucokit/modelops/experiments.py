"""A/B experiments over model families across persons: assignment, exposure, per-variant metrics, decision rule.

An experiment (``public.experiment``, migration 20261122121300) has two
variants, each a set of model families with an integer weight. The retrain
worker assigns the person in its scope to a variant of the running experiment
(``assign``) and trains only that variant's families. The assignment is sticky
and deterministic: ``variant_for`` here and ``private.experiment_variant_for``
in the database compute the same variant from SHA-256 of ``key:person_id``.
When the API serves a forecast curve of an assigned person, it logs an exposure
in the user's transaction (``log_exposure``), contaminated when the served
model was not trained under the variant.

``analyse`` reads, as the database owner, the observed errors of the forecasts
(``public.forecast_outcome``) of the models each exposed person was served,
summarises them per person (MAE, mean squared error, band coverage at the
experiment's horizon), then per variant, and applies the decision rule to the
per-person MAEs: the person is the unit, since points of one person are
correlated.

The decision rule is a mixture sequential probability ratio test (mSPRT;
Johari, Pekelis and Walsh, "Always Valid Inference: Continuous Monitoring of
A/B Tests", Operations Research 70(3), 2022; arXiv:1512.04922, 2015). With
``d`` the difference of the variants' mean per-person MAE, ``V`` its variance
(s_a^2/n_a + s_b^2/n_b) and a normal mixture N(0, tau^2) over the true
difference under H1, the mixture likelihood ratio against H0 (no difference) is

    Lambda = sqrt(V / (V + tau^2)) * exp(d^2 tau^2 / (2 V (V + tau^2)))

(their two-stream normal case, with V = 2 sigma^2 / n). Under H0 Lambda is a
nonnegative martingale with mean 1, so by Ville's inequality
P(Lambda ever >= 1/alpha) <= alpha: stopping the first time Lambda >= 1/alpha
keeps the type-I error at alpha however often one looks. ``1 / Lambda``
(at most 1) is the always-valid p-value of the current look. The variance is
estimated from the data (a plug-in), so the guarantee is approximate;
bench/experiments.py measures the error rate it actually has.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from glucokit.db.queries import query
from glucokit.db.sessions import Connection
from glucokit.errors import GlucokitError, NotFound
from glucokit.forecast import TrainingSettings
from glucokit.forecast.pipeline import FAMILIES
from glucokit.modelops.registry import ModelVersion

HASH_HEX_DIGITS: Final = 15  # 60 bits of the SHA-256 digest: a nonnegative bigint in SQL
KEY: Final = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
VARIANT_NAME: Final = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MAX_WEIGHT: Final = 1000
VARIANTS: Final = 2  # the decision rule compares two variants

Decision = Literal["continue", "better", "futility"]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Variant:
    """One arm: the model families its persons are trained with, and its share of persons."""

    name: str
    families: tuple[str, ...]
    weight: int = 1

    def __post_init__(self) -> None:
        if not VARIANT_NAME.match(self.name):
            raise ValueError(f"variant name {self.name!r} must be 1-32 of a-z, 0-9, _ and -, starting with a letter")
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown or not self.families:
            raise ValueError(
                f"variant {self.name}: families must be some of {', '.join(FAMILIES)}; "
                f"got {', '.join(self.families) or 'none'}"
            )
        if not 1 <= self.weight <= MAX_WEIGHT:
            raise ValueError(f"variant {self.name}: weight {self.weight} is not in 1..{MAX_WEIGHT}")


@dataclass(frozen=True)
class Rule:
    """The decision rule's parameters (the experiment's columns of the same names)."""

    horizon_minutes: int = 30
    alpha: float = 0.05
    mixture_sd: float = 2.0  # mg/dL: the scale of MAE differences the test is most sensitive to
    min_points_per_person: int = 12
    min_persons_per_variant: int = 10
    max_persons_per_variant: int | None = None  # the futility budget

    def __post_init__(self) -> None:
        checks = (
            (5 <= self.horizon_minutes <= 60 and self.horizon_minutes % 5 == 0,
             f"horizon {self.horizon_minutes} is not one of 5, 10, ..., 60 minutes"),
            (0 < self.alpha < 0.5, f"alpha {self.alpha} is not in (0, 0.5)"),
            (self.mixture_sd > 0, f"mixture sd {self.mixture_sd} is not above 0 mg/dL"),
            (self.min_points_per_person >= 1, f"min points per person {self.min_points_per_person} is below 1"),
            (self.min_persons_per_variant >= 2, f"min persons per variant {self.min_persons_per_variant} is below 2"),
            (self.max_persons_per_variant is None or self.max_persons_per_variant >= self.min_persons_per_variant,
             f"max persons per variant {self.max_persons_per_variant} is below the minimum"),
        )  # fmt: skip
        problems = [problem for holds, problem in checks if not holds]
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class Experiment:
    """One experiment as stored."""

    id: UUID
    key: str
    description: str
    status: str
    rule: Rule
    variants: tuple[Variant, ...]
    created_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    decided_at: datetime | None
    decision: dict[str, Any] | None


def variant_for(key: str, person_id: UUID, variants: Sequence[Variant]) -> str:
    """The variant a person gets: h = the first 60 bits of SHA-256(key:person_id); slot = h mod the total weight;
    the variants, in byte order of their names, take consecutive slot ranges as wide as their weights."""
    h = int(hashlib.sha256(f"{key}:{person_id}".encode()).hexdigest()[:HASH_HEX_DIGITS], 16)
    ordered = sorted(variants, key=lambda variant: variant.name.encode())
    slot = h % sum(variant.weight for variant in ordered)
    upper = 0
    for variant in ordered:
        upper += variant.weight
        if slot < upper:
            return variant.name
    raise AssertionError("a slot below the total weight falls in some variant")


# -----------------------------------------------------------------------------
# Workers and users: assignment and exposure
# -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Assignment:
    """The variant of the person in a worker's scope, in the running experiment."""

    experiment_key: str
    variant: str
    families: list[str]
    assigned_at: datetime

    def __str__(self) -> str:
        return f"experiment {self.experiment_key}, variant {self.variant} ({', '.join(self.families)})"

    def settings(self, base: TrainingSettings) -> TrainingSettings:
        """``base`` restricted to the variant's families."""
        try:
            return replace(base, families=tuple(self.families))
        except ValueError as bad:
            raise GlucokitError(f"{self}: {bad}") from None

    def covers(self, model: ModelVersion) -> bool:
        """Whether ``model`` was trained under the variant (serving any other contaminates the person)."""
        return model.algorithm in self.families and model.trained_at >= self.assigned_at


def assign(conn: Connection, person_id: UUID) -> Assignment | None:
    """In a worker transaction scoped to ``person_id``: their variant in the running experiment (assigning them
    on the first call); None when no experiment runs."""
    with conn.cursor(row_factory=class_row(Assignment)) as cursor:
        return cursor.execute(query("experiment_assign"), {"person_id": person_id}).fetchone()


def log_exposure(conn: Connection, person_id: UUID, model_id: UUID, generated_at: datetime) -> int:
    """In the owner's transaction: log that the curve ``model_id`` made at ``generated_at`` was served; returns the
    number of exposures logged (one per running experiment the person is assigned to, else none)."""
    row = conn.execute(
        query("experiment_log_exposure"),
        {"person_id": person_id, "model_id": model_id, "generated_at": generated_at},
    ).fetchone()
    assert row is not None
    assert isinstance(row[0], int)
    return row[0]


# -----------------------------------------------------------------------------
# Operators: defining and running experiments (as the database owner)
# -----------------------------------------------------------------------------
def create(conn: Connection, key: str, description: str, variants: Sequence[Variant], rule: Rule) -> Experiment:
    """Defines a draft experiment; raises ValueError on a bad definition and GlucokitError when the key is taken."""
    if not KEY.match(key):
        raise ValueError(f"experiment key {key!r} must be 1-64 of a-z, 0-9, _ and -, starting with a letter")
    if not description.strip() or len(description) > 2000:
        raise ValueError("the description must be 1 to 2000 characters and not blank")
    names = [variant.name for variant in variants]
    if len(variants) != VARIANTS or len(set(names)) != VARIANTS:
        raise ValueError(f"an experiment compares exactly {VARIANTS} variants with distinct names; got {names}")
    try:
        with conn.transaction():
            row = conn.execute(
                query("experiment_insert"), {"key": key, "description": description, **asdict(rule)}
            ).fetchone()
            assert row is not None
            for variant in variants:
                conn.execute(
                    query("experiment_insert_variant"),
                    {"experiment_id": row[0], "name": variant.name, "families": list(variant.families),
                     "weight": variant.weight},
                )  # fmt: skip
    except psycopg.errors.UniqueViolation:
        raise GlucokitError(f"an experiment {key} exists already") from None
    return get(conn, key)


def get(conn: Connection, key: str) -> Experiment:
    row = conn.execute(query("experiment_select"), {"key": key}).fetchone()
    if row is None:
        raise NotFound(f"no experiment {key}")
    return _experiment(row)


def all_experiments(conn: Connection) -> list[Experiment]:
    return [_experiment(row) for row in conn.execute(query("experiment_select"), {"key": None})]


def _experiment(row: tuple[object, ...]) -> Experiment:
    (id_, key, description, status, horizon, alpha, mixture_sd, min_points, min_persons, max_persons,
     created_at, started_at, stopped_at, decided_at, decision, variants) = row  # fmt: skip
    assert isinstance(id_, UUID)
    assert isinstance(variants, list)
    return Experiment(
        id=id_, key=str(key), description=str(description), status=str(status),
        rule=Rule(int(str(horizon)), float(str(alpha)), float(str(mixture_sd)), int(str(min_points)),
                  int(str(min_persons)), None if max_persons is None else int(str(max_persons))),
        variants=tuple(Variant(v["name"], tuple(v["families"]), v["weight"]) for v in variants),
        created_at=created_at, started_at=started_at, stopped_at=stopped_at, decided_at=decided_at,  # type: ignore[arg-type]
        decision=decision,  # type: ignore[arg-type]
    )  # fmt: skip


# The status an experiment must have for each action.
TRANSITIONS: Final = {"start": "draft", "stop": "running"}


def transition(conn: Connection, key: str, action: Literal["start", "stop"]) -> Experiment:
    """Starts a draft experiment or stops a running one."""
    before = TRANSITIONS[action]
    experiment = get(conn, key)
    if experiment.status != before:
        raise GlucokitError(f"experiment {key} is {experiment.status}: only a {before} experiment can {action}")
    try:
        with conn.transaction():
            conn.execute(query(f"experiment_{action}"), {"id": experiment.id})
    except psycopg.errors.UniqueViolation:
        running = next(e.key for e in all_experiments(conn) if e.status == "running")
        raise GlucokitError(f"experiment {running} is running: stop it first (one experiment runs at a time)") from None
    return get(conn, key)


# -----------------------------------------------------------------------------
# Analysis
# -----------------------------------------------------------------------------
@dataclass(frozen=True)
class VariantCounts:
    variant: str
    assigned: int
    exposed: int
    contaminated: int  # persons with at least one contaminated exposure


def counts(conn: Connection, experiment: Experiment) -> list[VariantCounts]:
    """Per variant: persons assigned, exposed, and contaminated."""
    with conn.cursor(row_factory=class_row(VariantCounts)) as cursor:
        return cursor.execute(query("experiment_counts"), {"experiment_id": experiment.id}).fetchall()


@dataclass(frozen=True)
class PersonOutcome:
    """One exposed person's forecast errors at the experiment's horizon (None without points)."""

    person_id: UUID
    variant: str
    contamination: str | None
    points: int
    mae: float | None
    mse: float | None
    coverage: float | None


@dataclass(frozen=True)
class VariantMetrics:
    """A variant's outcome over its included persons: each person weighs the same."""

    variant: str
    persons: int
    points: int
    mae: float  # mean of the per-person MAEs, mg/dL
    rmse: float  # square root of the mean of the per-person mean squared errors, mg/dL
    coverage: float  # mean of the per-person shares of observations inside the band


@dataclass(frozen=True)
class Verdict:
    """The decision rule at the current look."""

    decision: Decision
    winner: str | None  # the variant with the lower MAE, when decision is "better"
    difference: float | None  # mean per-person MAE of the second variant minus the first, mg/dL
    log_likelihood_ratio: float | None
    threshold: float  # log(1 / alpha)
    p_value: float | None  # always valid: min(1, 1 / Lambda)
    reason: str


@dataclass(frozen=True)
class Analysis:
    experiment: str
    horizon_minutes: int
    metrics: list[VariantMetrics]
    excluded: dict[UUID, str] = field(default_factory=dict)  # person -> why they are left out
    verdict: Verdict | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "horizon_minutes": self.horizon_minutes,
            "metrics": [asdict(m) for m in self.metrics],
            "excluded": {str(person): why for person, why in self.excluded.items()},
            "verdict": asdict(self.verdict) if self.verdict else None,
        }


def mixture_log_likelihood_ratio(
    difference: FloatArray | float, variance: FloatArray | float, mixture_variance: float
) -> FloatArray:
    """log Lambda of the normal-mixture SPRT for a difference estimate with the given variance (elementwise):
    log Lambda = 1/2 log(V / (V + tau^2)) + d^2 tau^2 / (2 V (V + tau^2))   [Johari, Pekelis, Walsh]."""
    d, v = np.asarray(difference, dtype=np.float64), np.asarray(variance, dtype=np.float64)
    total = v + mixture_variance
    return np.asarray(0.5 * np.log(v / total) + d * d * mixture_variance / (2.0 * v * total), dtype=np.float64)


def decide(first: FloatArray, second: FloatArray, rule: Rule, names: tuple[str, str]) -> Verdict:
    """The decision rule on the per-person MAEs of two variants (in the order of ``names``)."""
    threshold = math.log(1.0 / rule.alpha)
    counts = f"{names[0]} {len(first)}, {names[1]} {len(second)} persons"
    if min(len(first), len(second)) < rule.min_persons_per_variant:
        why = f"{counts}: each variant needs {rule.min_persons_per_variant} before the rule may stop"
        return Verdict("continue", None, None, None, threshold, None, why)
    difference = float(np.mean(second) - np.mean(first))
    variance = float(np.var(first, ddof=1) / len(first) + np.var(second, ddof=1) / len(second))
    log_lr = float(mixture_log_likelihood_ratio(difference, variance, rule.mixture_sd**2))
    p_value = min(1.0, math.exp(-log_lr))
    stated = f"{counts}: MAE difference {difference:+.2f} mg/dL, log Lambda {log_lr:.2f} vs {threshold:.2f}"
    if log_lr >= threshold:
        winner = names[1] if difference < 0 else names[0]
        why = f"{stated}: {winner} has the lower error (always-valid p {p_value:.4f} <= {rule.alpha})"
        return Verdict("better", winner, difference, log_lr, threshold, p_value, why)
    budget = rule.max_persons_per_variant
    if budget is not None and min(len(first), len(second)) >= budget:
        why = f"{stated}: no difference found within the budget of {budget} persons per variant"
        return Verdict("futility", None, difference, log_lr, threshold, p_value, why)
    return Verdict("continue", None, difference, log_lr, threshold, p_value, stated)


def person_outcomes(conn: Connection, experiment: Experiment) -> list[PersonOutcome]:
    """Each exposed person's errors on the forecasts of the clean models they were served, up to the stop."""
    with conn.cursor(row_factory=class_row(PersonOutcome)) as cursor:
        return cursor.execute(
            query("experiment_person_outcomes"),
            {"experiment_id": experiment.id, "horizon": experiment.rule.horizon_minutes,
             "until": experiment.stopped_at},
        ).fetchall()  # fmt: skip


def analyse(conn: Connection, experiment: Experiment) -> Analysis:
    """Per-variant metrics, the persons left out and why, and the decision rule at this look."""
    rule = experiment.rule
    excluded: dict[UUID, str] = {}
    included: dict[str, list[PersonOutcome]] = {variant.name: [] for variant in experiment.variants}
    for person in person_outcomes(conn, experiment):
        if person.contamination is not None:
            excluded[person.person_id] = f"contaminated: {person.contamination}"
        elif person.points < rule.min_points_per_person:
            excluded[person.person_id] = (
                f"{person.points} forecast point(s) with an outcome at {rule.horizon_minutes} min, "
                f"fewer than the {rule.min_points_per_person} needed"
            )
        else:
            included[person.variant].append(person)
    metrics = [
        VariantMetrics(
            variant=name, persons=len(persons), points=sum(p.points for p in persons),
            mae=float(np.mean([p.mae for p in persons])) if persons else math.nan,
            rmse=math.sqrt(float(np.mean([p.mse for p in persons]))) if persons else math.nan,
            coverage=float(np.mean([p.coverage for p in persons])) if persons else math.nan,
        )
        for name, persons in included.items()
    ]  # fmt: skip
    first, second = sorted(included, key=str.encode)
    verdict = decide(
        np.array([p.mae for p in included[first]], dtype=np.float64),
        np.array([p.mae for p in included[second]], dtype=np.float64),
        rule,
        (first, second),
    )
    return Analysis(experiment.key, rule.horizon_minutes, metrics, excluded, verdict)


def record_decision(conn: Connection, experiment: Experiment, analysis: Analysis) -> Experiment:
    """Ends a running or stopped experiment with the analysis that decided it."""
    if experiment.status not in ("running", "stopped"):
        raise GlucokitError(f"experiment {experiment.key} is {experiment.status}: only a started one can be decided")
    with conn.transaction():
        conn.execute(query("experiment_decide"), {"id": experiment.id, "decision": Jsonb(analysis.as_json())})
    return get(conn, experiment.key)
