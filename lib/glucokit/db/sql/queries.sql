-- Named queries used by glucokit's Python code (see lib/glucokit/db/queries.py).

-- name: supabase_roles_present
-- True when any of the given roles exists: the database is a Supabase project.
select exists (select from pg_roles where rolname = any(%(roles)s));

-- name: applied_migrations
-- The migration versions recorded by the Supabase CLI, oldest first.
select version, name
from supabase_migrations.schema_migrations
order by version;

-- name: migration_history_exists
-- True when the Supabase CLI's migration history table exists.
select to_regclass('supabase_migrations.schema_migrations') is not null;

-- name: server_version
-- The server's version string.
select current_setting('server_version');

-- name: table_row_counts
-- Rows per kit table (and model files), as the current role sees them.
select 'person' as "table", count(*) from public.person
union all select 'observation', count(*) from public.observation
union all select 'training_run', count(*) from public.training_run
union all select 'ml_model', count(*) from public.ml_model
union all select 'prediction', count(*) from public.prediction
union all select 'prediction_source', count(*) from public.prediction_source
union all select 'quarantined_entry', count(*) from public.quarantined_entry
union all select 'forecast_feedback', count(*) from public.forecast_feedback
union all select 'storage: models bucket', count(*) from storage.objects where bucket_id = 'models';

-- name: demo_upsert_user
-- A demo auth user with a fixed id.
insert into auth.users (id, aud, role, email)
values (%(id)s, 'authenticated', 'authenticated', %(email)s)
on conflict (id) do nothing;

-- name: demo_reset_person
-- Removes a demo person and, by cascade, everything recorded about them.
delete from public.person where id = %(id)s;

-- name: demo_forget_erasure
-- The demo removes a reset person's files itself: their erasure marker goes too.
delete from private.erasure where person_id = %(id)s;

-- name: demo_insert_person
-- A demo person owned by a demo user, who consents to every purpose for them.
with person as (
  insert into public.person (id, owner_id, display_name, time_zone)
  values (%(id)s, %(owner_id)s, %(display_name)s, 'Europe/Berlin')
  returning id
)
insert into public.consent (person_id, purpose)
select person.id, purpose from person, unnest(enum_range(null::public.processing_purpose)) as purpose
where purpose <> 'deletion';

-- name: demo_reset_model_files
-- Forgets the files of a demo person's earlier models (their rows; the store sweeps the bytes).
delete from storage.objects where bucket_id = 'models' and starts_with(name, %(folder)s);

-- name: tables_without_rls
-- Tables (partitions included) of the exposed schema without row-level security.
select c.relname
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relrowsecurity
order by c.relname;

-- name: column_type
-- The type name and modifier of one column (for vector(384): vector, 384).
select t.typname, a.atttypmod
from pg_attribute a
join pg_type t on t.oid = a.atttypid
where a.attrelid = to_regclass(format('%%I.%%I', %(schema)s::text, %(table)s::text))
  and a.attname = %(column)s and not a.attisdropped;

-- name: guard_tables
-- Tables and partitions of the exposed schemas: name, row-level security on, is a partition.
select n.nspname || '.' || c.relname, c.relrowsecurity, c.relispartition
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%(schemas)s) and c.relkind in ('r', 'p')
order by 1;

-- name: guard_definer_views
-- Views of the exposed schemas that run with their owner's rights.
select n.nspname || '.' || c.relname
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any(%(schemas)s)
  and c.relkind in ('v', 'm')
  and not coalesce('security_invoker=true' = any(c.reloptions), false)
order by 1;

-- name: guard_policies
-- Policies on the exposed schemas and on storage.objects.
select schemaname, tablename, policyname, roles::text[], cmd, qual, with_check
from pg_policies
where schemaname = any(%(schemas)s) or (schemaname = 'storage' and tablename = 'objects')
order by 1, 2, 3;

-- name: guard_unindexed_policy_columns
-- Columns that policies read and that no index of their table starts with.
select distinct n.nspname || '.' || c.relname, a.attname
from pg_policy p
join pg_class c on c.oid = p.polrelid
join pg_namespace n on n.oid = c.relnamespace
join pg_depend d
  on d.classid = 'pg_policy'::regclass and d.objid = p.oid
  and d.refclassid = 'pg_class'::regclass and d.refobjid = c.oid and d.refobjsubid > 0
join pg_attribute a on a.attrelid = c.oid and a.attnum = d.refobjsubid
where n.nspname = any(%(schemas)s)
  and not exists (select from pg_index i where i.indrelid = c.oid and i.indkey[0] = d.refobjsubid)
order by 1, 2;

-- name: guard_security_definer
-- Security-definer functions in the given schemas, with their settings.
select format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
       n.nspname, coalesce(array_to_string(p.proconfig, ','), '')
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
where p.prosecdef and n.nspname = any(%(schemas)s)
order by 1;

-- name: guard_anon_grants
-- Privileges that anon or PUBLIC hold on tables, columns and functions of the given schemas.
select target, string_agg(distinct privilege, ', ' order by privilege)
from (
  select n.nspname || '.' || c.relname as target, acl.privilege_type as privilege
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  cross join lateral aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) acl
  where n.nspname = any(%(schemas)s)
    and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
    and acl.grantee in (0, to_regrole('anon'))
  union all
  select n.nspname || '.' || c.relname || '.' || a.attname, acl.privilege_type
  from pg_attribute a
  join pg_class c on c.oid = a.attrelid
  join pg_namespace n on n.oid = c.relnamespace
  cross join lateral aclexplode(a.attacl) acl
  where n.nspname = any(%(schemas)s) and acl.grantee in (0, to_regrole('anon'))
  union all
  select format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)), acl.privilege_type
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
  cross join lateral aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) acl
  where n.nspname = any(%(schemas)s) and acl.grantee in (0, to_regrole('anon'))
) as granted
group by target
order by target;

-- name: person_visible
-- True when the current role sees the person (for a user: owns it), and the database's clock.
select exists (select from public.person where id = %(person_id)s), now();

-- name: ingest_create_stage
-- The session's staging table for ingest batches: COPY cannot write into a
-- table under row-level security, so batches land here first and reach
-- public.observation through an INSERT that the policies check.
create temporary table if not exists observation_stage (
  status text, category text, code_system text, code text, value numeric, unit text,
  original_value numeric, original_unit text, effective_at timestamptz, issued_at timestamptz,
  device text, source_system text, source_id text, resource text
) on commit delete rows;

-- name: ingest_copy_stage
-- Binary COPY of one batch into the staging table.
copy pg_temp.observation_stage (
  status, category, code_system, code, value, unit, original_value, original_unit, effective_at, issued_at,
  device, source_system, source_id, resource
) from stdin (format binary);

-- name: ingest_move_corrections
-- A correction (amended, corrected, entered-in-error) may move a reading in
-- time: the version at the old time goes, the staged one replaces it.
delete from public.observation o
using pg_temp.observation_stage s
where s.status in ('amended', 'corrected', 'entered-in-error')
  and o.person_id = %(person_id)s
  and o.source_system = s.source_system
  and o.source_id = s.source_id
  and o.effective_at <> s.effective_at;

-- name: ingest_insert_stage
-- New readings of the batch; the ones already stored are left to ingest_update_stage.
insert into public.observation (
  person_id, status, category, code_system, code, value, unit, original_value, original_unit, effective_at,
  issued_at, device, source_system, source_id, resource
)
select
  %(person_id)s, status, category, code_system, code, value, unit, original_value, original_unit, effective_at,
  issued_at, device, source_system, source_id, resource::jsonb
from pg_temp.observation_stage
on conflict (person_id, source_system, source_id, effective_at) do nothing;

-- name: ingest_update_stage
-- Readings stored before whose source sent a different version: the new one wins.
update public.observation o
set status = s.status, category = s.category, code_system = s.code_system, code = s.code, value = s.value,
  unit = s.unit, original_value = s.original_value, original_unit = s.original_unit, issued_at = s.issued_at,
  device = s.device, resource = s.resource::jsonb
from pg_temp.observation_stage s
where o.person_id = %(person_id)s
  and o.source_system = s.source_system
  and o.source_id = s.source_id
  and o.effective_at = s.effective_at
  and (o.status, o.category, o.code_system, o.code, o.value, o.unit, o.original_value, o.original_unit,
       o.issued_at, o.device, o.resource)
    is distinct from
      (s.status, s.category, s.code_system, s.code, s.value, s.unit, s.original_value, s.original_unit,
       s.issued_at, s.device, s.resource::jsonb);

-- name: quarantine_entry
-- One rejected entry, with its errors and payload as received.
insert into public.quarantined_entry (person_id, source, entry_index, errors, payload)
values (%(person_id)s, %(source)s, %(entry_index)s, %(errors)s, %(payload)s);

-- name: person_owner
-- The user who owns a person (for the operator's CLI, which acts on the owner's behalf).
select owner_id from public.person where id = %(person_id)s;

-- name: export_observations
-- A person's observations, oldest first, as the current role sees them.
select id, status, category, code_system, code, value, unit, original_value, original_unit, effective_at,
  issued_at, device, source_system, source_id, resource
from public.observation
where person_id = %(person_id)s
order by effective_at, id;

-- name: storage_put_object
-- Records (or replaces) one object of a bucket; the bucket's policies decide whether the current role may.
insert into storage.objects (bucket_id, name, metadata)
values (%(bucket)s, %(name)s, %(metadata)s)
on conflict (bucket_id, name) do update set metadata = excluded.metadata, updated_at = now();

-- name: storage_object_etag
-- The recorded SHA-256 of one object, if the current role may read it.
select metadata ->> 'eTag' from storage.objects where bucket_id = %(bucket)s and name = %(name)s;

-- name: storage_remove_folder
-- Removes the objects under a folder that the current role may delete; returns their names.
delete from storage.objects where bucket_id = %(bucket)s and starts_with(name, %(folder)s) returning name;

-- name: storage_folder_objects
-- The objects under a folder that the current role sees.
select name from storage.objects where bucket_id = %(bucket)s and starts_with(name, %(folder)s);

-- name: storage_unregistered_folders
-- The model folders under a folder that hold objects the current role sees and that no model version it sees registers.
select distinct substring(o.name from '^(.*/)[^/]*$') as folder
from storage.objects o
where o.bucket_id = %(bucket)s
  and starts_with(o.name, %(folder)s)
  and not exists (select from public.ml_model m where m.storage_path = substring(o.name from '^(.*/)[^/]*$'))
order by folder;

-- name: worker_scope
-- The person the current worker transaction is scoped to (null when unscoped).
select private.worker_person_id();

-- name: registry_versions
-- The scoped person's model versions of one type.
select id, version, algorithm, stage::text as stage, stage_reason, is_fallback, storage_path, artifact_sha256,
  features, metrics, trained_at, training_run_id, data_from, data_to
from public.ml_model
where person_id = %(person_id)s and model_type = %(model_type)s;

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
  data_from, data_to, features, hyperparameters, metrics
)
values (
  %(person_id)s, %(model_type)s, %(version)s, %(algorithm)s, %(is_fallback)s, %(training_run_id)s, %(storage_path)s,
  %(artifact_sha256)s, %(data_from)s, %(data_to)s, %(features)s, %(hyperparameters)s, %(metrics)s
)
returning id, version, algorithm, stage::text as stage, stage_reason, is_fallback, storage_path, artifact_sha256,
  features, metrics, trained_at, training_run_id, data_from, data_to;

-- name: registry_set_stage
-- Moves a model version to another stage, saying why.
update public.ml_model set stage = %(stage)s::public.model_stage, stage_reason = %(reason)s where id = %(id)s;

-- name: pgmq_present
-- True when PGMQ is installed (as the extension or by its SQL-only script).
select exists (select from pg_extension where extname = 'pgmq') or to_regprocedure('pgmq.create(text)') is not null;

-- name: pgmq_create_extension
-- PGMQ on a Supabase project: the extension behind Supabase Queues.
create extension if not exists pgmq;

-- name: retrain_enqueue
-- Queues a retrain of a person (deduplicated: one queued request per person); the request id.
select private.enqueue_retrain(%(person_id)s, %(trigger)s::public.training_trigger, %(reason)s);

-- name: retrain_request
-- The signed-in owner asks for a retrain of one of their persons (rate limited); the request id.
select public.request_retrain(%(person_id)s, %(reason)s);

-- name: retrain_enqueue_due
-- Queues retrains of persons whose active model is older than max_age; how many.
select private.enqueue_due_retrains(%(max_age)s, %(limit)s);

-- name: retrain_read
-- Reads retrain messages and hides them for vt_seconds, with the request each one carries.
select msg_id, read_ct, enqueued_at, vt, message, request_id, person_id, trigger::text, status::text
from private.read_retrains(%(vt_seconds)s, %(qty)s);

-- name: retrain_peek
-- The visible retrain messages of one job task's shard, oldest first, without hiding them.
select msg_id, read_ct, enqueued_at, vt, message, request_id, person_id, trigger::text, status::text
from private.peek_retrains(%(shard_index)s, %(shard_count)s, %(qty)s);

-- name: retrain_claim
-- Claims the retrain a message carries: claimed, busy, dropped or exhausted.
select outcome, request_id, person_id, trigger::text, reason, attempt, lease_expires_at
from private.claim_retrain(%(msg_id)s, %(lease_seconds)s);

-- name: retrain_extend_lease
-- Extends a live claim; the new end of its lease.
select private.extend_retrain_lease(%(msg_id)s, %(attempt)s, %(lease_seconds)s);

-- name: retrain_complete
-- Ends a claim as done (deletes the message); false when its person is gone.
select private.complete_retrain(%(msg_id)s, %(attempt)s, %(training_run_id)s);

-- name: retrain_fail
-- Ends a claim as failed (archives the message); false when its person is gone.
select private.fail_retrain(%(msg_id)s, %(attempt)s, %(error)s, %(training_run_id)s);

-- name: retrain_retry
-- The claimed retrain raised: retrying (with when) after a backoff, failed after the last attempt, or gone.
select outcome, retry_at from private.retry_retrain(%(msg_id)s, %(attempt)s, %(error)s);

-- name: retrain_metrics
-- The retrain queue at a glance.
select queue_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, queued, running, expired_leases,
  retrying, failed_last_day
from private.retrain_queue_metrics();

-- name: retrain_dead_letters
-- The operator's view of retrain requests given up for good (as the database owner: an operator tool), newest first.
select id, person_id, trigger::text, attempts, error, finished_at
from public.retrain_request
where status = 'failed'
order by finished_at desc nulls last, id
limit %(limit)s;

-- name: retrain_person
-- The scoped person's owner and time zone.
select owner_id, time_zone from public.person where id = %(person_id)s;

-- name: retrain_person_readings
-- The scoped person's readings of the given codes that are valid results, oldest first.
select code, effective_at, value
from public.observation
where person_id = %(person_id)s and code = any(%(codes)s) and status <> all(%(withdrawn)s)
order by effective_at;

-- name: forecast_last_origin
-- The latest reading a model has forecast from (null: none yet).
select max(generated_at) from public.prediction where model_id = %(model_id)s;

-- name: latest_reading
-- The time of the person's latest valid CGM reading at or before a moment (any time when null; null: none).
select max(effective_at)
from public.observation
where person_id = %(person_id)s and code = any(%(codes)s) and status <> all(%(withdrawn)s)
  and (%(until)s::timestamptz is null or effective_at <= %(until)s);

-- name: forecast_person_records
-- The scoped person's valid records of the given codes in a time range, with their ids, oldest first.
select id, code, effective_at, value
from public.observation
where person_id = %(person_id)s and code = any(%(codes)s) and status <> all(%(withdrawn)s)
  and effective_at > %(since)s and effective_at <= %(until)s
order by effective_at;

-- name: forecast_create_stage
-- The session's staging tables for forecast points and their anchors (COPY
-- cannot write into a table under row-level security).
create temporary table if not exists forecast_point_stage (
  generated_at timestamptz, horizon_minutes smallint, value_mg_dl real, lower_mg_dl real, upper_mg_dl real
) on commit delete rows;
create temporary table if not exists forecast_source_stage (
  generated_at timestamptz, observation_id uuid, observation_effective_at timestamptz, role text
) on commit delete rows;

-- name: forecast_copy_points
-- Binary COPY of forecast points into their staging table.
copy pg_temp.forecast_point_stage (generated_at, horizon_minutes, value_mg_dl, lower_mg_dl, upper_mg_dl)
from stdin (format binary);

-- name: forecast_copy_sources
-- Binary COPY of the points' anchors, by origin, into their staging table.
copy pg_temp.forecast_source_stage (generated_at, observation_id, observation_effective_at, role)
from stdin (format binary);

-- name: forecast_insert_points
-- The staged points that are new (model, origin, horizon) with their provenance, then their anchors; the counts.
with points as (
  insert into public.prediction (
    person_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl, upper_mg_dl,
    coverage, disclaimer_version, model_version, training_run_id, data_from, data_to, code_version
  )
  select
    %(person_id)s, %(model_id)s, s.generated_at, s.generated_at + make_interval(mins => s.horizon_minutes),
    s.horizon_minutes, s.value_mg_dl, s.lower_mg_dl, s.upper_mg_dl, %(coverage)s, %(disclaimer_version)s,
    %(version)s, %(training_run_id)s, %(data_from)s, %(data_to)s, %(code_version)s
  from pg_temp.forecast_point_stage s
  on conflict (model_id, generated_at, horizon_minutes) do nothing
  returning id, generated_at
), anchors as (
  insert into public.prediction_source (prediction_id, person_id, observation_id, observation_effective_at, role)
  select p.id, %(person_id)s, s.observation_id, s.observation_effective_at, s.role::public.prediction_source_role
  from points p
  join pg_temp.forecast_source_stage s on s.generated_at = p.generated_at
  returning 1
)
select (select count(*) from points), (select count(*) from anchors);

-- name: forecast_due_persons
-- One page of the persons due a forecast, in id order (an unscoped worker).
select person_id from private.forecast_due_persons(%(after)s, %(limit)s);

-- name: read_latest_curve
-- The person's latest forecast curve: the newest origin, and of it the newest model's points, by horizon.
select p.id, p.person_id, p.generated_at, p.target_at, p.horizon_minutes, p.value_mg_dl, p.lower_mg_dl,
  p.upper_mg_dl, p.coverage, p.disclaimer_version, p.model_id, p.model_version, p.training_run_id, p.data_from,
  p.data_to, p.code_version
from public.prediction p
join (
  select l.generated_at, l.model_id
  from public.prediction l
  where l.person_id = %(person_id)s
  order by l.generated_at desc, l.created_at desc
  limit 1
) as latest on latest.generated_at = p.generated_at and latest.model_id = p.model_id
where p.person_id = %(person_id)s
order by p.horizon_minutes;

-- name: read_points_between
-- Forecast points whose origin is in [start, end), in (origin, horizon, id) order after a keyset cursor.
select p.id, p.person_id, p.generated_at, p.target_at, p.horizon_minutes, p.value_mg_dl, p.lower_mg_dl,
  p.upper_mg_dl, p.coverage, p.disclaimer_version, p.model_id, p.model_version, p.training_run_id, p.data_from,
  p.data_to, p.code_version
from public.prediction p
where p.person_id = %(person_id)s
  and p.generated_at >= %(start)s and p.generated_at < %(end)s
  and (
    %(after_at)s::timestamptz is null
    or (p.generated_at, p.horizon_minutes, p.id) > (%(after_at)s, %(after_horizon)s::smallint, %(after_id)s::uuid)
  )
order by p.generated_at, p.horizon_minutes, p.id
limit %(limit)s;

-- name: read_point
-- One forecast point.
select p.id, p.person_id, p.generated_at, p.target_at, p.horizon_minutes, p.value_mg_dl, p.lower_mg_dl,
  p.upper_mg_dl, p.coverage, p.disclaimer_version, p.model_id, p.model_version, p.training_run_id, p.data_from,
  p.data_to, p.code_version
from public.prediction p
where p.id = %(prediction_id)s;

-- name: read_point_sources
-- The observations a forecast point was computed from: the input window first, then covariates, by time.
select s.observation_id, s.observation_effective_at as effective_at, s.role::text as role, o.code
from public.prediction_source s
join public.observation o on o.id = s.observation_id and o.effective_at = s.observation_effective_at
where s.prediction_id = %(prediction_id)s
order by s.role, s.observation_effective_at, s.observation_id;

-- name: read_runs
-- The person's latest training runs, newest first.
select id, trigger::text as trigger, status::text as status, attempt, requested_at, started_at, finished_at, error
from public.training_run
where person_id = %(person_id)s
order by requested_at desc, created_at desc
limit %(limit)s;

-- name: read_glucose_history
-- The person's valid CGM readings in (since, until], oldest first.
select effective_at, value
from public.observation
where person_id = %(person_id)s and code = any(%(codes)s) and status <> all(%(withdrawn)s)
  and effective_at > %(since)s and effective_at <= %(until)s
order by effective_at;

-- name: api_request_retrain
-- The signed-in owner asks for a retrain of one of their persons (rate limited: SQLSTATE PT429).
select public.request_retrain(%(person_id)s, %(reason)s);

-- name: api_upsert_feedback
-- The signed-in user's thumbs up/down on a forecast point they can see; sending again replaces it.
insert into public.forecast_feedback (prediction_id, person_id, rating, comment)
select p.id, p.person_id, %(rating)s::public.feedback_rating, %(comment)s
from public.prediction p
where p.id = %(prediction_id)s
on conflict (prediction_id, user_id) do update
  set rating = excluded.rating, comment = excluded.comment
returning id, prediction_id, rating::text as rating, comment, created_at, updated_at;

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

-- name: read_person
-- A person's display name and time zone.
select display_name, time_zone from public.person where id = %(person_id)s;

-- name: assert_consent
-- Worker: fails the transaction when the scoped person's consent to the scope's purpose is gone.
select private.assert_consent();

-- name: has_consent
-- Whether a person's consent to a purpose is in force (workers, unscoped).
select private.has_consent(%(person_id)s, %(purpose)s::public.processing_purpose);

-- name: consent_list
-- A person's consent records, in the order of the purposes.
select c.purpose::text as purpose, c.granted_at, c.withdrawn_at, c.delete_models
from public.consent c where c.person_id = %(person_id)s order by c.purpose;

-- name: consent_grant
-- Gives consent to purposes, or gives it again after a withdrawal (a consent in force keeps its date).
insert into public.consent (person_id, purpose)
select %(person_id)s, purpose::public.processing_purpose from unnest(%(purposes)s::text[]) as purpose
on conflict (person_id, purpose) do update
  set granted_at = now(), withdrawn_at = null, delete_models = false
  where public.consent.withdrawn_at is not null;

-- name: consent_withdraw
-- Withdraws consent to purposes that is in force; delete_models asks for the models' removal too.
update public.consent set withdrawn_at = now(), delete_models = %(delete_models)s
where person_id = %(person_id)s and purpose = any (%(purposes)s::public.processing_purpose[]) and withdrawn_at is null;

-- name: audit_log
-- Which worker touched a person when and why, newest first.
select occurred_at, worker, application, purpose::text, reason
from public.audit_log where person_id = %(person_id)s order by occurred_at desc, id desc limit %(limit)s;

-- name: person_delete
-- Erases a person: their rows go by foreign key, their files with the privacy job.
delete from public.person where id = %(person_id)s;

-- name: person_tables
-- The tables of the public schema with a person_id column (a person's rows).
select c.relname
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attname = 'person_id' and not a.attisdropped
where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition
order by c.relname;

-- name: pending_privacy_work
-- Pending erasures and model removals, oldest first.
select person_id, work from private.pending_privacy_work(%(limit)s);

-- name: worker_storage_prefix
-- The storage folder of the person the worker transaction is scoped to.
select private.worker_storage_prefix();

-- name: finish_erasure
-- Drops a deleted person's erasure marker once their files are gone.
select private.finish_erasure();

-- name: finish_model_removal
-- Deletes the scoped person's model versions once their files are gone; returns how many.
select private.finish_model_removal();

-- name: patterns_person
-- The scoped person's time zone, their local date today, and their newest day pattern's day (null: none).
select p.time_zone, (now() at time zone p.time_zone)::date,
  (select max(d.day) from public.day_pattern d where d.person_id = p.id)
from public.person p
where p.id = %(person_id)s;

-- name: patterns_readings
-- The scoped person's valid CGM readings in [since, until) (since null: from the first), oldest first.
select effective_at, value
from public.observation
where person_id = %(person_id)s and code = any(%(codes)s) and status <> all(%(withdrawn)s)
  and (%(since)s::timestamptz is null or effective_at >= %(since)s) and effective_at < %(until)s
order by effective_at;

-- name: patterns_upsert
-- Writes the scoped person's day patterns; a day already stored is replaced.
insert into public.day_pattern (person_id, day, source, embedding, readings, filled_slots, computed_at)
select %(person_id)s, d.day, %(source)s, d.embedding::extensions.vector, d.readings, d.filled_slots, now()
from unnest(%(days)s::date[], %(embeddings)s::text[], %(readings)s::smallint[], %(filled_slots)s::smallint[])
  as d(day, embedding, readings, filled_slots)
on conflict (person_id, day) do update
  set source = excluded.source, embedding = excluded.embedding, readings = excluded.readings,
    filled_slots = excluded.filled_slots, computed_at = excluded.computed_at;

-- name: patterns_remove
-- Removes the scoped person's day patterns from a day on (null: all days) that are not among those kept.
delete from public.day_pattern
where person_id = %(person_id)s and (%(from)s::date is null or day >= %(from)s) and day <> all(%(keep)s::date[]);

-- name: patterns_due_persons
-- One page of the persons due day patterns, in id order (an unscoped worker).
select person_id from private.pattern_due_persons(%(after)s, %(limit)s);

-- name: patterns_similar
-- The person's days nearest to one of their days by profile (exact: a join, so no index orders it), nearest
-- first; the distance as the root mean square difference in mg/dL.
select d.day, (d.embedding operator(extensions.<->) q.embedding) / %(scale)s as rms_difference_mg_dl, d.readings,
  d.filled_slots
from public.day_pattern q
join public.day_pattern d on d.person_id = q.person_id and d.day <> q.day
where q.person_id = %(person_id)s and q.day = %(day)s
order by d.embedding operator(extensions.<->) q.embedding, d.day
limit %(limit)s;

-- name: patterns_day
-- Whether the current role sees the person's pattern of a day.
select 1 from public.day_pattern where person_id = %(person_id)s and day = %(day)s;

-- name: experiment_assign
-- Worker scoped to a person: their variant in the running experiment, assigning them first (none: no row).
select experiment_key, variant, families, assigned_at from private.assign_experiment(%(person_id)s);

-- name: experiment_log_exposure
-- Owner: log that a forecast curve of their person was served; the number of exposures logged.
select private.log_forecast_exposure(%(person_id)s, %(model_id)s, %(generated_at)s);

-- name: experiment_insert
-- Operator: a draft experiment with its decision rule's parameters.
insert into public.experiment (key, description, horizon_minutes, alpha, mixture_sd, min_points_per_person,
  min_persons_per_variant, max_persons_per_variant)
values (%(key)s, %(description)s, %(horizon_minutes)s, %(alpha)s, %(mixture_sd)s, %(min_points_per_person)s,
  %(min_persons_per_variant)s, %(max_persons_per_variant)s)
returning id;

-- name: experiment_insert_variant
-- Operator: one variant of a draft experiment.
insert into public.experiment_variant (experiment_id, name, families, weight)
values (%(experiment_id)s, %(name)s, %(families)s, %(weight)s);

-- name: experiment_select
-- The experiment with the given key, or every experiment (key null), newest first, each with its variants.
select e.id, e.key, e.description, e.status::text, e.horizon_minutes, e.alpha, e.mixture_sd, e.min_points_per_person,
  e.min_persons_per_variant, e.max_persons_per_variant, e.created_at, e.started_at, e.stopped_at, e.decided_at,
  e.decision,
  (select jsonb_agg(jsonb_build_object('name', v.name, 'families', v.families, 'weight', v.weight)
                    order by v.name collate "C")
   from public.experiment_variant v where v.experiment_id = e.id)
from public.experiment e
where %(key)s::text is null or e.key = %(key)s
order by e.created_at desc, e.key;

-- name: experiment_start
-- Operator: a draft experiment starts assigning persons and logging exposures.
update public.experiment set status = 'running', started_at = now() where id = %(id)s and status = 'draft';

-- name: experiment_stop
-- Operator: a running experiment stops without a decision.
update public.experiment set status = 'stopped', stopped_at = now() where id = %(id)s and status = 'running';

-- name: experiment_decide
-- Operator: a started experiment ends with the analysis that decided it.
update public.experiment
set status = 'decided', stopped_at = coalesce(stopped_at, now()), decided_at = now(), decision = %(decision)s
where id = %(id)s and status in ('running', 'stopped');

-- name: experiment_counts
-- Per variant of an experiment: persons assigned, persons exposed, persons with a contaminated exposure.
select a.variant, count(*) as assigned,
  count(*) filter (where exists (
    select from public.experiment_exposure x where x.experiment_id = a.experiment_id and x.person_id = a.person_id
  )) as exposed,
  count(*) filter (where exists (
    select from public.experiment_exposure x
    where x.experiment_id = a.experiment_id and x.person_id = a.person_id and x.contaminated
  )) as contaminated
from public.experiment_assignment a
where a.experiment_id = %(experiment_id)s
group by a.variant
order by a.variant collate "C";

-- name: experiment_person_outcomes
-- Each exposed person of an experiment: their first contamination, and the errors at the horizon of the
-- forecasts of the clean models they were served, up to the experiment's stop.
with exposed as (
  select x.person_id, x.variant,
    (array_agg(x.contamination order by x.served_at) filter (where x.contaminated))[1] as contamination,
    array_agg(distinct x.model_id) filter (where not x.contaminated) as models
  from public.experiment_exposure x
  where x.experiment_id = %(experiment_id)s
  group by x.person_id, x.variant
)
select e.person_id, e.variant, e.contamination, count(o.prediction_id)::integer as points,
  avg(abs(o.error_mg_dl)) as mae, avg(o.error_mg_dl::double precision ^ 2) as mse,
  avg(o.inside_band::integer)::double precision as coverage
from exposed e
left join public.forecast_outcome o
  on o.person_id = e.person_id and o.model_id = any (e.models) and o.horizon_minutes = %(horizon)s
  and (%(until)s::timestamptz is null or o.target_at <= %(until)s)
group by e.person_id, e.variant, e.contamination
order by e.variant, e.person_id;

-- name: monitoring_settings
-- The monitoring thresholds (private.monitoring_config).
select match_seconds, outcome_lookback, live_window, min_outcomes, judged_horizon_minutes, max_rmse_ratio,
  max_coverage_shortfall, drift_window, drift_psi_limit, check_interval
from private.monitoring_settings();

-- name: record_outcomes
-- Matches the scoped person's forecasts whose target time has passed to the nearest valid CGM reading within
-- the match window, for forecasts not matched yet and not older than the look-back; returns how many.
insert into public.forecast_outcome (
  prediction_id, person_id, model_id, target_at, horizon_minutes, predicted_mg_dl, observed_mg_dl,
  observation_id, observed_at, error_mg_dl, inside_band
)
select p.id, p.person_id, p.model_id, p.target_at, p.horizon_minutes, p.value_mg_dl, r.value,
  r.id, r.effective_at, p.value_mg_dl - r.value, r.value between p.lower_mg_dl and p.upper_mg_dl
from public.prediction p
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
  and not exists (select from public.forecast_outcome f where f.prediction_id = p.id)
on conflict (prediction_id) do nothing;

-- name: last_health_check
-- When the scoped person's model was last checked.
select max(checked_at) from public.model_health_check where person_id = %(person_id)s and model_id = %(model_id)s;

-- name: live_metrics
-- Outcomes of one model at one horizon in a window: count, RMSE, band coverage and its nominal level.
select count(*), sqrt(avg(f.error_mg_dl * f.error_mg_dl)), avg(f.inside_band::integer), avg(p.coverage)
from public.forecast_outcome f
join public.prediction p on p.id = f.prediction_id and p.person_id = f.person_id
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
