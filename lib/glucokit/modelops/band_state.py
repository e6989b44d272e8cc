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
from glucokit.forecast.bands import MAX_HALF_WIDTH, MAX_UPPER_PERCENT, Side, start, track


@dataclass(frozen=True)
class HorizonBand:
    """One horizon's band state: each side's width served now and its step per outcome."""

    lower: Side  # mg/dL below the forecast
    upper: Side  # percent of the forecast above it
    outcomes: int  # learned from
    misses: int  # of them outside the band


@dataclass(frozen=True)
class Outcome:
    """A recorded outcome, as the band learns from it."""

    model_id: UUID
    minutes: int
    target_at: datetime
    inside: bool
    above: bool  # outside, above the band
    coverage: float  # the nominal coverage of the forecast's band


def read(conn: Connection, model_id: UUID) -> dict[int, HorizonBand]:
    """The model's band state per horizon (minutes); empty when it has not served a band yet."""
    rows = conn.execute(query("read_band_state"), {"model_id": model_id})
    return {
        int(str(minutes)): HorizonBand(
            Side(float(str(lower)), float(str(lower_step))),
            Side(float(str(upper)), float(str(upper_step))),
            int(str(count)),
            int(str(missed)),
        )
        for minutes, lower, lower_step, upper, upper_step, count, missed in rows
    }


def save(conn: Connection, model_id: UUID, bands: Mapping[int, HorizonBand]) -> None:
    horizons = sorted(bands)
    conn.execute(
        query("save_band_state"),
        {
            "model_id": model_id,
            "horizons": horizons,
            "lowers": [bands[m].lower.width for m in horizons],
            "lower_steps": [bands[m].lower.step for m in horizons],
            "uppers": [bands[m].upper.width for m in horizons],
            "upper_steps": [bands[m].upper.step for m in horizons],
            "outcomes": [bands[m].outcomes for m in horizons],
            "misses": [bands[m].misses for m in horizons],
        },
    )


def serving(conn: Connection, model_id: UUID, state: ForecastState) -> ForecastState:
    """``state`` with the band widths the model serves now; the first time, they start from the trained ones."""
    bands = read(conn, model_id)
    if not bands:
        bands = {
            minutes: HorizonBand(start(lower, MAX_HALF_WIDTH), start(upper, MAX_UPPER_PERCENT), 0, 0)
            for minutes, lower, upper in zip(HORIZON_MINUTES, state.lower, state.upper, strict=True)
        }
        save(conn, model_id, bands)
    return replace(
        state,
        lower=tuple(bands[minutes].lower.width for minutes in HORIZON_MINUTES),
        upper=tuple(bands[minutes].upper.width for minutes in HORIZON_MINUTES),
    )


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
            # One model serves one nominal coverage; each forecast carries it. Each side learns from its misses.
            coverage = seen[0].coverage
            below = [not o.inside and not o.above for o in seen]
            lower = track(band.lower, coverage, below, MAX_HALF_WIDTH)
            upper = track(band.upper, coverage, [o.above for o in seen], MAX_UPPER_PERCENT)
            misses = sum(not o.inside for o in seen)
            bands[minutes] = HorizonBand(lower, upper, band.outcomes + len(seen), band.misses + misses)
            learned += len(seen)
        save(conn, model_id, bands)
    return learned
