-- The API's reads (glucokit.api.reads).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: read_latest_curve
-- The person's latest forecast curve: the newest origin, and of it the newest model's points, by horizon.
select p.id, p.person_id, p.generated_at, p.target_at, p.horizon_minutes, p.value_mg_dl, p.lower_mg_dl,
  p.upper_mg_dl, p.coverage, p.disclaimer_version, p.model_id, p.model_version, p.training_run_id, p.data_from,
  p.data_to, p.code_version
from public.prediction p
join (
  select l.generated_at, l.model_id
  from public.prediction l
  where l.person_id = %(person_id)s
  order by l.generated_at desc, l.created_at desc
  limit 1
) as latest on latest.generated_at = p.generated_at and latest.model_id = p.model_id
where p.person_id = %(person_id)s
order by p.horizon_minutes;

-- name: read_points_between
-- Forecast points whose origin is in [start, end), in (origin, horizon, id) order after a keyset cursor.
select p.id, p.person_id, p.generated_at, p.target_at, p.horizon_minutes, p.value_mg_dl, p.lower_mg_dl,
  p.upper_mg_dl, p.coverage, p.disclaimer_version, p.model_id, p.model_version, p.training_run_id, p.data_from,
  p.data_to, p.code_version
from public.prediction p
where p.person_id = %(person_id)s
  and p.generated_at >= %(start)s and p.generated_at < %(end)s
  and (
    %(after_at)s::timestamptz is null
    or (p.generated_at, p.horizon_minutes, p.id) > (%(after_at)s, %(after_horizon)s::smallint, %(after_id)s::uuid)
  )
order by p.generated_at, p.horizon_minutes, p.id
limit %(limit)s;

-- name: read_point
-- One forecast point.
select p.id, p.person_id, p.generated_at, p.target_at, p.horizon_minutes, p.value_mg_dl, p.lower_mg_dl,
  p.upper_mg_dl, p.coverage, p.disclaimer_version, p.model_id, p.model_version, p.training_run_id, p.data_from,
  p.data_to, p.code_version
from public.prediction p
where p.id = %(prediction_id)s;

-- name: read_point_sources
-- The observations a forecast point was computed from: the input window first, then covariates, by time.
select s.observation_id, s.observation_effective_at as effective_at, s.role::text as role, o.code
from public.prediction_source s
join public.observation o on o.id = s.observation_id and o.effective_at = s.observation_effective_at
where s.prediction_id = %(prediction_id)s
order by s.role, s.observation_effective_at, s.observation_id;

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
