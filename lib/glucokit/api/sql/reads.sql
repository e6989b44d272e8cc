-- The API's reads (glucokit.api.reads).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: read_latest_curve
-- The person's latest forecast curve, by horizon: the RPC public.latest_forecast (migration 20261206170000).
select id, person_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl, upper_mg_dl, coverage,
  disclaimer_version, model_id, model_version, training_run_id, data_from, data_to, code_version
from public.latest_forecast(%(person_id)s);

-- name: read_points_between
-- Forecast points whose origin is in [start, end), in (origin, horizon, id) order after a keyset cursor.
select p.id, p.person_id, p.generated_at, p.target_at, p.horizon_minutes, p.value_mg_dl, p.lower_mg_dl,
  p.upper_mg_dl, f.coverage, f.disclaimer_version, f.model_id, f.model_version, f.training_run_id, f.data_from,
  f.data_to, f.code_version
from public.prediction p
join public.forecast f on f.id = p.forecast_id and f.generated_at = p.generated_at
where p.person_id = %(person_id)s
  and p.generated_at >= %(start)s and p.generated_at < %(end)s
  and f.person_id = %(person_id)s and f.generated_at >= %(start)s and f.generated_at < %(end)s
  and (
    %(after_at)s::timestamptz is null
    or (p.generated_at, p.horizon_minutes, p.id) > (%(after_at)s, %(after_horizon)s::smallint, %(after_id)s::uuid)
  )
order by p.generated_at, p.horizon_minutes, p.id
limit %(limit)s;

-- name: read_point
-- One forecast point with its provenance and its forecast's anchors (a JSON array): the RPC public.forecast_point.
select id, person_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl, upper_mg_dl, coverage,
  disclaimer_version, model_id, model_version, training_run_id, data_from, data_to, code_version,
  sources
from public.forecast_point(%(prediction_id)s);

-- name: read_models
-- The person's model versions, newest first, with their cards: the RPC public.person_models.
select id, version, algorithm, stage, stage_reason, is_fallback, storage_path, artifact_sha256, features, metrics,
  trained_at, training_run_id, data_from, data_to, card
from public.person_models(%(person_id)s);

-- name: read_runs
-- The person's latest training runs, newest first.
select id, trigger::text as trigger, status::text as status, attempt, requested_at, started_at, finished_at, error
from public.training_run
where person_id = %(person_id)s
order by requested_at desc, created_at desc
limit %(limit)s;

-- name: read_glucose_history
-- The person's valid CGM readings in (since, until], oldest first.
select effective_at, value
from public.observation
where person_id = %(person_id)s and code = any(%(codes)s) and status <> all(%(withdrawn)s)
  and effective_at > %(since)s and effective_at <= %(until)s
order by effective_at;

-- name: read_person
-- A person's display name and time zone.
select display_name, time_zone from public.person where id = %(person_id)s;
