/**
 * -----------------------------------------------------------------------------
 * Persons
 * -----------------------------------------------------------------------------
 * A person is someone whose glucose data is kept. The signed-in user who owns
 * a person (owner_id) may be that person or a caregiver: one user can own
 * several persons. Every other table reaches its owner through person.
 */

create table public.person (
  id uuid primary key default gen_random_uuid(),
  owner_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  display_name text check (char_length(display_name) between 1 and 200),
  glucose_unit text not null default 'mg/dL' check (glucose_unit in ('mg/dL', 'mmol/L')),
  time_zone text not null default 'UTC',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.person is 'A person whose data is kept, owned by one signed-in user (the person or a caregiver).';
comment on column public.person.owner_id is 'The auth user who owns this person; defaults to the caller.';
comment on column public.person.glucose_unit is 'Display preference only: values are always stored in mg/dL.';
comment on column public.person.time_zone is 'IANA time zone name, used for time-of-day features and daily rollups.';

-- Serves the owner policy and the foreign key to auth.users.
create index person_owner_id_idx on public.person (owner_id);

/**
 * Rejects unknown time zones with PostgreSQL's own message
 * (a check constraint cannot consult the time zone database).
 */
create or replace function private.check_person_time_zone() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  perform now() at time zone new.time_zone;
  return new;
end
$$;
comment on function private.check_person_time_zone() is 'Trigger: a person''s time zone must be one PostgreSQL knows.';
revoke all on function private.check_person_time_zone() from public;

create trigger person_check_time_zone
  before insert or update of time_zone on public.person
  for each row execute function private.check_person_time_zone();

create trigger person_touch_updated_at
  before update on public.person
  for each row execute function private.touch_updated_at();

/**
 * The persons the signed-in user owns. Policies of child tables use
 * `person_id in (select private.owned_person_ids())`: evaluated once per
 * statement, not once per row, and without a join in the policy.
 */
create or replace function private.owned_person_ids() returns setof uuid
  language sql stable security definer
  set search_path = ''
as $$
  select id from public.person where owner_id = (select auth.uid())
$$;
comment on function private.owned_person_ids() is 'Ids of the persons owned by the signed-in user (for child-table policies).';
revoke all on function private.owned_person_ids() from public;
grant execute on function private.owned_person_ids() to authenticated;

/**
 * Scopes the current transaction of a worker to one person and returns that
 * person's owner. The scope is transaction-local (it cannot leak into the next
 * transaction on a pooled connection) and cannot be moved to another person
 * within the same transaction.
 */
create or replace function private.begin_person_scope(p_person_id uuid) returns uuid
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  current_scope uuid := private.worker_person_id();
  person_owner uuid;
begin
  if p_person_id is null then
    raise exception 'a worker scope needs a person id' using errcode = 'null_value_not_allowed';
  end if;
  if current_scope is not null and current_scope <> p_person_id then
    raise exception 'this transaction is already scoped to person %', current_scope
      using errcode = 'insufficient_privilege';
  end if;
  select owner_id into person_owner from public.person where id = p_person_id;
  if not found then
    raise exception 'person % does not exist', p_person_id using errcode = 'no_data_found';
  end if;
  perform set_config('glucokit.worker_person_id', p_person_id::text, true);
  return person_owner;
end
$$;
comment on function private.begin_person_scope(uuid) is 'Worker: scope this transaction to one person (transaction-local); returns the owner id.';
revoke all on function private.begin_person_scope(uuid) from public;
grant execute on function private.begin_person_scope(uuid) to glucokit_worker;

/**
 * The storage folder of the person a worker is scoped to:
 * '{owner_id}/{person_id}/', or null without a scope.
 */
create or replace function private.worker_storage_prefix() returns text
  language sql stable security definer
  set search_path = ''
as $$
  select p.owner_id::text || '/' || p.id::text || '/'
  from public.person p
  where p.id = private.worker_person_id()
$$;
comment on function private.worker_storage_prefix() is 'Worker: storage folder {owner_id}/{person_id}/ of the person in scope.';
revoke all on function private.worker_storage_prefix() from public;
grant execute on function private.worker_storage_prefix() to glucokit_worker;

-- -----------------------------------------------------------------------------
-- Grants and row-level security
-- -----------------------------------------------------------------------------
-- Users manage their own persons; the owner and the id never change through
-- the API (no column privilege), so a person cannot be handed to someone else.
alter table public.person enable row level security;

revoke all on public.person from anon, authenticated, service_role;
grant select, delete on public.person to authenticated;
grant insert (id, owner_id, display_name, glucose_unit, time_zone) on public.person to authenticated;
grant update (display_name, glucose_unit, time_zone) on public.person to authenticated;
grant select on public.person to glucokit_worker;
grant all on public.person to service_role;

create policy "Persons are visible to their owner" on public.person
  for select to authenticated
  using (owner_id = (select auth.uid()));

create policy "Users can add persons they own" on public.person
  for insert to authenticated
  with check (owner_id = (select auth.uid()));

create policy "Owners can update their persons" on public.person
  for update to authenticated
  using (owner_id = (select auth.uid()))
  with check (owner_id = (select auth.uid()));

create policy "Owners can delete their persons" on public.person
  for delete to authenticated
  using (owner_id = (select auth.uid()));

create policy "Workers see the person in their scope" on public.person
  for select to glucokit_worker
  using (id = (select private.worker_person_id()));
