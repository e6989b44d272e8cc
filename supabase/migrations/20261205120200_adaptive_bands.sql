/**
 * -----------------------------------------------------------------------------
 * Adaptive forecast bands, and clinical accuracy in the daily rollup
 * -----------------------------------------------------------------------------
 * A forecast's band was the split-conformal half-width its model was trained
 * with, for good. When a person's glucose drifts from the days it was
 * calibrated on, the band covers less than it says, and stays so. Bands now
 * follow their outcomes (adaptive conformal inference, lib/glucokit/forecast/
 * bands.py): each model version keeps, per horizon, the width of each side of
 * the band it serves with (mg/dL below the forecast, percent of the forecast
 * above it), which each recorded outcome moves (a side widens after a reading
 * beyond it and narrows otherwise), so that the share of readings below and
 * above the bands each converges to half the nominal miss rate.
 *
 * The state is private.band_state: the API roles never see it, and only the
 * two security-definer functions below touch it, in a worker's person scope
 * and for that person's models only. It goes with its model (on delete
 * cascade), so erasing a person or their models leaves nothing of it.
 *
 * public.model_daily_accuracy gains the glucose-specific RMSE (gRMSE, Del
 * Favero et al., IEEE Trans Biomed Eng 2012;59:1281) and the counts behind the
 * detection of lows (< 70 mg/dL) and highs (> 180 mg/dL): readings in the
 * range, forecasts in it, and both. Its columns so far stay as they were.
 */

-- -----------------------------------------------------------------------------
-- Band state
-- -----------------------------------------------------------------------------
create table private.band_state (
  model_id uuid not null,
  person_id uuid not null,
  horizon_minutes smallint not null check (horizon_minutes between 5 and 60 and horizon_minutes % 5 = 0),
  -- The sides served now: mg/dL below the forecast, and percent of the forecast above it; neither reaches
  -- further than a sensor's range (40-400 mg/dL: 360 mg/dL, and 900 % of a 40 mg/dL forecast).
  lower_mg_dl real not null check (lower_mg_dl between 0 and 360),
  upper_percent real not null check (upper_percent between 0 and 900),
  -- How far one outcome moves each (a fraction of the width it started from).
  lower_step_mg_dl real not null check (lower_step_mg_dl > 0),
  upper_step_percent real not null check (upper_step_percent > 0),
  -- Outcomes it has learned from, and how many of them fell outside the band.
  outcomes integer not null default 0 check (outcomes >= 0),
  misses integer not null default 0 check (misses between 0 and outcomes),
  updated_at timestamptz not null default now(),
  primary key (model_id, person_id, horizon_minutes),
  foreign key (model_id, person_id) references public.ml_model (id, person_id) on delete cascade
);
comment on table private.band_state is
  'Per model version and horizon: the band sides forecasts are served with, each moved by each outcome (adaptive conformal inference).';

alter table private.band_state enable row level security;
revoke all on private.band_state from public, anon, authenticated, service_role;

/**
 * Worker, in the person's scope: the band state of one of the person's models,
 * per horizon, locked until the transaction ends so that two workers cannot
 * both learn from the same state and lose one's outcomes. No rows: the model
 * has not served a band yet.
 */
create or replace function private.read_band_state(p_model_id uuid)
  returns table (
    horizon_minutes smallint, lower_mg_dl real, lower_step_mg_dl real, upper_percent real, upper_step_percent real,
    outcomes integer, misses integer
  )
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_person uuid := private.worker_person_id();
begin
  if v_person is null then
    raise exception 'band state is read in the person''s scope' using errcode = 'insufficient_privilege';
  end if;
  return query
    select s.horizon_minutes, s.lower_mg_dl, s.lower_step_mg_dl, s.upper_percent, s.upper_step_percent, s.outcomes,
      s.misses
    from private.band_state s
    where s.model_id = p_model_id and s.person_id = v_person
    order by s.horizon_minutes
    for update;
end
$$;
comment on function private.read_band_state(uuid) is 'Worker (scoped): the band state of one of the person''s models, locked.';
revoke all on function private.read_band_state(uuid) from public;
grant execute on function private.read_band_state(uuid) to glucokit_worker;

/**
 * Worker, in the person's scope: stores the band state of one of the person's
 * models, one array element per horizon.
 */
create or replace function private.save_band_state(
  p_model_id uuid,
  p_horizons smallint[],
  p_lowers real[],
  p_lower_steps real[],
  p_uppers real[],
  p_upper_steps real[],
  p_outcomes integer[],
  p_misses integer[]
) returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_person uuid := private.worker_person_id();
begin
  if v_person is null then
    raise exception 'band state is saved in the person''s scope' using errcode = 'insufficient_privilege';
  end if;
  if not exists (select from public.ml_model m where m.id = p_model_id and m.person_id = v_person) then
    raise exception 'model % is not a model of the person in scope', p_model_id using errcode = 'no_data_found';
  end if;
  insert into private.band_state as s (
    model_id, person_id, horizon_minutes, lower_mg_dl, lower_step_mg_dl, upper_percent, upper_step_percent,
    outcomes, misses, updated_at
  )
  select p_model_id, v_person, u.horizon, u.lower, u.lower_step, u.upper, u.upper_step, u.outcomes, u.misses, now()
  from unnest(p_horizons, p_lowers, p_lower_steps, p_uppers, p_upper_steps, p_outcomes, p_misses)
    as u (horizon, lower, lower_step, upper, upper_step, outcomes, misses)
  on conflict (model_id, person_id, horizon_minutes) do update
    set lower_mg_dl = excluded.lower_mg_dl, lower_step_mg_dl = excluded.lower_step_mg_dl,
      upper_percent = excluded.upper_percent, upper_step_percent = excluded.upper_step_percent,
      outcomes = excluded.outcomes, misses = excluded.misses, updated_at = excluded.updated_at;
end
$$;
comment on function
  private.save_band_state(uuid, smallint[], real[], real[], real[], real[], integer[], integer[]) is
  'Worker (scoped): store the band state of one of the person''s models, per horizon.';
revoke all on function
  private.save_band_state(uuid, smallint[], real[], real[], real[], real[], integer[], integer[]) from public;
grant execute on function
  private.save_band_state(uuid, smallint[], real[], real[], real[], real[], integer[], integer[]) to glucokit_worker;

-- -----------------------------------------------------------------------------
-- gRMSE's penalty
-- -----------------------------------------------------------------------------
/**
 * 0 at x <= -1, 1 at x >= 1, and in between the quartic of Del Favero et al.
 * 2012, smooth at both ends.
 */
create or replace function private.grmse_smooth_step(x double precision) returns double precision
  language sql immutable parallel safe
  set search_path = ''
as $$
  select case
    when x <= -1 then 0.0
    when x >= 1 then 1.0
    when x <= 0 then (-(x ^ 4) - 2 * x ^ 3 + 2 * x + 1) / 2
    else (x ^ 4 - 2 * x ^ 3 + 2 * x + 1) / 2
  end
$$;

/**
 * The weight gRMSE gives a squared error (the same as
 * glucokit.forecast.metrics.grmse_penalty, with its parameters): 1, up to
 * 2.5 when a low reading (below 50, fading out by 80 mg/dL) was over-estimated
 * by more than 10 mg/dL, up to 2 when a high one (from 250, fully above 350
 * mg/dL) was under-estimated by more than 20 mg/dL.
 */
create or replace function private.grmse_penalty(observed double precision, predicted double precision)
  returns double precision
  language sql immutable parallel safe
  set search_path = ''
as $$
  select 1
    + 1.5 * private.grmse_smooth_step(-2.0 / 10 * (observed - predicted + 10.0 / 2))
      * private.grmse_smooth_step(-2.0 / 30 * (observed - 80 + 30.0 / 2))
    + 1.0 * private.grmse_smooth_step(2.0 / 20 * (observed - predicted - 20.0 / 2))
      * private.grmse_smooth_step(2.0 / 100 * (observed - 250 - 100.0 / 2))
$$;
comment on function private.grmse_penalty(double precision, double precision) is
  'gRMSE''s weight of a squared forecast error (Del Favero et al. 2012).';

-- The rollup is security_invoker: whoever reads it calls these.
revoke all on function private.grmse_smooth_step(double precision) from public;
revoke all on function private.grmse_penalty(double precision, double precision) from public;
grant execute on function private.grmse_smooth_step(double precision), private.grmse_penalty(double precision, double precision)
  to authenticated, glucokit_worker, service_role;

-- -----------------------------------------------------------------------------
-- The daily rollup, with gRMSE and the detection of lows and highs
-- -----------------------------------------------------------------------------
-- The thresholds are the consensus target range (glucokit.units.TARGET_RANGE_MG_DL).
create or replace view public.model_daily_accuracy with (security_invoker = true) as
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
  avg(p.coverage) as nominal_coverage,
  sqrt(avg(f.error_mg_dl * f.error_mg_dl * private.grmse_penalty(f.observed_mg_dl, f.predicted_mg_dl)))
    as grmse_mg_dl,
  count(*) filter (where f.observed_mg_dl < 70) as lows,
  count(*) filter (where f.predicted_mg_dl < 70) as lows_forecast,
  count(*) filter (where f.observed_mg_dl < 70 and f.predicted_mg_dl < 70) as lows_detected,
  count(*) filter (where f.observed_mg_dl > 180) as highs,
  count(*) filter (where f.predicted_mg_dl > 180) as highs_forecast,
  count(*) filter (where f.observed_mg_dl > 180 and f.predicted_mg_dl > 180) as highs_detected
from public.prediction p
join public.person pe on pe.id = p.person_id
left join public.forecast_outcome f on f.prediction_id = p.id
where p.target_at <= now()
group by p.person_id, p.model_id, p.model_version, (p.target_at at time zone pe.time_zone)::date, p.horizon_minutes;
comment on view public.model_daily_accuracy is
  'Per model version, local day and horizon: forecasts due, outcomes matched, MAE, RMSE, MARD (%), band coverage and its nominal level, gRMSE, and the readings below 70 / above 180 mg/dL, the forecasts there and both (detection of lows and highs).';
