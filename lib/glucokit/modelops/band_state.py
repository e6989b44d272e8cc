"""The adaptive band state of a person's models in the database: what the forecast writer serves with, and
what each recorded outcome teaches it (the method: glucokit.forecast.bands).

Runs in a worker transaction scoped to the person. The state lives in
``private.band_state``, which only ``private.read_band_state`` and
``private.save_band_state`` reach, for the scoped person's models only; the
read locks the rows until the transaction ends, so two workers never learn
from the same state and lose one's outcomes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from glucokit.db.queries import query
from glucokit.db.sessions import Connection
from glucokit.forecast import HORIZON_MINUTES, ForecastState
from glucokit.forecast.bands import start, track


@dataclass(frozen=True)
class HorizonBand:
    """One horizon's band state."""

    half_width: float  # mg/dL, served now
    step: float  # mg/dL per outcome
    outcomes: int  # learned from
    misses: int  # of them outside the band


@dataclass(frozen=True)
class Outcome:
    """A recorded outcome, as the band learns from it."""

    model_id: UUID
    minutes: int
    target_at: datetime
    inside: bool
    coverage: float  # the nominal coverage of the forecast's band


def read(conn: Connection, model_id: UUID) -> dict[int, HorizonBand]:
    """The model's band state per horizon (minutes); empty when it has not served a band yet."""
    rows = conn.execute(query("read_band_state"), {"model_id": model_id})
    return {
        int(str(minutes)): HorizonBand(float(str(width)), float(str(step)), int(str(count)), int(str(missed)))
        for minutes, width, step, count, missed in rows
    }


def save(conn: Connection, model_id: UUID, bands: Mapping[int, HorizonBand]) -> None:
    horizons = sorted(bands)
    conn.execute(
        query("save_band_state"),
        {
            "model_id": model_id,
            "horizons": horizons,
            "half_widths": [bands[m].half_width for m in horizons],
            "steps": [bands[m].step for m in horizons],
            "outcomes": [bands[m].outcomes for m in horizons],
            "misses": [bands[m].misses for m in horizons],
        },
    )


def serving(conn: Connection, model_id: UUID, state: ForecastState) -> ForecastState:
    """``state`` with the half-widths the model serves now; the first time, they start from the trained ones."""
    bands = read(conn, model_id)
    if not bands:
        bands = {
            minutes: HorizonBand(*start(q), 0, 0) for minutes, q in zip(HORIZON_MINUTES, state.quantiles, strict=True)
        }
        save(conn, model_id, bands)
    return replace(state, quantiles=tuple(bands[minutes].half_width for minutes in HORIZON_MINUTES))


def learn(conn: Connection, outcomes: Iterable[Outcome]) -> int:
    """Moves each model's bands by its new outcomes, oldest first; returns the outcomes learned from.

    Outcomes of a model that never served an adaptive band (its forecasts
    were written before there was band state) teach nothing.
    """
    by_model: dict[UUID, list[Outcome]] = {}
    for outcome in outcomes:
        by_model.setdefault(outcome.model_id, []).append(outcome)
    learned = 0
    for model_id, found in by_model.items():
        bands = read(conn, model_id)
        if not bands:
            continue
        for minutes, band in list(bands.items()):
            seen = sorted((o for o in found if o.minutes == minutes), key=lambda o: o.target_at)
            if not seen:
                continue
            # One model serves one nominal coverage; each forecast carries it.
            width = track(band.half_width, band.step, seen[0].coverage, (not o.inside for o in seen))
            misses = sum(not o.inside for o in seen)
            bands[minutes] = HorizonBand(width, band.step, band.outcomes + len(seen), band.misses + misses)
            learned += len(seen)
        save(conn, model_id, bands)
    return learned
