-- The data subject's rights: the audit log, erasure and model removal (glucokit.privacy.rights).
-- Named queries: see lib/glucokit/db/queries.py.

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

-- name: worker_storage_prefix
-- The storage folder of the person the worker transaction is scoped to.
select private.worker_storage_prefix();

-- name: finish_erasure
-- Drops a deleted person's erasure marker once their files are gone.
select private.finish_erasure();

-- name: finish_model_removal
-- Deletes the scoped person's model versions once their files are gone; returns how many.
select private.finish_model_removal();
