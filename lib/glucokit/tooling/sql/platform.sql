-- =============================================================================
-- Supabase platform layer, for a plain PostgreSQL only
-- =============================================================================
-- A Supabase project already has everything below (and more). glucokit's
-- migrations are written for Supabase, so on any other PostgreSQL server
-- `glucokit db migrate` first installs this small stand-in with the same names
-- and the same behaviour the migrations rely on: the API roles, auth.users and
-- the auth.uid()/role()/jwt() claim readers, the storage schema, Realtime's
-- messages table with realtime.send(), and the `extensions` schema. It is never applied to a Supabase project
-- (lib/glucokit/tooling/platform.py detects one and skips this file).
--
-- Everything here is idempotent: re-running it changes nothing.

-- -----------------------------------------------------------------------------
-- API roles
-- -----------------------------------------------------------------------------
-- Roles are cluster-wide, so they may already exist from another database on
-- the same server.
do $$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
end
$$;

grant anon, authenticated, service_role to authenticator;

-- Supabase grants the API roles everything in `public` by default and relies
-- on row-level security and explicit revokes; reproduce that here so that the
-- migrations' own revokes are exercised exactly as on a Supabase project.
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;

create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;

-- -----------------------------------------------------------------------------
-- auth
-- -----------------------------------------------------------------------------
create schema if not exists auth;
comment on schema auth is 'glucokit platform layer: stand-in for Supabase Auth on a plain PostgreSQL';
grant usage on schema auth to anon, authenticated, service_role;

create table if not exists auth.users (
  id uuid primary key default gen_random_uuid(),
  aud varchar(255),
  role varchar(255),
  email varchar(255) unique,
  raw_app_meta_data jsonb not null default '{}'::jsonb,
  raw_user_meta_data jsonb not null default '{}'::jsonb,
  is_anonymous boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table auth.users is 'Stand-in for Supabase Auth users: the identities that own persons.';
grant select on auth.users to service_role;

-- The claim readers behave like Supabase's: PostgREST (and glucokit's API)
-- puts the verified JWT claims into the transaction-local setting
-- request.jwt.claims; the legacy per-claim setting is honoured first.
-- Like Supabase's own (supabase/auth, migrations/tenant), they are plain
-- stable SQL functions without a search_path setting, which the planner
-- inlines: a policy's `(select auth.uid())` is then one expression, not a
-- function call with a configuration change (every name is qualified here).
create or replace function auth.jwt() returns jsonb
  language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

create or replace function auth.uid() returns uuid
  language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
  )::uuid
$$;

create or replace function auth.role() returns text
  language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'
  )::text
$$;

grant execute on function auth.jwt(), auth.uid(), auth.role() to anon, authenticated, service_role;

-- -----------------------------------------------------------------------------
-- storage
-- -----------------------------------------------------------------------------
create schema if not exists storage;
comment on schema storage is 'glucokit platform layer: stand-in for Supabase Storage metadata on a plain PostgreSQL';
grant usage on schema storage to anon, authenticated, service_role;

create table if not exists storage.buckets (
  id text primary key,
  name text not null unique,
  owner uuid,
  owner_id text,
  public boolean not null default false,
  file_size_limit bigint,
  allowed_mime_types text[],
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table storage.buckets is 'Stand-in for Supabase Storage buckets.';

create table if not exists storage.objects (
  id uuid primary key default gen_random_uuid(),
  bucket_id text not null references storage.buckets (id),
  name text not null,
  owner uuid,
  owner_id text,
  metadata jsonb,
  version text,
  path_tokens text[] generated always as (string_to_array(name, '/')) stored,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  last_accessed_at timestamptz not null default now(),
  unique (bucket_id, name)
);
comment on table storage.objects is 'Stand-in for Supabase Storage objects: one row per stored file, guarded by row-level security.';

alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;

-- As on Supabase: the API roles hold the table privileges and row-level
-- security alone decides which rows they reach.
grant all on storage.buckets, storage.objects to anon, authenticated, service_role;

-- The folders of an object name, without the file name:
-- 'a/b/c.txt' -> {a,b}.
create or replace function storage.foldername(name text) returns text[]
  language sql immutable
  set search_path = ''
as $$
  select (string_to_array(name, '/'))[1:cardinality(string_to_array(name, '/')) - 1]
$$;

grant execute on function storage.foldername(text) to anon, authenticated, service_role;

-- -----------------------------------------------------------------------------
-- realtime
-- -----------------------------------------------------------------------------
-- Realtime Broadcast from the database: realtime.send() writes a message into
-- realtime.messages, and Supabase Realtime delivers it to the subscribers of
-- its topic whom the table's row-level security lets read it (a private
-- channel's join runs a SELECT on realtime.messages as the user, with
-- realtime.topic() naming the channel). The stand-in keeps the table, the
-- topic reader and send() with Supabase's names and signatures; on Supabase
-- the table is partitioned by day and read by the Realtime server.
create schema if not exists realtime;
comment on schema realtime is 'glucokit platform layer: stand-in for Supabase Realtime on a plain PostgreSQL';
grant usage on schema realtime to anon, authenticated, service_role;

create table if not exists realtime.messages (
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  updated_at timestamp without time zone not null default now(),
  inserted_at timestamp without time zone not null default now(),
  id uuid not null default gen_random_uuid(),
  primary key (id, inserted_at)
);
comment on table realtime.messages is 'Stand-in for Supabase Realtime messages: broadcasts from the database, guarded by row-level security.';
alter table realtime.messages enable row level security;
grant all on realtime.messages to anon, authenticated, service_role;

-- The topic of the channel being joined, as Realtime sets it for the join's check.
create or replace function realtime.topic() returns text
  language sql stable
  set search_path = ''
as $$
  select nullif(current_setting('realtime.topic', true), '')::text
$$;

-- Broadcast a message to a topic; like Supabase's, a failure is a warning, never the caller's error.
create or replace function realtime.send(payload jsonb, event text, topic text, private boolean default true)
  returns void
  language plpgsql
  set search_path = ''
as $$
begin
  begin
    perform set_config('realtime.topic', topic, true);
    insert into realtime.messages (payload, event, topic, private, extension)
    values (payload, event, topic, private, 'broadcast');
  exception
    when others then
      raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
  end;
end
$$;

revoke all on function realtime.send(jsonb, text, text, boolean) from public;
grant execute on function realtime.topic() to anon, authenticated, service_role;
