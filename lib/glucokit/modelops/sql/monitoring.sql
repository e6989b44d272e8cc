-- Monitoring: forecast outcomes, live metrics, drift and health checks (glucokit.modelops.monitoring).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: monitoring_settings
-- The transaction's clock and the monitoring thresholds (private.monitoring_config).
select now(), match_seconds, outcome_lookback, live_window, min_outcomes, judged_horizon_minutes, max_rmse_ratio,
  max_coverage_shortfall, drift_window, drift_psi_limit, check_interval
from private.monitoring_settings();

-- name: record_outcomes
-- Matches the scoped person's forecasts whose target time has passed to the nearest valid CGM reading within the
-- match window; each outcome recorded (model, horizon, target time, inside the band, above it) with its forecast's
-- nominal coverage, oldest first (private.record_outcomes keeps its plan: migration 20261207300100).
select model_id, horizon_minutes, target_at, inside_band, above, coverage
from private.record_outcomes(
  %(person_id)s, %(now)s, %(lookback)s, %(match_seconds)s, %(codes)s::text[], %(withdrawn)s::text[]
);

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
