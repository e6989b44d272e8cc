/**
 * -----------------------------------------------------------------------------
 * The actors a Supabase project really has, and Realtime
 * -----------------------------------------------------------------------------
 * Anonymous sign-ins. Supabase Auth can sign a visitor in without an identity:
 * role `authenticated`, claim is_anonymous: true. Such an account is lost with
 * its device and cannot be asked for consent in any meaningful way, so it
 * stores and reads no health data here: every table of the public schema gets
 * a RESTRICTIVE policy that fails for it. Restrictive policies are ANDed with
 * every permissive one, so a permissive policy added later cannot open a table
 * to anonymous users (`glucokit policies check` fails on a table without one).
 *
 * A second factor. Supabase puts the authenticator assurance level in the
 * claim aal: aal1 (password, magic link, OAuth) or aal2 (with a verified MFA
 * factor). Consent changes (giving and withdrawing) and erasing a person need
 * aal2: restrictive policies on public.consent (insert, update) and
 * public.person (delete), so that the Data API, the FastAPI service and the
 * CLI all obey. docs/privacy.md says why exports are not among them.
 *
 * Other buckets. storage.objects is shared by every bucket of the project; a
 * policy written for another bucket (or for every bucket) must not open
 * `models`. Restrictive policies fence the bucket for users and anon: they
 * read their own folder at most, never write, and anonymous users read nothing.
 *
 * Realtime. A client learns of a new forecast by Realtime Broadcast from the
 * database: one message per forecast origin (person, model, generated_at) on
 * the private topic forecast:<person_id>, carrying ids only, never glucose
 * values; a policy on realtime.messages lets the owner of the person
 * (and nobody else) join that topic. Broadcast, not postgres_changes on a
 * published table: postgres_changes checks every change against every
 * subscriber's policies, while a broadcast is authorised once per join
 * (bench/realtime.py measures what the trigger costs a forecast write).
 */

-- -----------------------------------------------------------------------------
-- Anonymous users: no health data
-- -----------------------------------------------------------------------------
do $$
declare
  target record;
begin
  for target in
    select c.relname
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition
    order by c.relname
  loop
    execute format(
      'create policy "Anonymous users reach no health data" on public.%I as restrictive for all to authenticated '
      'using (((select auth.jwt()) ->> ''is_anonymous'')::boolean is not true) '
      'with check (((select auth.jwt()) ->> ''is_anonymous'')::boolean is not true)',
      target.relname
    );
  end loop;
end
$$;

-- -----------------------------------------------------------------------------
-- A second factor for consent changes and erasure
-- -----------------------------------------------------------------------------
create policy "Consent is given with a second factor" on public.consent
  as restrictive for insert to authenticated
  with check (((select auth.jwt()) ->> 'aal') = 'aal2');

create policy "Consent is changed with a second factor" on public.consent
  as restrictive for update to authenticated
  using (true)
  with check (((select auth.jwt()) ->> 'aal') = 'aal2');

create policy "A person is erased with a second factor" on public.person
  as restrictive for delete to authenticated
  using (((select auth.jwt()) ->> 'aal') = 'aal2');

-- -----------------------------------------------------------------------------
-- The models bucket, fenced against other buckets' policies
-- -----------------------------------------------------------------------------
create policy "models: users read their own folder at most" on storage.objects
  as restrictive for select to anon, authenticated
  using (
    not (bucket_id = 'models')
    or (
      (storage.foldername(name))[1] = (select auth.uid())::text
      and ((select auth.jwt()) ->> 'is_anonymous')::boolean is not true
    )
  );

create policy "models: users store no files" on storage.objects
  as restrictive for insert to anon, authenticated
  with check (not (bucket_id = 'models'));

create policy "models: users replace no files" on storage.objects
  as restrictive for update to anon, authenticated
  using (not (bucket_id = 'models'));

create policy "models: users remove no files" on storage.objects
  as restrictive for delete to anon, authenticated
  using (not (bucket_id = 'models'));

-- -----------------------------------------------------------------------------
-- Realtime: one broadcast per new forecast
-- -----------------------------------------------------------------------------
create policy "Owners hear the forecasts of their persons" on realtime.messages
  for select to authenticated
  using (
    extension = 'broadcast'
    and topic in (select 'forecast:' || owned from private.owned_person_ids() as owned)
    and ((select auth.jwt()) ->> 'is_anonymous')::boolean is not true
  );

/**
 * After each statement that writes forecasts: one message per new forecast
 * origin (a row of public.forecast, migration 20261206100000) on the topic
 * forecast:<person_id>, never one per point. Security definer: the worker
 * that writes forecasts may not write realtime.messages itself.
 * realtime.send() turns a failure into a warning, so a broadcast never fails
 * a forecast write; the message is delivered once the transaction commits,
 * when the forecast's points are there to read.
 */
create or replace function private.announce_forecasts() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
begin
  perform realtime.send(
    jsonb_build_object(
      'forecast_id', added.id,
      'person_id', added.person_id,
      'model_id', added.model_id,
      'generated_at', added.generated_at
    ),
    'forecast',
    'forecast:' || added.person_id,
    true
  )
  from added;
  return null;
end
$$;
comment on function private.announce_forecasts() is
  'Broadcasts one message per new forecast origin on the topic forecast:<person_id> (ids only).';
revoke all on function private.announce_forecasts() from public, anon, authenticated, service_role;

create trigger announce_forecasts
  after insert on public.forecast
  referencing new table as added
  for each statement execute function private.announce_forecasts();

/**
 * Erasure reaches the broadcasts too: a deleted person's messages (topic and
 * payload name the person) go with the person.
 */
create or replace function private.forget_forecast_broadcasts() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
begin
  delete from realtime.messages m where m.topic in (select 'forecast:' || gone.id from gone);
  return null;
end
$$;
comment on function private.forget_forecast_broadcasts() is 'Deletes the Realtime broadcasts of erased persons.';
revoke all on function private.forget_forecast_broadcasts() from public, anon, authenticated, service_role;

create trigger forget_forecast_broadcasts
  after delete on public.person
  referencing old table as gone
  for each statement execute function private.forget_forecast_broadcasts();
