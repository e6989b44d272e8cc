-- The model registry: training runs and model versions (glucokit.modelops.registry).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: registry_versions
-- The scoped person's model versions of one type.
select id, version, algorithm, stage::text as stage, stage_reason, is_fallback, storage_path, artifact_sha256,
  features, metrics, trained_at, training_run_id, data_from, data_to
from public.ml_model
where person_id = %(person_id)s and model_type = %(model_type)s;

-- name: registry_active
-- The scoped person's active model version of one type (at most one: ml_model_one_active_idx).
select id, version, algorithm, stage::text as stage, stage_reason, is_fallback, storage_path, artifact_sha256,
  features, metrics, trained_at, training_run_id, data_from, data_to
from public.ml_model
where person_id = %(person_id)s and model_type = %(model_type)s and stage = 'active';

-- name: registry_start_run
-- A training run of the scoped person that starts now.
insert into public.training_run (person_id, trigger, status, reason, attempt, started_at)
values (%(person_id)s, %(trigger)s, 'running', %(reason)s, %(attempt)s, now())
returning id;

-- name: registry_finish_run
-- Ends a training run.
update public.training_run
set status = %(status)s, metrics = %(metrics)s, error = %(error)s, finished_at = now()
where id = %(run_id)s;

-- name: registry_register
-- A new candidate model version of the scoped person.
insert into public.ml_model (
  person_id, model_type, version, algorithm, is_fallback, training_run_id, storage_path, artifact_sha256,
  data_from, data_to, features, hyperparameters, metrics, card
)
values (
  %(person_id)s, %(model_type)s, %(version)s, %(algorithm)s, %(is_fallback)s, %(training_run_id)s, %(storage_path)s,
  %(artifact_sha256)s, %(data_from)s, %(data_to)s, %(features)s, %(hyperparameters)s, %(metrics)s, %(card)s
)
returning id, version, algorithm, stage::text as stage, stage_reason, is_fallback, storage_path, artifact_sha256,
  features, metrics, trained_at, training_run_id, data_from, data_to;

-- name: registry_set_stage
-- Moves a model version to another stage, saying why.
update public.ml_model set stage = %(stage)s::public.model_stage, stage_reason = %(reason)s where id = %(id)s;
