/**
 * -----------------------------------------------------------------------------
 * Model files through the Supabase Storage API, still without service_role
 * -----------------------------------------------------------------------------
 * A worker that keeps model files in Supabase Storage calls the Storage API
 * with a short-lived token it signs itself: role glucokit_worker, the claim
 * glucokit_person_id naming the person its own transaction is scoped to, no
 * `sub` (lib/glucokit/modelops/model_store.py, SupabaseModelStore). Storage verifies the
 * token and runs each request's queries in a transaction of its own, after
 * set_config('role', <token role>, true) and
 * set_config('request.jwt.claims', <token claims>, true)
 * (supabase/storage, src/internal/database/postgres/scope.ts). There is no
 * person scope in that transaction, so the bucket's worker policies
 * (20261122120500) would match nothing.
 *
 * private.worker_storage_prefix(), which those policies compare object names
 * with, therefore falls back to the person named by the token when the
 * transaction has no scope and its role is glucokit_worker. Only storage
 * falls back: private.worker_person_id(), and with it every other worker
 * policy, still needs private.begin_person_scope(), so a token opens the
 * person's model folder and nothing else.
 *
 * The worker's own database login can already scope a transaction to any
 * person, so a token naming one person gives it nothing it did not have
 * (docs/worker-role.md, "Model files in Supabase Storage").
 */

/**
 * The storage folder '{owner_id}/{person_id}/' of the person a worker may
 * touch files of: the person the transaction is scoped to; without a scope, and
 * only in a transaction switched to glucokit_worker (a Storage API request),
 * the person named by the glucokit_person_id claim of request.jwt.claims.
 * Null (matches nothing) without either, or when the claim is not a uuid.
 *
 * current_setting('role') is the role the transaction switched to
 * (`set local role`, or set_config('role', ...) as Storage does); unlike
 * current_user it is not replaced by this function's owner while a
 * security-definer function runs.
 */
create or replace function private.worker_storage_prefix() returns text
  language plpgsql stable security definer
  set search_path = ''
as $$
declare
  v_person uuid := private.worker_person_id();
begin
  if v_person is null and current_setting('role') = 'glucokit_worker' then
    begin
      v_person := (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'glucokit_person_id')::uuid;
    exception
      when invalid_text_representation then
        return null;
    end;
  end if;
  return (select p.owner_id::text || '/' || p.id::text || '/' from public.person p where p.id = v_person);
end
$$;
comment on function private.worker_storage_prefix() is
  'Worker: storage folder {owner_id}/{person_id}/ of the person in scope, or (no scope, role glucokit_worker) of the person the Storage API token names.';
revoke all on function private.worker_storage_prefix() from public;
grant execute on function private.worker_storage_prefix() to glucokit_worker;

/**
 * Storage connects as supabase_storage_admin and switches to the token's role,
 * so that login must be a member of glucokit_worker. Supabase makes it a member
 * of its own API roles for the same reason (supabase/postgres pull requests 590
 * and 752); the project's postgres role may grant a role to it (supautils lets
 * its privileged role `grant <role> to <reserved role>`,
 * supautils test/sql/ge16_privileged_role.sql). The grant names
 * supabase_storage_admin alone, not authenticator, so that PostgREST still
 * refuses a glucokit_worker token.
 *
 * Nothing else is granted: Storage reads buckets as its own superuser
 * (findBucketById through asSuperUser() in src/storage/object.ts) and the
 * object queries it runs as the token's role need only what
 * 20261122120500 grants on storage.objects.
 *
 * A plain PostgreSQL has no Storage API and no such role.
 */
do $$
begin
  if exists (select from pg_roles where rolname = 'supabase_storage_admin') then
    grant glucokit_worker to supabase_storage_admin;
  end if;
end
$$;
