-- The demo's persons and its summary (glucokit.cli.demo).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: table_row_counts
-- Rows per kit table (and model files), as the current role sees them.
select 'person' as "table", count(*) from public.person
union all select 'observation', count(*) from public.observation
union all select 'training_run', count(*) from public.training_run
union all select 'ml_model', count(*) from public.ml_model
union all select 'forecast', count(*) from public.forecast
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
