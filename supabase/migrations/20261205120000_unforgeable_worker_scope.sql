/**
 * -----------------------------------------------------------------------------
 * An unforgeable worker scope
 * -----------------------------------------------------------------------------
 * Until now the scope lived in two transaction-local settings,
 * glucokit.worker_person_id and glucokit.worker_purpose, written by
 * private.begin_person_scope(). Any session can write any custom setting with
 * set_config(), so a worker's own login could name a person itself and read
 * that person's data with no consent check and no audit row.
 *
 * The scope is now a row of private.worker_scope, a table only the
 * security-definer private.begin_person_scope() writes (after its consent check
 * and audit row) and only the security-definer readers below read. A row
 * counts for the backend that wrote it and for the transaction that wrote it
 * only: its pid and its top-level transaction id (xid8, never reused) must be
 * this backend's and this transaction's. It therefore ends with its
 * transaction (also when a savepoint that opened it rolls back) and cannot
 * reach the next transaction of a pooled connection, exactly as the settings
 * did. Policies keep calling private.worker_person_id() as an initplan, so
 * every worker policy and helper that already used it follows unchanged.
 *
 * The Storage fallback of private.worker_storage_prefix() (migration
 * 20261122120800) trusted the glucokit_person_id claim of request.jwt.claims
 * in any transaction switched to glucokit_worker; those claims are a setting
 * too. It now trusts them only when the session's login is
 * supabase_storage_admin, the Storage API's own login, which sets them from a
 * token it has verified and which no worker login can become.
 *
 * The other settings the migrations read are not scopes: application_name is
 * the worker's own label in the audit log (next to session_user, which it
 * cannot change), and role is the role the transaction actually runs as.
 */

/**
 * The scope of each backend's current transaction, keyed on the backend so
 * that writing it touches no other backend's row and never waits on another
 * transaction. A row's person lives no longer than its transaction: a rollback
 * undoes the row, and a deferred trigger empties it (person and purpose null)
 * at commit, so the table holds no person's id once the work is done (an
 * erased person leaves nothing here) and at most one row per backend. The
 * emptied row stays until the backend's next scope replaces it: it records that
 * this transaction's scope has ended, so a worker that ends it early (set
 * constraints all immediate) cannot open a scope for another person in the same
 * transaction. The transaction id in the row is what makes it count.
 */
create table private.worker_scope (
  backend_pid integer primary key,
  xact_id xid8 not null,
  person_id uuid,
  purpose public.processing_purpose,
  check ((person_id is null) = (purpose is null))
);
comment on table private.worker_scope is
  'The person and purpose of the worker scope of a backend''s current transaction (written by private.begin_person_scope only; emptied at commit).';

alter table private.worker_scope enable row level security;
revoke all on private.worker_scope from public, anon, authenticated, service_role;

/**
 * Empties a scope row at the commit of its transaction. It runs at commit
 * before any deferred trigger queued after the scope opened, so such a trigger
 * would find no scope. Security definer: at commit the current role is the
 * worker's, which may not touch the table.
 */
create or replace function private.end_worker_scope() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
begin
  update private.worker_scope s set person_id = null, purpose = null
  where s.backend_pid = new.backend_pid and s.xact_id = new.xact_id;
  return null;
end
$$;
comment on function private.end_worker_scope() is 'Trigger: empty a worker scope row when its transaction commits.';
revoke all on function private.end_worker_scope() from public;

create constraint trigger worker_scope_ends_with_its_transaction
  after insert on private.worker_scope
  deferrable initially deferred
  for each row execute function private.end_worker_scope();

/**
 * The record of the current transaction's scope, or no row. Without an
 * assigned transaction id (nothing written yet) there is no scope, since
 * begin_person_scope writes.
 */
create or replace function private.current_worker_scope() returns private.worker_scope
  language sql stable security definer
  set search_path = ''
as $$
  select s.*
  from private.worker_scope s
  where s.backend_pid = pg_backend_pid() and s.xact_id = pg_current_xact_id_if_assigned()
$$;
comment on function private.current_worker_scope() is 'The worker scope row of the current transaction (null when unscoped).';
revoke all on function private.current_worker_scope() from public;

create or replace function private.worker_person_id() returns uuid
  language sql stable security definer
  set search_path = ''
as $$
  select (private.current_worker_scope()).person_id
$$;

create or replace function private.worker_purpose() returns public.processing_purpose
  language sql stable security definer
  set search_path = ''
as $$
  select (private.current_worker_scope()).purpose
$$;

/**
 * As in migration 20261122121200, but the scope is recorded in
 * private.worker_scope instead of settings anyone can write.
 */
create or replace function private.begin_person_scope(
  p_person_id uuid,
  p_purpose public.processing_purpose,
  p_reason text
) returns uuid
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  current_scope uuid := private.worker_person_id();
  person_owner uuid;
  person_exists boolean;
begin
  if p_person_id is null then
    raise exception 'a worker scope needs a person id' using errcode = 'null_value_not_allowed';
  end if;
  if p_purpose is null or coalesce(btrim(p_reason), '') = '' then
    raise exception 'a worker scope needs a purpose and a reason' using errcode = 'null_value_not_allowed';
  end if;
  if current_scope is not null and current_scope <> p_person_id then
    raise exception 'this transaction is already scoped to person %', current_scope
      using errcode = 'insufficient_privilege';
  end if;
  select owner_id into person_owner from public.person where id = p_person_id;
  person_exists := found;
  if not person_exists then
    if p_purpose = 'deletion' then
      select e.owner_id into person_owner from private.erasure e where e.person_id = p_person_id;
    end if;
    if person_owner is null then
      raise exception 'person % does not exist', p_person_id using errcode = 'no_data_found';
    end if;
  elsif p_purpose = 'deletion' then
    -- Deletion needs no consent, so it is no way round consent either: only
    -- for a person whose models are to be removed.
    if not exists (select from private.model_removal r where r.person_id = p_person_id) then
      raise exception 'nothing of person % is to be deleted', p_person_id using errcode = 'insufficient_privilege';
    end if;
  elsif not private.has_consent(p_person_id, p_purpose) then
    raise exception 'person % has not consented to %', p_person_id, p_purpose
      using errcode = 'insufficient_privilege',
        hint = 'The owner grants consent per purpose in public.consent.';
  end if;
  if person_exists and private.worker_purpose() is distinct from p_purpose then
    insert into public.audit_log (person_id, worker, application, purpose, reason)
    values (
      p_person_id, session_user, coalesce(nullif(current_setting('application_name', true), ''), 'unnamed'),
      p_purpose, left(btrim(p_reason), 500)
    );
  end if;
  -- A scope of this transaction that has ended (emptied early) is not opened again.
  if exists (
    select from private.worker_scope s
    where s.backend_pid = pg_backend_pid() and s.xact_id = pg_current_xact_id() and s.person_id is null
  ) then
    raise exception 'this transaction''s worker scope has ended: open a new transaction'
      using errcode = 'insufficient_privilege';
  end if;
  -- An earlier transaction's row is replaced by a new insert, so that its end-of-transaction trigger is queued;
  -- a second scope of the same person in this transaction keeps the row (and the trigger) it has.
  delete from private.worker_scope s where s.backend_pid = pg_backend_pid() and s.xact_id <> pg_current_xact_id();
  insert into private.worker_scope (backend_pid, xact_id, person_id, purpose)
  values (pg_backend_pid(), pg_current_xact_id(), p_person_id, p_purpose)
  on conflict (backend_pid) do update set purpose = excluded.purpose;
  return person_owner;
end
$$;

/**
 * As in migration 20261122121200, but the Storage fallback holds only in a
 * session of Storage's own login: a worker login that sets request.jwt.claims
 * (or the role) itself gets null, which matches nothing.
 */
create or replace function private.worker_storage_prefix() returns text
  language plpgsql stable security definer
  set search_path = ''
as $$
declare
  v_person uuid := private.worker_person_id();
begin
  if v_person is null and session_user = 'supabase_storage_admin' and current_setting('role') = 'glucokit_worker' then
    begin
      v_person := (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'glucokit_person_id')::uuid;
    exception
      when invalid_text_representation then
        return null;
    end;
  end if;
  return coalesce(
    (select p.owner_id::text || '/' || p.id::text || '/' from public.person p where p.id = v_person),
    (select e.owner_id::text || '/' || e.person_id::text || '/' from private.erasure e where e.person_id = v_person)
  );
end
$$;
comment on function private.worker_storage_prefix() is
  'Worker: storage folder {owner_id}/{person_id}/ of the person in scope, or (no scope, Storage''s own login switched to glucokit_worker) of the person the verified Storage API token names.';
