-- A person's data as FHIR (glucokit.fhir.export).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: export_observations
-- A person's observations, oldest first, as the current role sees them.
select id, status, category, code_system, code, value, unit, original_value, original_unit, effective_at,
  issued_at, device, source_system, source_id, resource
from public.observation
where person_id = %(person_id)s
order by effective_at, id;

-- name: export_forecasts
-- A person's forecast points by model version, with their forecast's source observations and the model that
-- made them.
select p.id as prediction_id, p.generated_at, p.target_at, p.horizon_minutes as minutes, p.value_mg_dl as value,
  p.lower_mg_dl as low, p.upper_mg_dl as high, f.coverage, f.disclaimer_version, f.created_at as issued_at,
  coalesce(s.sources, '{}') as sources,
  m.id as model_id, m.version, m.algorithm, m.trained_at, m.data_from, m.data_to
from public.forecast f
join public.prediction p on p.forecast_id = f.id and p.generated_at = f.generated_at
join public.ml_model m on m.id = f.model_id
left join lateral (
  select array_agg(a.observation_id order by a.observation_effective_at, a.observation_id) as sources
  from public.prediction_source a
  where a.forecast_id = f.id and a.generated_at = f.generated_at
) as s on true
where f.person_id = %(person_id)s and p.person_id = %(person_id)s
order by m.trained_at, m.id, p.generated_at, p.horizon_minutes, p.id;
