-- The probe world: one signed-in user who owns one person, with a row of every
-- kind. It is created twice, for person A (whose rows the probes act on) and
-- person B (the other user's), inside a transaction that is rolled back.
-- Placeholders in braces are filled by lib/glucokit/tooling/policies.py; a literal
-- brace is written twice. Add the rows of a new table here.

insert into auth.users (id, aud, role, email)
values ({user}, 'authenticated', 'authenticated', {email});

insert into public.person (id, owner_id, display_name)
values ({person}, {user}, 'Probe person');

insert into public.observation (id, person_id, code, value, unit, effective_at, source_system, source_id)
values
  ({observation}, {person}, '99504-3', 110, 'mg/dL', {observation_at}, 'urn:probe', 'reading-1'),
  ({second_observation}, {person}, '99504-3', 115, 'mg/dL', {second_observation_at}, 'urn:probe', 'reading-2');

insert into public.training_run (id, person_id, trigger, status, requested_at, started_at, finished_at)
values ({run}, {person}, 'initial', 'succeeded', {earlier}, {earlier}, {earlier});

-- A failed run: nothing refers to it, so it can be deleted.
insert into public.training_run (id, person_id, trigger, status, requested_at, started_at, finished_at, error)
values ({failed_run}, {person}, 'scheduled', 'failed', {earlier}, {earlier}, {earlier}, 'not enough data');

insert into public.ml_model (
  id, person_id, version, algorithm, training_run_id, storage_path, artifact_sha256,
  data_from, data_to, stage, metrics
)
values (
  {model}, {person}, '1.0.0', 'ridge', {run}, {folder}, repeat('0', 64),
  {earlier}, {observation_at}, 'active', '{{"rmse_30": 15.0}}'
);

-- A forecast (its id derived from the point's) with its 30-minute point and one anchor.
insert into public.forecast (
  id, person_id, owner_id, model_id, generated_at, coverage, disclaimer_version, model_version, training_run_id,
  data_from, data_to, code_version
)
values (
  md5({prediction}::text || '-forecast')::uuid, {person}, {user}, {model}, {second_observation_at}, 0.8, 'v1',
  '1.0.0', {run}, {earlier}, {observation_at}, 'probe'
);

insert into public.prediction (
  id, forecast_id, person_id, owner_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl,
  lower_mg_dl, upper_mg_dl
)
values (
  {prediction}, md5({prediction}::text || '-forecast')::uuid, {person}, {user}, {model}, {second_observation_at},
  {second_observation_at} + interval '30 minutes', 30, 120, 100, 140
);

insert into public.prediction_source (
  forecast_id, person_id, owner_id, model_id, generated_at, observation_id, observation_effective_at
)
values (
  md5({prediction}::text || '-forecast')::uuid, {person}, {user}, {model}, {second_observation_at}, {observation},
  {observation_at}
);

insert into public.quarantined_entry (person_id, source, entry_index, errors, payload)
values ({person}, 'probe.json', 3, '[{{"field": "valueQuantity.code", "reason": "probe"}}]', '{{"resourceType": "Observation"}}');

insert into storage.objects (bucket_id, name)
values ('models', {folder} || 'model.safetensors');

-- Another application's bucket on the same storage.objects table, with the
-- policies such an application typically writes: users manage their own
-- folder of `avatars`, and (a common slip) a copy of it that names no bucket.
-- The matrix proves that neither opens `models`. Created once for both persons.
insert into storage.buckets (id, name) values ('avatars', 'avatars') on conflict (id) do nothing;

insert into storage.objects (bucket_id, name)
values ('avatars', {user} || '/avatar.png');

do $$
begin
  if not exists (select from pg_policies where schemaname = 'storage' and policyname = 'Users manage their own avatars') then
    create policy "Users manage their own avatars" on storage.objects
      for all to authenticated
      using (bucket_id = 'avatars' and (storage.foldername(name))[1] = (select auth.uid())::text)
      with check (bucket_id = 'avatars' and (storage.foldername(name))[1] = (select auth.uid())::text);
    create policy "Users manage the files of their own folder" on storage.objects
      for all to authenticated
      using ((storage.foldername(name))[1] = (select auth.uid())::text)
      with check ((storage.foldername(name))[1] = (select auth.uid())::text);
  end if;
end
$$;

-- A finished retrain request; its message id (derived from the person, never
-- one a queue hands out) is in no queue.
insert into public.retrain_request (
  person_id, trigger, status, msg_id, attempts, requested_at, started_at, finished_at, training_run_id
)
values ({person}, 'initial', 'done', hashtextextended({person}::text, 0), 1, {earlier}, {earlier}, {earlier}, {run});

-- A second forecast point, 60 minutes ahead (its id derived from the first's),
-- which the user has rated. The
-- first stays unrated: the probe that gives feedback rates it.
with rated as (
  insert into public.prediction (
    id, forecast_id, person_id, owner_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl,
    lower_mg_dl, upper_mg_dl
  )
  values (
    md5({prediction}::text || '-60')::uuid, md5({prediction}::text || '-forecast')::uuid, {person}, {user}, {model},
    {second_observation_at}, {second_observation_at} + interval '60 minutes', 60, 125, 100, 150
  )
  returning id, person_id
)
insert into public.forecast_feedback (prediction_id, person_id, user_id, rating, comment)
select id, person_id, {user}, 'up', 'Right on target.' from rated;

-- Consent to training (the worker probes scope themselves for training) and
-- forecasting, not (yet) to pattern search: the probe that gives consent gives
-- that one. And the audit row of the worker that trained the person's model.
insert into public.consent (person_id, purpose, granted_at)
values ({person}, 'training', {earlier}), ({person}, 'forecasting', {earlier});

insert into public.audit_log (person_id, occurred_at, worker, application, purpose, reason)
values ({person}, {earlier}, 'probe_worker', 'glucokit-retrain-job', 'training', 'initial retrain');

-- An A/B experiment the person is assigned to, with a served forecast curve
-- (an exposure), and one they are not in, for the probe that assigns them.
-- Both are stopped (the world's two persons' experiments cannot both run):
-- each is defined as a draft, given its variants, then started and stopped.
-- The first one's id is derived from the person, for the probes of its variants.
insert into public.experiment (id, key, description)
values
  (md5('experiment:' || {person})::uuid, 'probe-' || {person}, 'Probe experiment'),
  (gen_random_uuid(), 'probe-open-' || {person}, 'Probe experiment, unassigned');

insert into public.experiment_variant (experiment_id, name, families)
select e.id, v.name, v.families
from public.experiment e, (values ('a', '{{ridge}}'::text[]), ('b', '{{network}}'::text[])) as v (name, families)
where e.key in ('probe-' || {person}, 'probe-open-' || {person});

update public.experiment set status = 'running', started_at = {earlier} where key = 'probe-' || {person};

insert into public.experiment_assignment (experiment_id, person_id, assigned_at)
select id, {person}, {earlier} from public.experiment where key = 'probe-' || {person};

insert into public.experiment_exposure (
  experiment_id, person_id, variant, model_id, forecast_generated_at, served_at, contaminated
)
select experiment_id, person_id, variant, {model}, {second_observation_at}, {later}, false
from public.experiment_assignment where person_id = {person};

update public.experiment set status = 'stopped', started_at = {earlier}, stopped_at = {later}
where key in ('probe-' || {person}, 'probe-open-' || {person});

-- One day pattern: the day of the readings, at 110 mg/dL all day. (The
-- table needs pgvector: a test server without it, tests/conftest.py, has none.)
do $$
begin
  if to_regclass('public.day_pattern') is not null then
    insert into public.day_pattern (person_id, day, source, embedding, readings, filled_slots)
    values ({person}, {observation_at}::date, 'profile-v1', array_fill(110::real, array[48])::extensions.vector, 288, 0);
  end if;
end
$$;

-- The readings at the targets of both forecast points (ids derived from the
-- person's): the first point's outcome is recorded, the second's is left for
-- the probe that records one.
-- And one health check of the model.
with reading as (
  insert into public.observation (id, person_id, code, value, unit, effective_at, source_system, source_id)
  values
    (md5({person}::text || '-reading-3')::uuid, {person}, '99504-3', 130, 'mg/dL',
      {second_observation_at} + interval '30 minutes', 'urn:probe', 'reading-3'),
    (md5({person}::text || '-reading-4')::uuid, {person}, '99504-3', 140, 'mg/dL',
      {second_observation_at} + interval '60 minutes', 'urn:probe', 'reading-4')
  returning id, effective_at
)
insert into public.forecast_outcome (
  prediction_id, person_id, owner_id, model_id, model_version, coverage, generated_at, target_at, horizon_minutes,
  predicted_mg_dl, observed_mg_dl, observation_id, observed_at, error_mg_dl, inside_band
)
select {prediction}, {person}, {user}, {model}, '1.0.0', 0.8, {second_observation_at}, reading.effective_at, 30, 120,
  130, reading.id, reading.effective_at, -10, true
from reading
where reading.effective_at = {second_observation_at} + interval '30 minutes';

insert into public.model_health_check (
  person_id, model_id, checked_at, window_from, window_to, horizon_minutes, outcomes, degraded, reason
)
values ({person}, {model}, {later}, {earlier}, {later}, 30, 1, false, '1 outcomes at 30 min, 96 needed');

-- A forecast from the latest reading, so that the readings above leave the
-- person with nothing due (the forecast job passes them by). Its band holds
-- the value the prediction update probe writes (121).
with latest as (
  insert into public.forecast (
    person_id, owner_id, model_id, generated_at, coverage, disclaimer_version, model_version, training_run_id,
    data_from, data_to, code_version
  )
  values (
    {person}, {user}, {model}, {second_observation_at} + interval '60 minutes', 0.8, 'v1', '1.0.0', {run},
    {earlier}, {observation_at}, 'probe'
  )
  returning id, generated_at
)
insert into public.prediction (
  forecast_id, person_id, owner_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl,
  upper_mg_dl
)
select id, {person}, {user}, {model}, generated_at, generated_at + interval '5 minutes', 5, 141, 115, 155
from latest;
