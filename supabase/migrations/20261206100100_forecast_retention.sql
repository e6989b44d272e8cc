/**
 * -----------------------------------------------------------------------------
 * Forecast retention: full-resolution forecasts for a window, then whole days dropped
 * -----------------------------------------------------------------------------
 * A forecast is kept at full resolution (its origin row, points and anchors)
 * for private.retention_config.forecast_keep (default 30 days) after the last
 * moment an outcome can still be recorded for it: its latest target time
 * (generated_at + 240 minutes, the longest horizon a point may have) plus the
 * monitoring look-back (private.monitoring_config.outcome_lookback: no reading
 * is matched to a target further back). A forecast that got no reading expires
 * the same way, counted from its target time.
 *
 * private.expire_forecasts() is the retention job's one call: it creates the
 * daily partitions of the days ahead, drops the day partitions of forecast,
 * prediction and prediction_source whose every forecast has expired, deletes
 * expired rows that sit in the default partitions, and records what it did in
 * private.retention_run. Outcomes, feedback, health checks and band state keep
 * everything they need (no foreign key into the forecast tables), so no
 * outcome-based figure changes when a day is dropped.
 *
 * Owners read the policy with public.forecast_retention().
 */

create table private.retention_config (
  singleton boolean primary key default true check (singleton),
  -- Full-resolution forecasts are kept this long after their outcomes can no longer be recorded.
  forecast_keep interval not null default interval '30 days' check (forecast_keep >= interval '1 day'),
  -- The retention job creates the daily partitions of this many days ahead.
  forecast_days_ahead integer not null default 7 check (forecast_days_ahead between 1 and 90)
);
comment on table private.retention_config is 'Retention of full-resolution forecasts: how long they are kept, and how many daily partitions are made ahead.';
insert into private.retention_config default values;
alter table private.retention_config enable row level security;
revoke all on private.retention_config from public;

-- The audit trail of the retention job.
create table private.retention_run (
  id bigint generated always as identity primary key,
  ran_at timestamptz not null default now(),
  -- Forecasts generated before this moment had expired.
  expired_before timestamptz not null,
  forecast_keep interval not null,
  partitions_dropped text[] not null,
  default_rows_deleted bigint not null check (default_rows_deleted >= 0),
  partitions_created integer not null check (partitions_created >= 0)
);
comment on table private.retention_run is 'Audit trail of forecast retention: each run, the cut-off, the window, the partitions dropped and created.';
alter table private.retention_run enable row level security;
revoke all on private.retention_run from public;

/**
 * The retention policy, for everyone signed in: how long full-resolution
 * forecasts are kept and from when that counts. The private function reads
 * the settings (security definer); public.forecast_retention() is the Data
 * API's door to it.
 */
create or replace function private.forecast_retention()
  returns table (keep_after_outcomes interval, outcome_lookback interval, longest_horizon interval)
  language sql stable security definer
  set search_path = ''
as $$
  select r.forecast_keep, m.outcome_lookback, interval '240 minutes'
  from private.retention_config r cross join private.monitoring_config m
$$;
comment on function private.forecast_retention() is 'The retention policy of full-resolution forecasts (public.forecast_retention()).';
revoke all on function private.forecast_retention() from public, anon;
grant execute on function private.forecast_retention() to authenticated, glucokit_worker, service_role;

create or replace function public.forecast_retention()
  returns table (keep_after_outcomes interval, outcome_lookback interval, longest_horizon interval)
  language sql stable security invoker
  set search_path = ''
as $$
  select * from private.forecast_retention()
$$;
comment on function public.forecast_retention() is
  'Retention of full-resolution forecasts (points and source anchors): kept keep_after_outcomes after the last moment an outcome can be recorded (generated_at + longest_horizon + outcome_lookback); outcomes, rollups and feedback are kept.';
revoke all on function public.forecast_retention() from public, anon;
grant execute on function public.forecast_retention() to authenticated, glucokit_worker, service_role;

/**
 * The retention job (unscoped worker or operator): creates the daily
 * partitions ahead, drops expired days, deletes expired rows of the default
 * partitions, and records the run. p_now stands in for now() in tests.
 */
create or replace function private.expire_forecasts(p_now timestamptz default now())
  returns private.retention_run
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  keep interval := (select c.forecast_keep from private.retention_config c);
  ahead integer := (select c.forecast_days_ahead from private.retention_config c);
  cutoff timestamptz := p_now - keep - (select m.outcome_lookback from private.monitoring_config m)
    - interval '240 minutes';
  today date := (p_now at time zone 'UTC')::date;
  dropped text[] := '{}';
  deleted bigint := 0;
  removed bigint;
  created integer;
  partition record;
  run private.retention_run;
begin
  if private.worker_person_id() is not null then
    raise exception 'forecast retention runs unscoped' using errcode = 'insufficient_privilege';
  end if;
  created := private.create_forecast_partitions(today, today + ahead);
  for partition in
    select c.relname
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'partitions'
      and c.relname ~ '^(forecast|prediction|prediction_source)_d[0-9]{8}$'
      and (to_date(right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp at time zone 'UTC' <= cutoff
    order by c.relname
  loop
    execute format('drop table partitions.%I', partition.relname);
    dropped := dropped || partition.relname::text;
  end loop;
  delete from partitions.prediction_source_default where generated_at < cutoff;
  get diagnostics removed = row_count;
  deleted := deleted + removed;
  delete from partitions.prediction_default where generated_at < cutoff;
  get diagnostics removed = row_count;
  deleted := deleted + removed;
  delete from partitions.forecast_default where generated_at < cutoff;
  get diagnostics removed = row_count;
  deleted := deleted + removed;
  insert into private.retention_run (expired_before, forecast_keep, partitions_dropped, default_rows_deleted,
    partitions_created)
  values (cutoff, keep, dropped, deleted, created)
  returning * into run;
  return run;
end
$$;
comment on function private.expire_forecasts(timestamptz) is
  'Retention job: create the daily forecast partitions ahead, drop expired days and expired default-partition rows, record the run in private.retention_run.';
revoke all on function private.expire_forecasts(timestamptz) from public;
grant execute on function private.expire_forecasts(timestamptz) to glucokit_worker, service_role;
