"""Writing forecast rows directly, for tests that need points without running a model.

A point belongs to a forecast (public.forecast: one per model and origin, with the provenance); ``point``
reuses the model's forecast from that origin when there is one and writes it otherwise, with the person's
owner as owner_id, as the forecast writer does. It works as the table owner and as a worker in the person's
scope.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from uuid import UUID

from glucokit.db.sessions import Connection

POINT: Final = b"""
with existing as (
  select f.id, f.person_id, f.owner_id, f.model_id, f.generated_at
  from public.forecast f
  where f.model_id = %(model)s and f.generated_at = %(generated_at)s
), written as (
  insert into public.forecast (
    person_id, owner_id, model_id, generated_at, coverage, disclaimer_version, model_version, data_from, data_to,
    code_version
  )
  select m.person_id, pe.owner_id, m.id, %(generated_at)s, %(coverage)s, 'v1', m.version,
    least(m.data_from, %(generated_at)s), least(m.data_to, %(generated_at)s), 'test'
  from public.ml_model m
  join public.person pe on pe.id = m.person_id
  where m.id = %(model)s and not exists (select from existing)
  returning id, person_id, owner_id, model_id, generated_at
), origin as (
  select * from existing union all select * from written
)
insert into public.prediction (
  forecast_id, person_id, owner_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl,
  upper_mg_dl
)
select o.id, o.person_id, o.owner_id, o.model_id, o.generated_at,
  o.generated_at + make_interval(mins => %(horizon)s), %(horizon)s, %(value)s, %(lower)s, %(upper)s
from origin o
returning id
"""


def point(
    conn: Connection,
    model: UUID,
    generated_at: datetime,
    horizon: int,
    value: float,
    band: tuple[float, float],
    coverage: float = 0.8,
) -> UUID:
    """One point of the model's forecast from ``generated_at`` (written first when there is none); its id."""
    row = conn.execute(
        POINT,
        {
            "model": model, "generated_at": generated_at, "horizon": horizon, "value": value,
            "lower": band[0], "upper": band[1], "coverage": coverage,
        },
    ).fetchone()  # fmt: skip
    assert row is not None, f"model {model} is not visible here"
    assert isinstance(row[0], UUID)
    return row[0]
