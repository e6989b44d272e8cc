-- Migrating: what the database already has (glucokit.tooling.migrate, glucokit.tooling.platform).
-- Named queries: see lib/glucokit/db/queries.py.

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

-- name: pgmq_present
-- True when PGMQ is installed (as the extension or by its SQL-only script).
select exists (select from pg_extension where extname = 'pgmq') or to_regprocedure('pgmq.create(text)') is not null;

-- name: pgmq_create_extension
-- PGMQ on a Supabase project: the extension behind Supabase Queues.
create extension if not exists pgmq;
