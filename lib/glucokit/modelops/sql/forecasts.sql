-- The forecast writer: a person's recent records in, staged forecast points out (glucokit.modelops.forecasts).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: forecast_last_origin
-- The latest reading a model has forecast from (null: none yet).
select max(generated_at) from public.prediction where model_id = %(model_id)s;

-- name: latest_reading
-- The time of the person's latest valid CGM reading at or before a moment (any time when null; null: none).
select max(effective_at)
from public.observation
where person_id = %(person_id)s and code = any(%(codes)s) and status <> all(%(withdrawn)s)
  and (%(until)s::timestamptz is null or effective_at <= %(until)s);

-- name: forecast_person_records
-- The scoped person's valid records of the given codes in a time range, with their ids, oldest first.
select id, code, effective_at, value
from public.observation
where person_id = %(person_id)s and code = any(%(codes)s) and status <> all(%(withdrawn)s)
  and effective_at > %(since)s and effective_at <= %(until)s
order by effective_at;

-- name: forecast_create_stage
-- The session's staging tables for forecast points and their anchors (COPY
-- cannot write into a table under row-level security).
create temporary table if not exists forecast_point_stage (
  generated_at timestamptz, horizon_minutes smallint, value_mg_dl real, lower_mg_dl real, upper_mg_dl real
) on commit delete rows;
create temporary table if not exists forecast_source_stage (
  generated_at timestamptz, observation_id uuid, observation_effective_at timestamptz, role text
) on commit delete rows;

-- name: forecast_copy_points
-- Binary COPY of forecast points into their staging table.
copy pg_temp.forecast_point_stage (generated_at, horizon_minutes, value_mg_dl, lower_mg_dl, upper_mg_dl)
from stdin (format binary);

-- name: forecast_copy_sources
-- Binary COPY of the points' anchors, by origin, into their staging table.
copy pg_temp.forecast_source_stage (generated_at, observation_id, observation_effective_at, role)
from stdin (format binary);

-- name: forecast_insert_points
-- The staged points that are new (model, origin, horizon) with their provenance, then their anchors; the counts.
with points as (
  insert into public.prediction (
    person_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl, upper_mg_dl,
    coverage, disclaimer_version, model_version, training_run_id, data_from, data_to, code_version
  )
  select
    %(person_id)s, %(model_id)s, s.generated_at, s.generated_at + make_interval(mins => s.horizon_minutes),
    s.horizon_minutes, s.value_mg_dl, s.lower_mg_dl, s.upper_mg_dl, %(coverage)s, %(disclaimer_version)s,
    %(version)s, %(training_run_id)s, %(data_from)s, %(data_to)s, %(code_version)s
  from pg_temp.forecast_point_stage s
  on conflict (model_id, generated_at, horizon_minutes) do nothing
  returning id, generated_at
), anchors as (
  insert into public.prediction_source (prediction_id, person_id, observation_id, observation_effective_at, role)
  select p.id, %(person_id)s, s.observation_id, s.observation_effective_at, s.role::public.prediction_source_role
  from points p
  join pg_temp.forecast_source_stage s on s.generated_at = p.generated_at
  returning 1
)
select (select count(*) from points), (select count(*) from anchors);
