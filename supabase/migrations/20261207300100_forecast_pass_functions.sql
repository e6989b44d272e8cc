/**
 * -----------------------------------------------------------------------------
 * The forecast pass's statements as functions whose plans the server keeps
 * -----------------------------------------------------------------------------
 * Planning, not running, was most of the database CPU of a person's pass:
 * the writer's insert into three day-partitioned tables, the outcome matching
 * over the points' partitions, and the backward scans for the latest reading
 * over every month of public.observation are planned again on every execution
 * when the client prepares nothing, as through Supavisor's transaction mode
 * (port 6543), where glucokit turns psycopg's prepared statements off.
 * PL/pgSQL keeps each function's plans for the life of the server connection,
 * whichever client the pooler hands it to, and plan_cache_mode
 * force_generic_plan makes them the generic plans, pruned to the partitions a
 * call's arguments reach when it runs (bench/forecast_pass.py).
 *
 * The functions are security invoker: they run as the scoped worker
 * (glucokit_worker), under row-level security and the policies, exactly the
 * statements glucokit.modelops ran before. Only the worker may call them, but
 * for private.latest_reading, which the API's chart reads as the signed-in
 * owner too (under their RLS).
 */

/**
 * The time of the scoped person's (or the signed-in owner's person's) latest
 * valid reading of the given codes at or before p_until (any time when null;
 * null: none): one backward index scan per code
 * (observation_person_code_effective_idx) that stops at its first valid
 * reading. The forecast pass and the API's chart both read it here.
 */
create or replace function private.latest_reading(
  p_person_id uuid, p_until timestamptz, p_codes text[], p_withdrawn text[]
) returns timestamptz
  language plpgsql stable security invoker
  set search_path = ''
  set plan_cache_mode = force_generic_plan
as $$
begin
  return (
    select max(l.at)
    from unnest(p_codes) as c (code)
    cross join lateral (
      select o.effective_at as at
      from public.observation o
      where o.person_id = p_person_id and o.code = c.code and o.status <> all(p_withdrawn)
        and (p_until is null or o.effective_at <= p_until)
      order by o.effective_at desc
      limit 1
    ) as l
  );
end
$$;
comment on function private.latest_reading(uuid, timestamptz, text[], text[]) is
  'The time of a person''s latest valid reading of some codes at or before a moment (under the caller''s RLS).';

/**
 * The latest origin a model has forecast from (null: none yet) and the time of
 * the scoped person's latest valid CGM reading at or before p_until (null:
 * none; private.latest_reading).
 */
create or replace function private.forecast_bounds(
  p_model_id uuid, p_person_id uuid, p_until timestamptz, p_codes text[], p_withdrawn text[]
) returns table (last_origin timestamptz, latest timestamptz)
  language plpgsql stable security invoker
  set search_path = ''
  set plan_cache_mode = force_generic_plan
as $$
begin
  return query
  select
    (select max(f.generated_at) from public.forecast f where f.model_id = p_model_id),
    private.latest_reading(p_person_id, p_until, p_codes, p_withdrawn);
end
$$;
comment on function private.forecast_bounds(uuid, uuid, timestamptz, text[], text[]) is
  'Forecast writer: the latest origin of a model and the time of the scoped person''s latest valid CGM reading.';

/**
 * The scoped person's valid records of the given codes in (p_since, p_until],
 * with their ids, oldest first.
 */
create or replace function private.forecast_records(
  p_person_id uuid, p_codes text[], p_withdrawn text[], p_since timestamptz, p_until timestamptz
) returns table (id uuid, code text, effective_at timestamptz, value numeric)
  language plpgsql stable security invoker
  set search_path = ''
  set plan_cache_mode = force_generic_plan
as $$
begin
  return query
  select o.id, o.code, o.effective_at, o.value
  from public.observation o
  where o.person_id = p_person_id and o.code = any(p_codes) and o.status <> all(p_withdrawn)
    and o.effective_at > p_since and o.effective_at <= p_until
  order by o.effective_at;
end
$$;
comment on function private.forecast_records(uuid, text[], text[], timestamptz, timestamptz) is
  'Forecast writer: the scoped person''s valid records of some codes in a time range, oldest first.';

/**
 * The forecast points and their anchors, as arrays by origin: the origins that
 * are new (model, origin) as forecasts with their provenance and the number of
 * their anchors (public.forecast.source_count, migration 20261207100000), then
 * their points and their anchors (once per forecast), owned by the scoped
 * person's owner, each checked by the policies; the counts of points and
 * anchors written.
 */
create or replace function private.write_forecasts(
  p_person_id uuid, p_model_id uuid, p_coverage real, p_disclaimer_version text, p_model_version text,
  p_training_run_id uuid, p_data_from timestamptz, p_data_to timestamptz, p_code_version text,
  p_point_origins timestamptz[], p_horizons smallint[], p_values real[], p_lowers real[], p_uppers real[],
  p_source_origins timestamptz[], p_observation_ids uuid[], p_observation_times timestamptz[],
  p_roles public.prediction_source_role[]
) returns table (points bigint, anchors bigint)
  language plpgsql volatile security invoker
  set search_path = ''
  set plan_cache_mode = force_generic_plan
as $$
begin
  return query
  with staged_points as (
    select *
    from unnest(p_point_origins, p_horizons, p_values, p_lowers, p_uppers)
      as s (generated_at, horizon_minutes, value_mg_dl, lower_mg_dl, upper_mg_dl)
  ), written as (
    insert into public.forecast (
      person_id, owner_id, model_id, generated_at, coverage, disclaimer_version, model_version, training_run_id,
      data_from, data_to, code_version, source_count
    )
    select p_person_id, (select private.worker_owner_id()), p_model_id, o.generated_at, p_coverage,
      p_disclaimer_version, p_model_version, p_training_run_id, p_data_from, p_data_to, p_code_version,
      (select count(*) from unnest(p_source_origins) as a (generated_at) where a.generated_at = o.generated_at)
    from (select distinct s.generated_at from staged_points s) as o
    on conflict (model_id, generated_at) do nothing
    returning public.forecast.id, public.forecast.owner_id, public.forecast.generated_at
  ), written_points as (
    insert into public.prediction (
      forecast_id, person_id, owner_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl,
      lower_mg_dl, upper_mg_dl
    )
    select f.id, p_person_id, f.owner_id, p_model_id, s.generated_at,
      s.generated_at + make_interval(mins => s.horizon_minutes), s.horizon_minutes, s.value_mg_dl, s.lower_mg_dl,
      s.upper_mg_dl
    from written f
    join staged_points s on s.generated_at = f.generated_at
    returning 1
  ), written_anchors as (
    insert into public.prediction_source (
      forecast_id, person_id, owner_id, model_id, generated_at, observation_id, observation_effective_at, role
    )
    select f.id, p_person_id, f.owner_id, p_model_id, f.generated_at, s.observation_id, s.observation_effective_at,
      s.role
    from written f
    join unnest(p_source_origins, p_observation_ids, p_observation_times, p_roles)
      as s (generated_at, observation_id, observation_effective_at, role) on s.generated_at = f.generated_at
    returning 1
  )
  select (select count(*) from written_points), (select count(*) from written_anchors);
end
$$;
comment on function private.write_forecasts(
  uuid, uuid, real, text, text, uuid, timestamptz, timestamptz, text, timestamptz[], smallint[], real[], real[],
  real[], timestamptz[], uuid[], timestamptz[], public.prediction_source_role[]
) is 'Forecast writer: a person''s new forecasts, their points and their anchors, under the policies.';

/**
 * Matches the scoped person's forecasts whose target time has passed to the
 * nearest valid CGM reading within the match window, for forecasts not matched
 * yet and not older than the look-back; returns each outcome recorded (model,
 * horizon, target time, inside the band, above it) with its forecast's nominal
 * coverage, oldest first. An outcome carries what the rollups need (owner,
 * origin, model version, nominal coverage), so it outlives its point's
 * retention.
 */
create or replace function private.record_outcomes(
  p_person_id uuid, p_now timestamptz, p_lookback interval, p_match_seconds integer, p_codes text[],
  p_withdrawn text[]
) returns table (
  model_id uuid, horizon_minutes smallint, target_at timestamptz, inside_band boolean, above boolean, coverage real
)
  language plpgsql volatile security invoker
  set search_path = ''
  set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
begin
  return query
  with recorded as (
    insert into public.forecast_outcome (
      prediction_id, person_id, owner_id, model_id, model_version, coverage, generated_at, target_at,
      horizon_minutes, predicted_mg_dl, observed_mg_dl, observation_id, observed_at, error_mg_dl, inside_band
    )
    select p.id, p.person_id, p.owner_id, p.model_id, f.model_version, f.coverage, p.generated_at, p.target_at,
      p.horizon_minutes, p.value_mg_dl, r.value, r.id, r.effective_at, p.value_mg_dl - r.value,
      r.value between p.lower_mg_dl and p.upper_mg_dl
    from public.prediction p
    join public.forecast f on f.id = p.forecast_id and f.generated_at = p.generated_at
    cross join lateral (
      select o.id, o.effective_at, o.value::real as value
      from public.observation o
      where o.person_id = p.person_id and o.code = any(p_codes) and o.status <> all(p_withdrawn)
        and o.effective_at between p.target_at - make_interval(secs => p_match_seconds)
          and p.target_at + make_interval(secs => p_match_seconds)
        -- Implied by the bounds on p.target_at below; as arguments, they leave the other partitions of
        -- public.observation out of the plan when it starts.
        and o.effective_at between p_now - p_lookback - make_interval(secs => p_match_seconds)
          and p_now + make_interval(secs => 2 * p_match_seconds)
      order by abs(extract(epoch from o.effective_at - p.target_at)), o.effective_at
      limit 1
    ) as r
    where p.person_id = p_person_id
      and p.target_at between p_now - p_lookback and p_now + make_interval(secs => p_match_seconds)
      and not exists (select from public.forecast_outcome o where o.prediction_id = p.id)
    on conflict (prediction_id) do nothing
    returning public.forecast_outcome.prediction_id, public.forecast_outcome.generated_at,
      public.forecast_outcome.model_id, public.forecast_outcome.horizon_minutes, public.forecast_outcome.target_at,
      public.forecast_outcome.inside_band, public.forecast_outcome.observed_mg_dl, public.forecast_outcome.coverage
  )
  select r.model_id, r.horizon_minutes, r.target_at, r.inside_band, r.observed_mg_dl > p.upper_mg_dl, r.coverage
  from recorded r
  join public.prediction p on p.id = r.prediction_id and p.generated_at = r.generated_at
  order by r.target_at, r.horizon_minutes;
end
$$;
comment on function private.record_outcomes(uuid, timestamptz, interval, integer, text[], text[]) is
  'Monitoring: records the scoped person''s due forecast outcomes and returns them, oldest first.';

revoke all on function private.latest_reading(uuid, timestamptz, text[], text[]) from public;
revoke all on function private.forecast_bounds(uuid, uuid, timestamptz, text[], text[]) from public;
revoke all on function private.forecast_records(uuid, text[], text[], timestamptz, timestamptz) from public;
revoke all on function private.write_forecasts(
  uuid, uuid, real, text, text, uuid, timestamptz, timestamptz, text, timestamptz[], smallint[], real[], real[],
  real[], timestamptz[], uuid[], timestamptz[], public.prediction_source_role[]
) from public;
revoke all on function private.record_outcomes(uuid, timestamptz, interval, integer, text[], text[]) from public;
grant execute on function private.latest_reading(uuid, timestamptz, text[], text[]) to glucokit_worker, authenticated;
grant execute on function private.forecast_bounds(uuid, uuid, timestamptz, text[], text[]) to glucokit_worker;
grant execute on function private.forecast_records(uuid, text[], text[], timestamptz, timestamptz) to glucokit_worker;
grant execute on function private.write_forecasts(
  uuid, uuid, real, text, text, uuid, timestamptz, timestamptz, text, timestamptz[], smallint[], real[], real[],
  real[], timestamptz[], uuid[], timestamptz[], public.prediction_source_role[]
) to glucokit_worker;
grant execute on function private.record_outcomes(uuid, timestamptz, interval, integer, text[], text[])
  to glucokit_worker;
