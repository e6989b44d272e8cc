/**
 * -----------------------------------------------------------------------------
 * Model registry: training runs and model versions
 * -----------------------------------------------------------------------------
 * Each person has their own glucose-forecasting models. A training run is one
 * attempt to train; a model version is what a successful run registers. Users
 * read both; only workers (glucokit_worker, in the person's scope) write them.
 */

create type public.training_trigger as enum ('initial', 'scheduled', 'new_data', 'performance', 'user_request');
comment on type public.training_trigger is 'Why a training run was started.';

create type public.training_status as enum ('queued', 'running', 'succeeded', 'failed', 'cancelled');
comment on type public.training_status is 'Where a training run stands.';

create type public.model_stage as enum ('candidate', 'active', 'archived', 'rejected');
comment on type public.model_stage is 'Lifecycle of a model version: candidate until it wins (active) or loses (rejected); active versions are archived when replaced.';

/**
 * A model folder in the `models` bucket:
 * {owner uuid}/{person uuid}/{model type}/v{MAJOR.MINOR.PATCH}/
 * Anything else (leading or doubled slashes, dot segments, percent-encoding)
 * is rejected, so a path can never climb out of its folder in any backend.
 */
create or replace function private.is_model_folder(path text) returns boolean
  language sql immutable strict parallel safe
  set search_path = ''
as $$
  select cardinality(parts) = 5
    and parts[1] ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    and parts[2] ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    and parts[3] ~ '^[a-z][a-z0-9-]{0,63}$'
    and starts_with(parts[4], 'v') and private.is_semver(substr(parts[4], 2))
    and parts[5] = ''
  from (select string_to_array(path, '/') as parts) as split
$$;
comment on function private.is_model_folder(text) is 'True for a model folder {owner}/{person}/{model_type}/v{semver}/.';
revoke all on function private.is_model_folder(text) from public;
grant execute on function private.is_model_folder(text) to glucokit_worker, service_role;

create table public.training_run (
  id uuid primary key default gen_random_uuid(),
  person_id uuid not null references public.person (id) on delete cascade,
  model_type text not null default 'glucose-forecast' check (model_type ~ '^[a-z][a-z0-9-]{0,63}$'),
  trigger public.training_trigger not null,
  status public.training_status not null default 'queued',
  reason text check (char_length(reason) <= 2000),
  attempt integer not null default 1 check (attempt >= 1),
  requested_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  metrics jsonb not null default '{}'::jsonb check (jsonb_typeof(metrics) = 'object'),
  log_path text check (char_length(log_path) <= 1024),
  error text check (char_length(error) <= 10000),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Target of composite foreign keys that keep child rows on the same person.
  unique (id, person_id),
  constraint training_run_started_after_request check (started_at >= requested_at),
  constraint training_run_finished_after_start check (finished_at >= started_at),
  constraint training_run_finished_when_done check (
    (status in ('succeeded', 'failed', 'cancelled')) = (finished_at is not null)
  ),
  constraint training_run_error_when_failed check (status <> 'failed' or error is not null)
);
comment on table public.training_run is 'One attempt to train a person''s model: why, when, how it ended.';
comment on column public.training_run.attempt is 'Retry count of the queue message that started this run.';

create index training_run_person_requested_idx on public.training_run (person_id, requested_at desc);

create trigger training_run_touch_updated_at
  before update on public.training_run
  for each row execute function private.touch_updated_at();

create table public.ml_model (
  id uuid primary key default gen_random_uuid(),
  person_id uuid not null references public.person (id) on delete cascade,
  model_type text not null default 'glucose-forecast' check (model_type ~ '^[a-z][a-z0-9-]{0,63}$'),
  version text not null check (private.is_semver(version)),
  algorithm text not null check (algorithm ~ '^[a-z][a-z0-9_-]{0,63}$'),
  is_fallback boolean not null default false,
  training_run_id uuid,
  storage_path text,
  artifact_sha256 text check (artifact_sha256 ~ '^[0-9a-f]{64}$'),
  trained_at timestamptz not null default now(),
  last_used_at timestamptz,
  data_from timestamptz not null,
  data_to timestamptz not null,
  features text[] not null default '{}',
  hyperparameters jsonb not null default '{}'::jsonb check (jsonb_typeof(hyperparameters) = 'object'),
  metrics jsonb not null default '{}'::jsonb check (jsonb_typeof(metrics) = 'object'),
  stage public.model_stage not null default 'candidate',
  stage_reason text check (char_length(stage_reason) <= 2000),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (person_id, model_type, version),
  unique (id, person_id),
  foreign key (training_run_id, person_id) references public.training_run (id, person_id),
  constraint ml_model_data_window check (data_from < data_to),
  -- Artifacts live in the person's folder of the `models` bucket:
  -- {owner_id}/{person_id}/{model_type}/v{version}/
  constraint ml_model_storage_path check (
    storage_path is null
    or (
      private.is_model_folder(storage_path)
      and split_part(storage_path, '/', 2) = person_id::text
      and split_part(storage_path, '/', 3) = model_type
      and split_part(storage_path, '/', 4) = 'v' || version
    )
  ),
  constraint ml_model_artifact_hashed check ((storage_path is null) = (artifact_sha256 is null))
);
comment on table public.ml_model is 'One trained model version of one person, with its artifacts, data window and metrics.';
comment on column public.ml_model.version is 'Semantic version, unique per person and model type: minor for a retrain, major when the feature set changes.';
comment on column public.ml_model.is_fallback is 'A persistence/AR2 baseline used because data was insufficient or training failed.';
comment on column public.ml_model.storage_path is 'Folder of the artifacts in the models bucket: {owner_id}/{person_id}/{model_type}/v{version}/.';
comment on column public.ml_model.artifact_sha256 is 'SHA-256 of model.safetensors.';

-- At most one active model per person and model type, enforced by the database.
create unique index ml_model_one_active_idx on public.ml_model (person_id, model_type) where stage = 'active';
-- Serves the training-run foreign key.
create index ml_model_training_run_idx on public.ml_model (training_run_id, person_id);

create trigger ml_model_touch_updated_at
  before update on public.ml_model
  for each row execute function private.touch_updated_at();

-- -----------------------------------------------------------------------------
-- Grants and row-level security
-- -----------------------------------------------------------------------------
-- Users read; workers write only the person in their scope and only the
-- columns a lifecycle step changes (a registered model's artifacts, window,
-- features and metrics are immutable).
alter table public.training_run enable row level security;
alter table public.ml_model enable row level security;

revoke all on public.training_run, public.ml_model from anon, authenticated, service_role;
grant select on public.training_run, public.ml_model to authenticated;
grant all on public.training_run, public.ml_model to service_role;

grant select, insert on public.training_run to glucokit_worker;
grant update (status, reason, started_at, finished_at, metrics, log_path, error) on public.training_run to glucokit_worker;
grant select, insert on public.ml_model to glucokit_worker;
grant update (stage, stage_reason, last_used_at) on public.ml_model to glucokit_worker;

create policy "Training runs are visible to the owner of the person" on public.training_run
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));

create policy "Workers read training runs of the person in their scope" on public.training_run
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));

create policy "Workers record training runs of the person in their scope" on public.training_run
  for insert to glucokit_worker
  with check (person_id = (select private.worker_person_id()));

create policy "Workers update training runs of the person in their scope" on public.training_run
  for update to glucokit_worker
  using (person_id = (select private.worker_person_id()))
  with check (person_id = (select private.worker_person_id()));

create policy "Models are visible to the owner of the person" on public.ml_model
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));

create policy "Workers read models of the person in their scope" on public.ml_model
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));

create policy "Workers register models of the person in their scope" on public.ml_model
  for insert to glucokit_worker
  with check (person_id = (select private.worker_person_id()));

create policy "Workers move models of the person in their scope between stages" on public.ml_model
  for update to glucokit_worker
  using (person_id = (select private.worker_person_id()))
  with check (person_id = (select private.worker_person_id()));
