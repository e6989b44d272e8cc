/**
 * -----------------------------------------------------------------------------
 * Private schema and the worker role
 * -----------------------------------------------------------------------------
 * `private` holds what the Data API must never expose: the security-definer
 * helpers that policies call, trigger functions and maintenance functions. Only the roles that need a helper get `execute` on it.
 *
 * `glucokit_worker` is the role the training and prediction workers run as.
 * It cannot log in and does not bypass row-level security: a worker connects
 * with its own login role (a member of glucokit_worker, see docs/worker-role.md),
 * runs `set local role glucokit_worker`, and then scopes the transaction to one
 * person with `select private.begin_person_scope(<person id>)`. Its policies
 * only ever match rows of that one person; without a scope it sees nothing.
 */

create schema if not exists private;
comment on schema private is 'Policy helpers, trigger and maintenance functions that the Data API must never expose.';
revoke all on schema private from public;

-- Roles are cluster-wide: another database on the same server may have
-- created it already.
do $$
begin
  if not exists (select from pg_roles where rolname = 'glucokit_worker') then
    create role glucokit_worker nologin noinherit;
  end if;
end
$$;
comment on role glucokit_worker is 'glucokit training and prediction workers: one person per transaction, under row-level security.';

grant usage on schema public, private to glucokit_worker;
grant usage on schema private to authenticated, service_role;

/**
 * The person a worker transaction is scoped to, or null when it has none.
 * Policies for glucokit_worker compare against this.
 */
create or replace function private.worker_person_id() returns uuid
  language sql stable
  set search_path = ''
as $$
  select nullif(current_setting('glucokit.worker_person_id', true), '')::uuid
$$;
comment on function private.worker_person_id() is 'The person the current worker transaction is scoped to (null when unscoped).';
revoke all on function private.worker_person_id() from public;
grant execute on function private.worker_person_id() to glucokit_worker;

/**
 * Keeps updated_at honest on every table that has one.
 */
create or replace function private.touch_updated_at() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;
comment on function private.touch_updated_at() is 'Trigger: sets updated_at to the time of the write.';
revoke all on function private.touch_updated_at() from public;

/**
 * A semantic version without prefix or build metadata: 1.4.0 (semver.org 2.0.0, core only).
 * Model versions and storage folders use it.
 */
create or replace function private.is_semver(version text) returns boolean
  language sql immutable strict parallel safe
  set search_path = ''
as $$
  select version ~ '^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$'
$$;
comment on function private.is_semver(text) is 'True for a MAJOR.MINOR.PATCH version string.';
revoke all on function private.is_semver(text) from public;
-- Check constraints call it with the privileges of whoever writes the row.
grant execute on function private.is_semver(text) to glucokit_worker, service_role;
