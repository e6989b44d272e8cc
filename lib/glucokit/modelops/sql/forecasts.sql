-- The forecast writer: a person's recent records in, forecast points out (glucokit.modelops.forecasts).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: latest_reading
-- The time of the person's latest valid CGM reading at or before a moment (any time when null; null: none), under
-- the caller's RLS (private.latest_reading, migration 20261207300100: one backward index scan per code).
select private.latest_reading(%(person_id)s, %(until)s, %(codes)s::text[], %(withdrawn)s::text[]);

-- name: forecast_bounds
-- The latest origin a model has forecast from and the time of the scoped person's latest valid CGM reading at or
-- before `until` (each null: none), in one round trip (the function keeps its plan: migration 20261207300100).
select last_origin, latest
from private.forecast_bounds(%(model_id)s, %(person_id)s, %(until)s, %(codes)s::text[], %(withdrawn)s::text[]);

-- name: forecast_person_records
-- The scoped person's valid records of the given codes in a time range, with their ids, oldest first.
select id, code, effective_at, value
from private.forecast_records(%(person_id)s, %(codes)s::text[], %(withdrawn)s::text[], %(since)s, %(until)s);

-- name: forecast_insert_points
-- The forecast points and their anchors, as arrays by origin (binary parameters), written under the policies as
-- new forecasts with their provenance, points and anchors (once per forecast), owned by the scoped person's owner;
-- the counts of points and anchors (private.write_forecasts keeps its plan: migration 20261207300100).
select points, anchors
from private.write_forecasts(
  p_person_id => %(person_id)s, p_model_id => %(model_id)s, p_coverage => %(coverage)s::real,
  p_disclaimer_version => %(disclaimer_version)s, p_model_version => %(version)s,
  p_training_run_id => %(training_run_id)s, p_data_from => %(data_from)s, p_data_to => %(data_to)s,
  p_code_version => %(code_version)s, p_point_origins => %(point_origins)b::timestamptz[],
  p_horizons => %(horizons)b::int2[], p_values => %(values)b::real[], p_lowers => %(lowers)b::real[],
  p_uppers => %(uppers)b::real[], p_source_origins => %(source_origins)b::timestamptz[],
  p_observation_ids => %(observation_ids)b::uuid[], p_observation_times => %(observation_times)b::timestamptz[],
  p_roles => %(roles)b::text[]::public.prediction_source_role[]
);
