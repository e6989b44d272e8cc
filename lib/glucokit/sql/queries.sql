-- Named queries used by glucokit's Python code (see lib/glucokit/queries.py).

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
union all select 'storage: models bucket', count(*) from storage.objects where bucket_id = 'models';

-- name: demo_upsert_user
-- A demo auth user with a fixed id.
insert into auth.users (id, aud, role, email)
values (%(id)s, 'authenticated', 'authenticated', %(email)s)
on conflict (id) do nothing;

-- name: demo_reset_person
-- Removes a demo person and, by cascade, everything recorded about them.
delete from public.person where id = %(id)s;

-- name: demo_insert_person
-- A demo person owned by a demo user.
insert into public.person (id, owner_id, display_name, time_zone)
values (%(id)s, %(owner_id)s, %(display_name)s, 'Europe/Berlin');

-- name: demo_copy_observations
-- Bulk load of demo CGM readings.
copy public.observation (person_id, code_system, code, value, unit, effective_at, source_system, source_id)
from stdin;

-- name: demo_person_readings
-- The scoped person's CGM readings, oldest first.
select id, effective_at, value
from public.observation
where person_id = %(person_id)s and code = '99504-3'
order by effective_at;

-- name: demo_insert_training_run
-- A finished demo training run.
insert into public.training_run (person_id, trigger, status, reason, started_at, finished_at)
values (%(person_id)s, 'initial', 'succeeded', %(reason)s, now(), now())
returning id;

-- name: demo_insert_model
-- The demo's persistence baseline, active and flagged as a fallback.
insert into public.ml_model (
  person_id, version, algorithm, is_fallback, training_run_id, data_from, data_to,
  features, metrics, stage, stage_reason
)
values (
  %(person_id)s, %(version)s, 'persistence', true, %(training_run_id)s, %(data_from)s, %(data_to)s,
  array['glucose'], %(metrics)s, 'active', 'demo baseline'
)
returning id;

-- name: demo_insert_prediction
-- One point of the demo forecast curve.
insert into public.prediction (
  person_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl, lower_mg_dl, upper_mg_dl,
  coverage, disclaimer_version, model_version, training_run_id, data_from, data_to, code_version
)
values (
  %(person_id)s, %(model_id)s, %(generated_at)s, %(generated_at)s + make_interval(mins => %(horizon)s::integer),
  %(horizon)s, %(value)s, %(lower)s, %(upper)s, %(coverage)s, %(disclaimer_version)s, %(version)s,
  %(training_run_id)s, %(data_from)s, %(data_to)s, %(code_version)s
)
returning id;

-- name: demo_insert_prediction_source
-- Anchors a demo prediction to the reading it was made from.
insert into public.prediction_source (prediction_id, person_id, observation_id, observation_effective_at)
values (%(prediction_id)s, %(person_id)s, %(observation_id)s, %(effective_at)s);

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
