-- Monitoring: forecast outcomes, live metrics, drift and health checks (glucokit.modelops.monitoring).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: monitoring_settings
-- The transaction's clock and the monitoring thresholds (private.monitoring_config).
select now(), match_seconds, outcome_lookback, live_window, min_outcomes, judged_horizon_minutes, max_rmse_ratio,
  max_coverage_shortfall, drift_window, drift_psi_limit, check_interval
from private.monitoring_settings();

-- name: record_outcomes
-- Matches the scoped person's forecasts whose target time has passed to the nearest valid CGM reading within
-- the match window, for forecasts not matched yet and not older than the look-back; returns each outcome
-- recorded (model, horizon, target time, inside the band, above it) with its forecast's nominal coverage. An
-- outcome carries what the rollups need (owner, origin, model version, nominal coverage), so it outlives its
-- point's retention.
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
    where o.person_id = p.person_id and o.code = any(%(codes)s) and o.status <> all(%(withdrawn)s)
      and o.effective_at between p.target_at - make_interval(secs => %(match_seconds)s)
        and p.target_at + make_interval(secs => %(match_seconds)s)
    order by abs(extract(epoch from o.effective_at - p.target_at)), o.effective_at
    limit 1
  ) as r
  where p.person_id = %(person_id)s
    and p.target_at between %(now)s - %(lookback)s and %(now)s + make_interval(secs => %(match_seconds)s)
    and not exists (select from public.forecast_outcome o where o.prediction_id = p.id)
  on conflict (prediction_id) do nothing
  returning prediction_id, generated_at, model_id, horizon_minutes, target_at, inside_band, observed_mg_dl, coverage
)
select r.model_id, r.horizon_minutes, r.target_at, r.inside_band, r.observed_mg_dl > p.upper_mg_dl, r.coverage
from recorded r
join public.prediction p on p.id = r.prediction_id and p.generated_at = r.generated_at
order by r.target_at, r.horizon_minutes;

-- name: last_health_check
-- When the scoped person's model was last checked.
select max(checked_at) from public.model_health_check where person_id = %(person_id)s and model_id = %(model_id)s;

-- name: live_metrics
-- Outcomes of one model at one horizon in a window: count, RMSE, band coverage and its nominal level.
select count(*), sqrt(avg(f.error_mg_dl * f.error_mg_dl)), avg(f.inside_band::integer), avg(f.coverage)
from public.forecast_outcome f
where f.person_id = %(person_id)s and f.model_id = %(model_id)s and f.horizon_minutes = %(minutes)s
  and f.target_at > %(since)s and f.target_at <= %(now)s;

-- name: drift_counts
-- Valid CGM readings per glucose bin: in the model's training window (expected) and in the recent window (actual).
select width_bucket(o.value::float8, %(edges)s::float8[]) as bin,
  count(*) filter (where o.effective_at between %(train_from)s and %(train_to)s) as expected,
  count(*) filter (where o.effective_at > %(recent_from)s and o.effective_at <= %(now)s) as actual
from public.observation o
where o.person_id = %(person_id)s and o.code = any(%(codes)s) and o.status <> all(%(withdrawn)s)
  and (o.effective_at between %(train_from)s and %(train_to)s
    or (o.effective_at > %(recent_from)s and o.effective_at <= %(now)s))
group by bin;

-- name: insert_health_check
-- Records one monitoring check of the scoped person's model.
insert into public.model_health_check (
  person_id, model_id, checked_at, window_from, window_to, horizon_minutes, outcomes, live_rmse_mg_dl,
  test_rmse_mg_dl, live_coverage, nominal_coverage, drift_psi, drift_readings, degraded, reason, retrain_request_id
)
values (
  %(person_id)s, %(model_id)s, %(now)s, %(window_from)s, %(now)s, %(minutes)s, %(outcomes)s, %(live_rmse)s,
  %(test_rmse)s, %(live_coverage)s, %(nominal_coverage)s, %(psi)s, %(drift_readings)s, %(degraded)s, %(reason)s,
  %(retrain_request_id)s
);

-- name: enqueue_performance_retrain
-- Queues a performance retrain of the scoped person (one per model version); the request or null.
select private.enqueue_performance_retrain(%(model_id)s, %(reason)s);
