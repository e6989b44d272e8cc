/**
 * -----------------------------------------------------------------------------
 * Forecast outcomes, accuracy rollups, drift and the performance trigger
 * -----------------------------------------------------------------------------
 * When the real reading for a forecast's target time arrives (the nearest CGM
 * reading within ±2.5 minutes of target_at), the forecast job records the
 * forecast's error against it: one public.forecast_outcome row per forecast
 * point. A reading that is late is matched when it arrives (within the
 * look-back); a reading that never comes leaves the point without an outcome,
 * which is normal, not an error.
 *
 * public.model_daily_accuracy rolls outcomes up per model version, local day
 * and horizon (MAE, RMSE, MARD, band coverage, counts); public
 * .model_feedback_summary counts the thumbs per model version. Both are
 * security_invoker views: each reader sees the rollup of the rows row-level
 * security lets them see.
 *
 * public.model_health_check is the monitoring record: per check of a person's
 * active model, the live error and coverage of recent outcomes against what
 * the model measured on its test split, and the input drift of recent readings
 * against its training window (population stability index). A check that
 * finds the model degraded beyond the limits in private.monitoring_config
 * queues a performance retrain, once per model version.
 */

-- -----------------------------------------------------------------------------
-- Settings
-- -----------------------------------------------------------------------------
create table private.monitoring_config (
  singleton boolean primary key default true check (singleton),
  -- A reading matches a forecast when it is this close to the target time.
  match_seconds integer not null default 150 check (match_seconds between 1 and 600),
  -- Forecasts whose target lies further back are no longer matched.
  outcome_lookback interval not null default interval '2 days' check (outcome_lookback > interval '0'),
  -- Live metrics are computed over the outcomes of this window.
  live_window interval not null default interval '24 hours' check (live_window > interval '0'),
  -- ... and only with at least this many outcomes at the judged horizon.
  min_outcomes integer not null default 96 check (min_outcomes > 0),
  -- The horizon that is judged (its test RMSE is in ml_model.metrics as rmse_<minutes>).
  judged_horizon_minutes smallint not null default 30,
  -- Degraded: live RMSE above this multiple of the test RMSE ...
  max_rmse_ratio real not null default 1.5 check (max_rmse_ratio > 1),
  -- ... or band coverage this far below the nominal coverage.
  max_coverage_shortfall real not null default 0.15 check (max_coverage_shortfall > 0 and max_coverage_shortfall < 1),
  -- Drift: recent readings over this window against the training window.
  drift_window interval not null default interval '3 days' check (drift_window > interval '0'),
  -- PSI above this counts as a major shift (reported with the check).
  drift_psi_limit real not null default 0.25 check (drift_psi_limit > 0),
  -- A person's model is checked at most this often.
  check_interval interval not null default interval '1 hour' check (check_interval > interval '0')
);
comment on table private.monitoring_config is 'Thresholds of forecast monitoring: outcome matching, live-metric window, degradation and drift limits.';
insert into private.monitoring_config default values;
alter table private.monitoring_config enable row level security;
revoke all on private.monitoring_config from public;

/**
 * The monitoring settings, for workers (who cannot read private tables).
 */
create or replace function private.monitoring_settings() returns private.monitoring_config
  language sql stable security definer
  set search_path = ''
as $$
  select * from private.monitoring_config
$$;
comment on function private.monitoring_settings() is 'Worker: the monitoring thresholds (private.monitoring_config).';
revoke all on function private.monitoring_settings() from public;
grant execute on function private.monitoring_settings() to glucokit_worker, service_role;

-- -----------------------------------------------------------------------------
-- Outcomes
-- -----------------------------------------------------------------------------
create table public.forecast_outcome (
  prediction_id uuid primary key,
  person_id uuid not null,
  model_id uuid not null,
  target_at timestamptz not null,
  horizon_minutes smallint not null,
  predicted_mg_dl real not null,
  observed_mg_dl real not null check (observed_mg_dl > 0),
  observation_id uuid not null,
  observed_at timestamptz not null,
  -- predicted - observed: positive when the forecast was too high.
  error_mg_dl real not null,
  inside_band boolean not null,
  recorded_at timestamptz not null default now(),
  foreign key (prediction_id, person_id) references public.prediction (id, person_id) on delete cascade,
  foreign key (model_id, person_id) references public.ml_model (id, person_id) on delete cascade,
  foreign key (observation_id, observed_at) references public.observation (id, effective_at) on delete cascade,
  constraint forecast_outcome_error check (error_mg_dl = predicted_mg_dl - observed_mg_dl),
  constraint forecast_outcome_matched check (abs(extract(epoch from observed_at - target_at)) <= 600)
);
comment on table public.forecast_outcome is 'A forecast point''s error against the reading nearest its target time (within the match window).';
comment on column public.forecast_outcome.error_mg_dl is 'Forecast minus reading, mg/dL: positive when the forecast was too high.';
comment on column public.forecast_outcome.inside_band is 'Whether the reading fell inside the forecast''s band.';

-- A person's outcomes by model and time (rollups, live metrics, the policies' person column).
create index forecast_outcome_person_model_target_idx on public.forecast_outcome (person_id, model_id, target_at);
create index forecast_outcome_model_person_idx on public.forecast_outcome (model_id, person_id);
create index forecast_outcome_observation_idx on public.forecast_outcome (observation_id, observed_at);
-- Forecasts whose target time lies in a window (matching outcomes).
create index prediction_person_target_idx on public.prediction (person_id, target_at);

-- -----------------------------------------------------------------------------
-- Monitoring checks
-- -----------------------------------------------------------------------------
create table public.model_health_check (
  id uuid primary key default gen_random_uuid(),
  person_id uuid not null,
  model_id uuid not null,
  checked_at timestamptz not null default now(),
  window_from timestamptz not null,
  window_to timestamptz not null,
  horizon_minutes smallint not null,
  outcomes integer not null check (outcomes >= 0),
  live_rmse_mg_dl real,
  test_rmse_mg_dl real,
  live_coverage real check (live_coverage between 0 and 1),
  nominal_coverage real check (nominal_coverage > 0 and nominal_coverage < 1),
  drift_psi real check (drift_psi >= 0),
  drift_readings integer check (drift_readings >= 0),
  degraded boolean not null,
  reason text not null check (char_length(reason) between 1 and 1000),
  retrain_request_id uuid,
  foreign key (model_id, person_id) references public.ml_model (id, person_id) on delete cascade,
  constraint model_health_check_window check (window_from <= window_to)
);
comment on table public.model_health_check is 'One monitoring check of a person''s active model: live error and coverage against its test split, input drift (PSI), verdict.';
comment on column public.model_health_check.drift_psi is 'Population stability index of recent readings against the training window (glucose bins).';
comment on column public.model_health_check.retrain_request_id is 'The performance retrain this check queued, if any.';

create index model_health_check_person_checked_idx on public.model_health_check (person_id, checked_at desc);
create index model_health_check_model_person_idx on public.model_health_check (model_id, person_id);

/**
 * Worker, in the person's scope: queues a performance retrain unless one was
 * already queued since the model was trained (one per model version). Returns
 * the request, or null.
 */
create or replace function private.enqueue_performance_retrain(p_model_id uuid, p_reason text) returns uuid
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_person uuid := private.worker_person_id();
  v_trained timestamptz;
begin
  if v_person is null then
    raise exception 'a performance retrain is queued in the person''s scope' using errcode = 'insufficient_privilege';
  end if;
  select m.trained_at into v_trained from public.ml_model m where m.id = p_model_id and m.person_id = v_person;
  if not found then
    raise exception 'model % is not a model of the person in scope', p_model_id using errcode = 'no_data_found';
  end if;
  if exists (
    select from public.retrain_request r
    where r.person_id = v_person and r.trigger = 'performance' and r.requested_at >= v_trained
  ) then
    return null;
  end if;
  return private.enqueue_retrain(v_person, 'performance', p_reason);
end
$$;
comment on function private.enqueue_performance_retrain(uuid, text) is 'Worker (scoped): queue a performance retrain, at most one per model version; returns the request or null.';
revoke all on function private.enqueue_performance_retrain(uuid, text) from public;
grant execute on function private.enqueue_performance_retrain(uuid, text) to glucokit_worker;

-- -----------------------------------------------------------------------------
-- Rollups (security_invoker views)
-- -----------------------------------------------------------------------------
create view public.model_daily_accuracy with (security_invoker = true) as
select
  p.person_id,
  p.model_id,
  p.model_version,
  (p.target_at at time zone pe.time_zone)::date as day,
  p.horizon_minutes,
  count(*) as forecasts,
  count(f.prediction_id) as outcomes,
  avg(abs(f.error_mg_dl)) as mae_mg_dl,
  sqrt(avg(f.error_mg_dl * f.error_mg_dl)) as rmse_mg_dl,
  -- Mean absolute relative difference, percent of the reading.
  100 * avg(abs(f.error_mg_dl) / f.observed_mg_dl) as mard_percent,
  avg(f.inside_band::integer) as coverage,
  avg(p.coverage) as nominal_coverage
from public.prediction p
join public.person pe on pe.id = p.person_id
left join public.forecast_outcome f on f.prediction_id = p.id
where p.target_at <= now()
group by p.person_id, p.model_id, p.model_version, (p.target_at at time zone pe.time_zone)::date, p.horizon_minutes;
comment on view public.model_daily_accuracy is
  'Per model version, local day and horizon: forecasts due, outcomes matched, MAE, RMSE, MARD (%), band coverage and its nominal level.';

create view public.model_feedback_summary with (security_invoker = true) as
select
  b.person_id,
  p.model_id,
  p.model_version,
  count(*) filter (where b.rating = 'up') as thumbs_up,
  count(*) filter (where b.rating = 'down') as thumbs_down,
  count(b.comment) as comments,
  max(b.updated_at) as last_feedback_at
from public.forecast_feedback b
join public.prediction p on p.id = b.prediction_id and p.person_id = b.person_id
group by b.person_id, p.model_id, p.model_version;
comment on view public.model_feedback_summary is 'Per model version: thumbs up and down, comments, and the latest feedback.';

-- -----------------------------------------------------------------------------
-- Grants and row-level security
-- -----------------------------------------------------------------------------
-- Users read their persons' outcomes and checks; only workers write them.
alter table public.forecast_outcome enable row level security;
alter table public.model_health_check enable row level security;

revoke all on public.forecast_outcome, public.model_health_check from anon, authenticated, service_role;
grant select on public.forecast_outcome, public.model_health_check to authenticated;
grant select, insert on public.forecast_outcome, public.model_health_check to glucokit_worker;
grant all on public.forecast_outcome, public.model_health_check to service_role;

revoke all on public.model_daily_accuracy, public.model_feedback_summary from anon, authenticated, service_role;
grant select on public.model_daily_accuracy, public.model_feedback_summary to authenticated, glucokit_worker, service_role;

create policy "Owners read the outcomes of their persons' forecasts" on public.forecast_outcome
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));

create policy "Workers read outcomes of the person in their scope" on public.forecast_outcome
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));

create policy "Workers record outcomes of the person in their scope" on public.forecast_outcome
  for insert to glucokit_worker
  with check (person_id = (select private.worker_person_id()));

create policy "Owners read the health checks of their persons' models" on public.model_health_check
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));

create policy "Workers read health checks of the person in their scope" on public.model_health_check
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));

create policy "Workers record health checks of the person in their scope" on public.model_health_check
  for insert to glucokit_worker
  with check (person_id = (select private.worker_person_id()));
