"""Writing a person's forecasts from their active model, with bands, provenance and source anchors.

``write_forecasts`` runs as the worker in one person's scope. It forecasts from
every CGM reading the active model has not forecast from yet (an origin), at
most ``backfill`` before the latest reading and never before the end of the
model's training data, so the same call serves both ways it is used: in batch
after a retrain (a new model forecasts from the latest reading) and
incrementally when new readings arrive (only their origins are new; after an
outage, up to a day of them). Points and their anchors go to the database as
arrays in one call (``private.write_forecasts``, security invoker, its plan kept
by the server), whose INSERTs the policies check, into ``forecast`` (one origin
row with the provenance),
``prediction`` (its points) and ``prediction_source`` (its anchors, once per
forecast: every point of a forecast has the same sources), each with the
person's owner as ``owner_id``; the idempotency key (model, origin) makes
writing a forecast twice a no-op. Only the records the new origins read are
fetched (``LOOKBACK`` before the first of them), and the model runs on one
intra-op thread (``forecast.model.one_thread``: for a batch of a few origins a
second thread's barrier only spins on the CPU).

Each point carries its band, with the widths its model serves now
(``band_state.serving``: the trained ones at first, then moved by each
outcome), and nominal coverage, the disclaimer version
shown with it, and its provenance: model id and version, training run, the
model's data window and the code version. Its inputs are made by
``inputs_at``, as in training and evaluation, from records read back far
enough for all of them (``LOOKBACK``); its anchors are exactly the records
they were made of (``sources_at``): the glucose readings of the input hour
(and any a short gap was filled from) and, for a model that reads them, the
carbohydrate and insulin records of the event look-back.

Informational trend forecasts only: never for dosing, diagnosis or triage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

import numpy as np

from glucokit import __version__
from glucokit.db.queries import query
from glucokit.db.sessions import Connection, Purpose, as_worker
from glucokit.disclaimer import DISCLAIMER_VERSION
from glucokit.fhir.validation import WITHDRAWN, cgm_filter
from glucokit.forecast import HORIZON_MINUTES, ForecastPoint, ForecastState
from glucokit.forecast.model import one_thread
from glucokit.forecast.pipeline import GAPPY, forecast_from, reads_events
from glucokit.forecast.series import micros, timeline
from glucokit.forecast.windows import LOOKBACK, check_horizons, sources_at
from glucokit.modelops import band_state, registry
from glucokit.modelops.model_store import ModelStore, load_state
from glucokit.modelops.registry import ModelVersion
from glucokit.units import CARBOHYDRATE_CODE, CGM_CODES, INSULIN_CODE

# After an outage, forecasts are caught up for at most the last day of readings (288 origins at 5 minutes).
BACKFILL: Final = timedelta(hours=24)


@dataclass(frozen=True)
class Record:
    """One stored observation a forecast may read and anchor on."""

    id: UUID
    at: datetime
    value: float


@dataclass
class ForecastWrite:
    """What one call wrote for a person."""

    person_id: UUID
    model_version: str | None = None
    origins: int = 0  # readings forecast from
    points: int = 0  # prediction rows written
    existing: int = 0  # points already there (same model, origin and horizon)
    sources: int = 0  # prediction_source rows written (once per forecast)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> origins that could not be forecast
    reason: str = ""  # why nothing was written, when nothing was


def write_forecasts(
    conn: Connection,
    store: ModelStore,
    person_id: UUID,
    *,
    horizons: Sequence[int] = HORIZON_MINUTES,
    backfill: timedelta = BACKFILL,
    now: datetime | None = None,
    reason: str = "forecast from new readings",
) -> ForecastWrite:
    """Forecasts from the person's readings that the active model has not forecast from; see the module docstring."""
    wanted = check_horizons(horizons)
    with as_worker(conn, person_id, Purpose.FORECASTING, reason):
        return write_in_scope(
            conn, store, person_id, registry.active(conn, person_id), wanted, backfill=backfill, now=now or _clock(conn)
        )


def write_in_scope(
    conn: Connection,
    store: ModelStore,
    person_id: UUID,
    model: ModelVersion | None,
    horizons: tuple[int, ...],
    *,
    backfill: timedelta = BACKFILL,
    now: datetime,
) -> ForecastWrite:
    """``write_forecasts`` inside a worker transaction already scoped to the person for forecasting, from
    ``model`` (their active model, None: none) at checked ``horizons``, at ``now`` (the transaction's clock)."""
    report = ForecastWrite(person_id)
    if model is None:
        report.reason = "no active model"
        return report
    report.model_version = model.version
    bounds = conn.execute(
        query("forecast_bounds"), {"model_id": model.id, "person_id": person_id, "until": now, **cgm_filter()}
    ).fetchone()
    assert bounds is not None
    last_origin, latest = _moment(bounds[0]), _moment(bounds[1])
    if latest is None:
        report.reason = "no glucose readings"
        return report
    # Never from before the end of the model's training data: those would be forecasts of what it learned from.
    floor = max(model.data_to, latest - backfill)
    # Each origin reads LOOKBACK back, and the new origins come after the last one forecast from.
    records = _records(conn, person_id, max(floor, last_origin or floor) - LOOKBACK, now)
    origins = sorted({r.at for r in records[0] if r.at >= floor and (last_origin is None or r.at > last_origin)})
    if not origins:
        report.reason = "no new readings to forecast from"
        return report
    # Loaded only now: a person still due whose readings give no new origin costs no model download.
    state = band_state.serving(conn, model.id, load_state(conn, store, model))
    points, sources = _curves(state, records, origins, horizons, report)
    if not points:
        report.reason = "no origin could be forecast"
        return report
    written = conn.execute(
        query("forecast_insert_points"),
        {
            "point_origins": [origin for origin, _ in points],
            "horizons": [point.minutes for _, point in points],
            "values": [point.value for _, point in points],
            "lowers": [point.low for _, point in points],
            "uppers": [point.high for _, point in points],
            "source_origins": [row[0] for row in sources],
            "observation_ids": [row[1] for row in sources],
            "observation_times": [row[2] for row in sources],
            "roles": [row[3] for row in sources],
            "person_id": person_id,
            "model_id": model.id,
            "coverage": state.coverage,
            "disclaimer_version": DISCLAIMER_VERSION,
            "version": model.version,
            "training_run_id": model.training_run_id,
            "data_from": model.data_from,
            "data_to": model.data_to,
            "code_version": __version__,
        },
    ).fetchone()
    assert written is not None
    report.points, report.sources = int(str(written[0])), int(str(written[1]))
    report.existing = len(points) - report.points
    return report


def _curves(
    state: ForecastState,
    records: tuple[list[Record], list[Record], list[Record]],
    origins: list[datetime],
    horizons: tuple[int, ...],
    report: ForecastWrite,
) -> tuple[list[tuple[datetime, ForecastPoint]], list[tuple[datetime, UUID, datetime, str]]]:
    """The forecast points from each origin, and each origin's anchors; origins that cannot be forecast are counted."""
    glucose, carbs, insulin = records
    found = timeline(*([(r.at, r.value) for r in kind] for kind in records))
    carbs_read, insulin_read = reads_events(state)
    points: list[tuple[datetime, ForecastPoint]] = []
    sources: list[tuple[datetime, UUID, datetime, str]] = []
    at = np.array([micros(origin) for origin in origins], dtype=np.int64)
    with one_thread():  # a pass's few origins gain nothing from a second thread, whose barrier spins
        curves = forecast_from(state, found, at)
    for origin, moment, curve in zip(origins, at, curves, strict=True):
        if curve is None:
            report.skipped[GAPPY] = report.skipped.get(GAPPY, 0) + 1
            continue
        report.origins += 1
        points += [(origin, point) for point in curve if point.minutes in horizons]
        read = sources_at(found, int(moment))
        anchors = [(glucose[i], "input_window") for i in read.glucose]
        anchors += [(carbs[i], "covariate") for i in read.carbs if carbs_read]
        anchors += [(insulin[i], "covariate") for i in read.insulin if insulin_read]
        sources += [(origin, record.id, record.at, role) for record, role in anchors]
    return points, sources


def _moment(value: object) -> datetime | None:
    assert value is None or isinstance(value, datetime)
    return value


def _clock(conn: Connection) -> datetime:
    """The transaction's clock."""
    row = conn.execute(b"select now()").fetchone()
    assert row is not None
    now = _moment(row[0])
    assert now is not None
    return now


def _records(
    conn: Connection, person_id: UUID, since: datetime, until: datetime
) -> tuple[list[Record], list[Record], list[Record]]:
    """The person's valid CGM glucose, carbohydrate and insulin records in (since, until], oldest first."""
    glucose: list[Record] = []
    carbs: list[Record] = []
    insulin: list[Record] = []
    lists = {**dict.fromkeys(CGM_CODES, glucose), CARBOHYDRATE_CODE: carbs, INSULIN_CODE: insulin}
    parameters = {"person_id": person_id, "codes": list(lists), "withdrawn": sorted(WITHDRAWN)}
    rows = conn.execute(query("forecast_person_records"), {**parameters, "since": since, "until": until})
    for observation_id, code, effective_at, value in rows:
        assert isinstance(observation_id, UUID)
        assert isinstance(effective_at, datetime)
        lists[str(code)].append(Record(observation_id, effective_at, float(str(value))))
    return glucose, carbs, insulin
