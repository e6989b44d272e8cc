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
-- A person's forecast points by model version, with their source observations and the model that made them.
select p.id as prediction_id, p.generated_at, p.target_at, p.horizon_minutes as minutes, p.value_mg_dl as value,
  p.lower_mg_dl as low, p.upper_mg_dl as high, p.coverage, p.disclaimer_version, p.created_at as issued_at,
  coalesce(array_agg(s.observation_id order by s.observation_effective_at, s.observation_id)
    filter (where s.observation_id is not null), '{}') as sources,
  m.id as model_id, m.version, m.algorithm, m.trained_at, m.data_from, m.data_to
from public.prediction p
join public.ml_model m on m.id = p.model_id
left join public.prediction_source s on s.prediction_id = p.id
where p.person_id = %(person_id)s
group by p.id, m.id
order by m.trained_at, m.id, p.generated_at, p.horizon_minutes, p.id;
