-- The forecast writer: a person's recent records in, staged forecast points out (glucokit.modelops.forecasts).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: forecast_last_origin
-- The latest reading a model has forecast from (null: none yet).
select max(generated_at) from public.forecast where model_id = %(model_id)s;

-- name: latest_reading
-- The time of the person's latest valid CGM reading at or before a moment (any time when null; null: none).
-- One backward index scan per code (observation_person_code_effective_idx) that stops at its first valid reading,
-- instead of aggregating every reading of the person.
select max(latest.at)
from unnest(%(codes)s::text[]) as c (code)
cross join lateral (
  select o.effective_at as at
  from public.observation o
  where o.person_id = %(person_id)s and o.code = c.code and o.status <> all(%(withdrawn)s)
    and (%(until)s::timestamptz is null or o.effective_at <= %(until)s)
  order by o.effective_at desc
  limit 1
) as latest;

-- name: forecast_person_records
-- The scoped person's valid records of the given codes in a time range, with their ids, oldest first.
select id, code, effective_at, value
from public.observation
where person_id = %(person_id)s and code = any(%(codes)s) and status <> all(%(withdrawn)s)
  and effective_at > %(since)s and effective_at <= %(until)s
order by effective_at;

-- name: forecast_create_stage
-- The session's staging tables for forecast points and their anchors, by origin (COPY
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
-- The staged origins that are new (model, origin) as forecasts with their provenance, then their points and
-- their anchors (once per forecast), owned by the scoped person's owner; the counts of points and anchors.
with forecasts as (
  insert into public.forecast (
    person_id, owner_id, model_id, generated_at, coverage, disclaimer_version, model_version, training_run_id,
    data_from, data_to, code_version
  )
  select distinct %(person_id)s::uuid, (select private.worker_owner_id()), %(model_id)s::uuid, s.generated_at,
    %(coverage)s::real, %(disclaimer_version)s, %(version)s, %(training_run_id)s::uuid, %(data_from)s::timestamptz,
    %(data_to)s::timestamptz, %(code_version)s
  from pg_temp.forecast_point_stage s
  on conflict (model_id, generated_at) do nothing
  returning id, owner_id, generated_at
), points as (
  insert into public.prediction (
    forecast_id, person_id, owner_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl,
    lower_mg_dl, upper_mg_dl
  )
  select f.id, %(person_id)s, f.owner_id, %(model_id)s, s.generated_at,
    s.generated_at + make_interval(mins => s.horizon_minutes), s.horizon_minutes, s.value_mg_dl, s.lower_mg_dl,
    s.upper_mg_dl
  from forecasts f
  join pg_temp.forecast_point_stage s on s.generated_at = f.generated_at
  returning 1
), anchors as (
  insert into public.prediction_source (
    forecast_id, person_id, owner_id, model_id, generated_at, observation_id, observation_effective_at, role
  )
  select f.id, %(person_id)s, f.owner_id, %(model_id)s, f.generated_at, s.observation_id, s.observation_effective_at,
    s.role::public.prediction_source_role
  from forecasts f
  join pg_temp.forecast_source_stage s on s.generated_at = f.generated_at
  returning 1
)
select (select count(*) from points), (select count(*) from anchors);
