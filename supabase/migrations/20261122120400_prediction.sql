/**
 * -----------------------------------------------------------------------------
 * Predictions and their source anchors
 * -----------------------------------------------------------------------------
 * A prediction is one point of a forecast: the value a model expects
 * `horizon_minutes` after `generated_at`, with an uncertainty band, the
 * version of the disclaimer shown with it, and a provenance summary.
 * prediction_source anchors it to the observations it was computed from.
 * Users read both; only workers write them, and nobody edits them.
 */

create table public.prediction (
  id uuid primary key default gen_random_uuid(),
  person_id uuid not null references public.person (id) on delete cascade,
  model_id uuid not null,
  generated_at timestamptz not null,
  target_at timestamptz not null,
  horizon_minutes smallint not null check (horizon_minutes between 5 and 240 and horizon_minutes % 5 = 0),
  value_mg_dl real not null check (value_mg_dl between 10 and 1000),
  lower_mg_dl real not null check (lower_mg_dl >= 0),
  upper_mg_dl real not null check (upper_mg_dl <= 2000),
  coverage real not null check (coverage > 0 and coverage < 1),
  disclaimer_version text not null check (disclaimer_version ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
  model_version text not null check (private.is_semver(model_version)),
  training_run_id uuid,
  data_from timestamptz not null,
  data_to timestamptz not null,
  code_version text not null check (char_length(code_version) between 1 and 64),
  created_at timestamptz not null default now(),
  -- Writing the same forecast twice must not duplicate it.
  constraint prediction_idempotency_key unique (model_id, generated_at, horizon_minutes),
  unique (id, person_id),
  foreign key (model_id, person_id) references public.ml_model (id, person_id) on delete cascade,
  foreign key (training_run_id, person_id) references public.training_run (id, person_id),
  constraint prediction_target_at check (target_at = generated_at + make_interval(mins => horizon_minutes)),
  constraint prediction_band check (lower_mg_dl <= value_mg_dl and value_mg_dl <= upper_mg_dl),
  constraint prediction_data_window check (data_from <= data_to and data_to <= generated_at)
);
comment on table public.prediction is 'One forecast point: value, band, disclaimer version and provenance.';
comment on column public.prediction.generated_at is 'Time the forecast is made from (its latest input reading).';
comment on column public.prediction.coverage is 'Nominal coverage of the band [lower_mg_dl, upper_mg_dl], e.g. 0.8.';
comment on column public.prediction.disclaimer_version is 'Version of the disclaimer text shown with this forecast.';
comment on column public.prediction.code_version is 'Version of the glucokit code that wrote the forecast.';
comment on column public.prediction.data_from is 'Start of the data window the model was trained on.';

-- The latest forecast curve of a person; also serves the person foreign key and the policies.
create index prediction_person_generated_idx on public.prediction (person_id, generated_at desc);
-- Foreign keys.
create index prediction_model_person_idx on public.prediction (model_id, person_id);
create index prediction_training_run_idx on public.prediction (training_run_id, person_id);

create type public.prediction_source_role as enum ('input_window', 'covariate');
comment on type public.prediction_source_role is 'How an observation contributed to a prediction: a glucose reading of the input window, or a covariate (carbohydrates, insulin).';

create table public.prediction_source (
  prediction_id uuid not null,
  person_id uuid not null,
  observation_id uuid not null,
  observation_effective_at timestamptz not null,
  role public.prediction_source_role not null default 'input_window',
  primary key (prediction_id, observation_id),
  foreign key (prediction_id, person_id) references public.prediction (id, person_id) on delete cascade,
  foreign key (observation_id, observation_effective_at) references public.observation (id, effective_at) on delete cascade
);
comment on table public.prediction_source is 'Source anchors: the observations a prediction was computed from (FHIR Observation/{observation_id}).';

create index prediction_source_prediction_person_idx on public.prediction_source (prediction_id, person_id);
create index prediction_source_person_idx on public.prediction_source (person_id);
create index prediction_source_observation_idx on public.prediction_source (observation_id, observation_effective_at);

/**
 * An anchor must point at an observation of the prediction's own person.
 * The observation foreign key cannot carry person_id (observation is
 * partitioned, so its unique keys include effective_at and not person_id), and
 * a foreign key check ignores row-level security, so a trigger holds the line.
 */
create or replace function private.check_prediction_source_person() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
begin
  if not exists (
    select from public.observation o
    where o.id = new.observation_id
      and o.effective_at = new.observation_effective_at
      and o.person_id = new.person_id
  ) then
    raise exception 'observation % does not belong to person %', new.observation_id, new.person_id
      using errcode = 'foreign_key_violation';
  end if;
  return new;
end
$$;
comment on function private.check_prediction_source_person() is 'Trigger: a source anchor stays within the prediction''s person.';
revoke all on function private.check_prediction_source_person() from public;

create trigger prediction_source_check_person
  before insert or update on public.prediction_source
  for each row execute function private.check_prediction_source_person();

-- -----------------------------------------------------------------------------
-- Grants and row-level security
-- -----------------------------------------------------------------------------
alter table public.prediction enable row level security;
alter table public.prediction_source enable row level security;

revoke all on public.prediction, public.prediction_source from anon, authenticated, service_role;
grant select on public.prediction, public.prediction_source to authenticated;
grant select, insert on public.prediction, public.prediction_source to glucokit_worker;
grant all on public.prediction, public.prediction_source to service_role;

create policy "Predictions are visible to the owner of the person" on public.prediction
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));

create policy "Workers read predictions of the person in their scope" on public.prediction
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));

create policy "Workers write predictions of the person in their scope" on public.prediction
  for insert to glucokit_worker
  with check (person_id = (select private.worker_person_id()));

create policy "Prediction sources are visible to the owner of the person" on public.prediction_source
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));

create policy "Workers read prediction sources of the person in their scope" on public.prediction_source
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));

create policy "Workers anchor predictions of the person in their scope" on public.prediction_source
  for insert to glucokit_worker
  with check (person_id = (select private.worker_person_id()));
