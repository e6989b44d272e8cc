/**
 * -----------------------------------------------------------------------------
 * Consent, the workers' audit log, model removal and erasure (GDPR)
 * -----------------------------------------------------------------------------
 * Purpose-based consent: the owner of a person grants or withdraws, per
 * purpose, the processing the workers do with that person's data (training a
 * model, writing forecasts, computing day patterns). Consent is enforced where
 * every worker has to pass: a worker transaction reaches a person's rows only
 * after private.begin_person_scope(person, purpose, reason), which refuses a
 * purpose the person has not consented to (or has withdrawn) and writes one row
 * of the audit log, readable by the owner: which worker (login and
 * application_name) touched which person, when, for what purpose and why.
 * Deleting data (purpose 'deletion') needs no consent.
 *
 * Withdrawing consent for training stops work: the person's waiting retrain
 * requests are dropped with their queue messages, no new one is queued, and a
 * training that is running fails its final consent check instead of
 * registering a model. Withdrawn with delete_models, the person's models (and
 * the forecasts they made) are removed by the privacy job: first their files,
 * then the rows.
 *
 * Erasure: deleting a person (the owner's DELETE, or the deletion of the
 * owner's account) deletes every row of the person through foreign keys and
 * the queue's triggers, and leaves a private erasure marker holding the
 * person's storage folder. The privacy job removes the person's files under
 * that marker's scope, then the marker: after that nothing with the person's
 * id is left (tests/test_privacy.py searches every table for it).
 */

create type public.processing_purpose as enum ('training', 'forecasting', 'pattern_search', 'deletion');
comment on type public.processing_purpose is
  'Why a worker touches a person''s data. training, forecasting and pattern_search need the person''s consent; deletion does not.';

-- -----------------------------------------------------------------------------
-- Consent
-- -----------------------------------------------------------------------------
create table public.consent (
  person_id uuid not null references public.person (id) on delete cascade,
  purpose public.processing_purpose not null,
  granted_at timestamptz not null default now(),
  withdrawn_at timestamptz,
  -- Asked together with withdrawing consent for training: remove the models too.
  delete_models boolean not null default false,
  updated_at timestamptz not null default now(),
  primary key (person_id, purpose),
  constraint consent_purpose_needs_consent check (purpose <> 'deletion'),
  constraint consent_withdrawn_after_granted check (withdrawn_at is null or withdrawn_at >= granted_at),
  constraint consent_delete_models_on_withdrawal check (
    not delete_models or (withdrawn_at is not null and purpose = 'training')
  )
);
comment on table public.consent is 'A person''s consent to one purpose of processing: given at granted_at, withdrawn at withdrawn_at (null while in force).';
comment on column public.consent.delete_models is 'With a withdrawal of training consent: remove the person''s models and their forecasts as well.';

create trigger consent_touch_updated_at
  before update on public.consent
  for each row execute function private.touch_updated_at();

/**
 * Whether a person's consent to a purpose is in force. Deletion needs none.
 */
create or replace function private.has_consent(p_person_id uuid, p_purpose public.processing_purpose) returns boolean
  language sql stable security definer
  set search_path = ''
as $$
  select p_purpose = 'deletion' or exists (
    select from public.consent c
    where c.person_id = p_person_id and c.purpose = p_purpose and c.withdrawn_at is null
  )
$$;
comment on function private.has_consent(uuid, public.processing_purpose) is 'True when the person''s consent to the purpose is in force (always for deletion).';
revoke all on function private.has_consent(uuid, public.processing_purpose) from public;
grant execute on function private.has_consent(uuid, public.processing_purpose) to glucokit_worker, service_role;

-- -----------------------------------------------------------------------------
-- The audit log
-- -----------------------------------------------------------------------------
create table public.audit_log (
  id bigint generated always as identity primary key,
  person_id uuid not null references public.person (id) on delete cascade,
  occurred_at timestamptz not null default now(),
  -- The database login the worker connected with, and the application_name it set.
  worker text not null,
  application text not null,
  purpose public.processing_purpose not null,
  reason text not null check (char_length(reason) between 1 and 500)
);
comment on table public.audit_log is 'Which worker touched which person, when, for what purpose and why: one row per worker transaction scoped to the person.';
comment on column public.audit_log.worker is 'The database login of the worker (session_user).';
comment on column public.audit_log.application is 'The application_name the worker connection set (job, task).';

create index audit_log_person_occurred_idx on public.audit_log (person_id, occurred_at desc);

-- -----------------------------------------------------------------------------
-- Model removal and erasure markers (private: the Data API never sees them)
-- -----------------------------------------------------------------------------
create table private.model_removal (
  person_id uuid primary key references public.person (id) on delete cascade,
  requested_at timestamptz not null default now()
);
comment on table private.model_removal is 'Persons whose models are to be removed (consent for training withdrawn with delete_models).';

create table private.erasure (
  person_id uuid primary key,
  owner_id uuid not null,
  requested_at timestamptz not null default now()
);
comment on table private.erasure is 'Deleted persons whose storage files are still to be removed; the row goes once they are.';

/**
 * The worker scope, now with a purpose and a reason. Scoping to a person:
 * - needs the person's consent to the purpose;
 * - for deletion, needs no consent but pending deletion work: the person's
 *   models are to be removed, or the person was deleted and their erasure is
 *   pending;
 * - writes one audit row per (person, purpose) and transaction (not for a
 *   deleted person: nothing of theirs may stay).
 * The scope is transaction-local and cannot move to another person within the
 * transaction; the purpose may change (e.g. a retrain that then forecasts),
 * each change passing the consent check and the audit log.
 */
drop function private.begin_person_scope(uuid);

create or replace function private.worker_purpose() returns public.processing_purpose
  language sql stable
  set search_path = ''
as $$
  select nullif(current_setting('glucokit.worker_purpose', true), '')::public.processing_purpose
$$;
comment on function private.worker_purpose() is 'The purpose the current worker transaction is scoped for (null when unscoped).';
revoke all on function private.worker_purpose() from public;
grant execute on function private.worker_purpose() to glucokit_worker;

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
  perform set_config('glucokit.worker_person_id', p_person_id::text, true);
  perform set_config('glucokit.worker_purpose', p_purpose::text, true);
  return person_owner;
end
$$;
comment on function private.begin_person_scope(uuid, public.processing_purpose, text) is
  'Worker: scope this transaction to one person for a purpose (consent checked, audit logged); returns the owner id.';
revoke all on function private.begin_person_scope(uuid, public.processing_purpose, text) from public;
grant execute on function private.begin_person_scope(uuid, public.processing_purpose, text) to glucokit_worker;

/**
 * Worker: fails the transaction when the consent its scope was opened with has
 * been withdrawn since (a long training checks this before it registers).
 */
create or replace function private.assert_consent() returns void
  language plpgsql stable security definer
  set search_path = ''
as $$
declare
  v_person uuid := private.worker_person_id();
  v_purpose public.processing_purpose := private.worker_purpose();
begin
  if v_person is null then
    raise exception 'no person in scope' using errcode = 'insufficient_privilege';
  end if;
  if not private.has_consent(v_person, v_purpose) then
    raise exception 'person % withdrew consent to % while the work ran', v_person, v_purpose
      using errcode = 'insufficient_privilege';
  end if;
end
$$;
comment on function private.assert_consent() is 'Worker: raise when the scoped person''s consent to the scope''s purpose is no longer in force.';
revoke all on function private.assert_consent() from public;
grant execute on function private.assert_consent() to glucokit_worker;

/**
 * The storage folder of the person in scope also exists while a deleted
 * person's erasure is pending (the files outlive the rows until the privacy
 * job removes them). Otherwise as in migration 20261122120800.
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
  return coalesce(
    (select p.owner_id::text || '/' || p.id::text || '/' from public.person p where p.id = v_person),
    (select e.owner_id::text || '/' || e.person_id::text || '/' from private.erasure e where e.person_id = v_person)
  );
end
$$;

-- -----------------------------------------------------------------------------
-- Withdrawal stops work
-- -----------------------------------------------------------------------------
/**
 * After a withdrawal of training consent: drop the person's waiting retrain
 * requests (their queue messages go with them) and, with delete_models, mark
 * the person's models for removal.
 */
create or replace function private.consent_withdrawn() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
begin
  if new.purpose = 'training' and new.withdrawn_at is not null then
    perform private.lock_retrain_person(new.person_id);
    delete from public.retrain_request r where r.person_id = new.person_id and r.status = 'queued';
    if new.delete_models then
      insert into private.model_removal (person_id) values (new.person_id) on conflict (person_id) do nothing;
    end if;
  end if;
  return null;
end
$$;
comment on function private.consent_withdrawn() is 'Trigger: drop waiting retrains of a person who withdrew training consent, and mark their models for removal when asked.';
revoke all on function private.consent_withdrawn() from public;

create trigger consent_withdrawal_stops_work
  after insert or update of withdrawn_at, delete_models on public.consent
  for each row execute function private.consent_withdrawn();

/**
 * Queues a retrain only for a person who consents to training: an owner's
 * request without it is refused, the automatic triggers (new data, schedule,
 * performance) queue nothing and return null. Otherwise as in migration
 * 20261122120700.
 */
create or replace function private.enqueue_retrain(
  p_person_id uuid,
  p_trigger public.training_trigger,
  p_reason text default null
) returns uuid
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  scope uuid := private.worker_person_id();
  request_id uuid;
  message_id bigint;
begin
  if p_person_id is null or p_trigger is null then
    raise exception 'a retrain needs a person and a trigger' using errcode = 'null_value_not_allowed';
  end if;
  if scope is not null and scope <> p_person_id then
    raise exception 'this transaction is scoped to person %, not %', scope, p_person_id
      using errcode = 'insufficient_privilege';
  end if;
  if not private.has_consent(p_person_id, 'training') then
    if p_trigger = 'user_request' then
      raise exception 'person % has not consented to training', p_person_id
        using errcode = 'insufficient_privilege',
          hint = 'Grant consent to training in public.consent first.';
    end if;
    return null;
  end if;
  perform private.lock_retrain_person(p_person_id);

  update public.retrain_request r
  set duplicates = r.duplicates + 1
  where r.person_id = p_person_id and r.status = 'queued'
  returning r.id into request_id;
  if found then
    return request_id;
  end if;

  if not exists (select from public.person p where p.id = p_person_id) then
    raise exception 'person % does not exist', p_person_id using errcode = 'no_data_found';
  end if;
  request_id := gen_random_uuid();
  select sent into message_id
  from pgmq.send(
    'glucokit_retrain',
    jsonb_build_object('request_id', request_id, 'person_id', p_person_id, 'trigger', p_trigger)
  ) as sent;
  insert into public.retrain_request (id, person_id, trigger, reason, msg_id)
  values (request_id, p_person_id, p_trigger, p_reason, message_id);
  return request_id;
end
$$;

/**
 * Persons due a forecast are only those who consent to forecasting; otherwise
 * as in migration 20261122120900.
 */
create or replace function private.forecast_due_persons(p_after uuid default null, p_limit integer default 1000)
returns table (person_id uuid)
  language plpgsql stable security definer
  set search_path = ''
as $$
declare
  cgm_codes text[] := (select c.cgm_codes from private.retrain_config c);
begin
  if private.worker_person_id() is not null then
    raise exception 'persons due a forecast are listed unscoped' using errcode = 'insufficient_privilege';
  end if;
  if p_limit is null or p_limit < 1 then
    raise exception 'the limit must be positive' using errcode = 'invalid_parameter_value';
  end if;
  return query
    select m.person_id
    from public.ml_model m
    cross join lateral (
      select max(o.effective_at) as at
      from public.observation o
      where o.person_id = m.person_id
        and o.code_system = 'http://loinc.org'
        and o.code = any (cgm_codes)
        and o.status not in ('cancelled', 'entered-in-error')
    ) as latest
    cross join lateral (
      select max(p.generated_at) as at from public.prediction p where p.model_id = m.id
    ) as forecast
    where m.stage = 'active'
      and (p_after is null or m.person_id > p_after)
      and latest.at >= m.data_to
      and (forecast.at is null or latest.at > forecast.at)
      and private.has_consent(m.person_id, 'forecasting')
    order by m.person_id
    limit p_limit;
end
$$;

-- -----------------------------------------------------------------------------
-- Model removal (purpose 'deletion', in the person's scope)
-- -----------------------------------------------------------------------------
/**
 * The deletion scope both finishing steps need: the person in scope, once no
 * model file of theirs remains (files go first, then the rows naming them).
 */
create or replace function private.deletion_scope_without_files() returns uuid
  language plpgsql stable security definer
  set search_path = ''
as $$
declare
  v_person uuid := private.worker_person_id();
begin
  if v_person is null or private.worker_purpose() is distinct from 'deletion' then
    raise exception 'this step runs in a deletion scope' using errcode = 'insufficient_privilege';
  end if;
  if exists (
    select from storage.objects o
    where o.bucket_id = 'models' and starts_with(o.name, private.worker_storage_prefix())
  ) then
    raise exception 'files of person % remain: remove them first', v_person
      using errcode = 'object_not_in_prerequisite_state';
  end if;
  return v_person;
end
$$;
comment on function private.deletion_scope_without_files() is 'Worker: the person of the deletion scope, once none of their model files remain.';
revoke all on function private.deletion_scope_without_files() from public;
/**
 * Privacy job, unscoped: persons whose models are to be removed and deleted
 * persons whose files are to be erased, oldest first.
 */
create or replace function private.pending_privacy_work(p_limit integer default 1000)
returns table (person_id uuid, work text)
  language plpgsql stable security definer
  set search_path = ''
as $$
begin
  if private.worker_person_id() is not null then
    raise exception 'pending privacy work is listed unscoped' using errcode = 'insufficient_privilege';
  end if;
  return query
    select w.person_id, w.work
    from (
      select e.person_id, 'erasure'::text as work, e.requested_at from private.erasure e
      union all
      select r.person_id, 'model_removal'::text, r.requested_at from private.model_removal r
    ) as w
    order by w.requested_at, w.person_id
    limit p_limit;
end
$$;
comment on function private.pending_privacy_work(integer) is 'Privacy job: pending erasures and model removals, oldest first (ids only, unscoped).';
revoke all on function private.pending_privacy_work(integer) from public;
grant execute on function private.pending_privacy_work(integer) to glucokit_worker, service_role;

/**
 * Worker in a deletion scope, once the model files are gone: deletes the
 * person's models (their forecasts, outcomes and feedback follow by foreign
 * key) and the removal marker. Returns how many models went. Refuses while
 * model files of the person remain.
 */
create or replace function private.finish_model_removal() returns integer
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_person uuid := private.deletion_scope_without_files();
  removed integer;
begin
  delete from public.ml_model m where m.person_id = v_person;
  get diagnostics removed = row_count;
  delete from private.model_removal r where r.person_id = v_person;
  return removed;
end
$$;
comment on function private.finish_model_removal() is 'Worker (deletion scope): delete the person''s models once their files are gone; returns the count.';
revoke all on function private.finish_model_removal() from public;
grant execute on function private.finish_model_removal() to glucokit_worker;

-- -----------------------------------------------------------------------------
-- Erasure
-- -----------------------------------------------------------------------------
/**
 * After persons are deleted: one erasure marker each, holding what locating
 * their files needs (the storage folder is {owner_id}/{person_id}/).
 */
create or replace function private.persons_deleted() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
begin
  insert into private.erasure (person_id, owner_id)
  select d.id, d.owner_id from deleted_persons d
  on conflict (person_id) do nothing;
  return null;
end
$$;
comment on function private.persons_deleted() is 'Trigger: leave an erasure marker for each deleted person until their storage files are removed.';
revoke all on function private.persons_deleted() from public;

create trigger person_erasure_marker
  after delete on public.person
  referencing old table as deleted_persons
  for each statement execute function private.persons_deleted();

/**
 * Worker in a deletion scope of a deleted person, once the files are gone:
 * drops the erasure marker, the last row holding the person's id.
 */
create or replace function private.finish_erasure() returns void
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_person uuid := private.deletion_scope_without_files();
begin
  if exists (select from public.person p where p.id = v_person) then
    raise exception 'person % still exists: delete the person first', v_person
      using errcode = 'object_not_in_prerequisite_state';
  end if;
  delete from private.erasure e where e.person_id = v_person;
end
$$;
comment on function private.finish_erasure() is 'Worker (deletion scope): drop a deleted person''s erasure marker once their files are gone.';
revoke all on function private.finish_erasure() from public;
grant execute on function private.finish_erasure() to glucokit_worker;

-- -----------------------------------------------------------------------------
-- Grants and row-level security
-- -----------------------------------------------------------------------------
alter table public.consent enable row level security;
alter table public.audit_log enable row level security;
alter table private.model_removal enable row level security;
alter table private.erasure enable row level security;

-- The owner grants (insert, or re-grant by updating granted_at and withdrawn_at)
-- and withdraws; the record stays (it goes with the person).
revoke all on public.consent from anon, authenticated, service_role;
grant select on public.consent to authenticated;
grant insert (person_id, purpose, granted_at, withdrawn_at, delete_models) on public.consent to authenticated;
grant update (granted_at, withdrawn_at, delete_models) on public.consent to authenticated;
grant select on public.consent to glucokit_worker;
grant all on public.consent to service_role;

create policy "Owners see the consent of their persons" on public.consent
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));

create policy "Owners give consent for their persons" on public.consent
  for insert to authenticated
  with check (person_id in (select private.owned_person_ids()));

create policy "Owners change the consent of their persons" on public.consent
  for update to authenticated
  using (person_id in (select private.owned_person_ids()))
  with check (person_id in (select private.owned_person_ids()));

create policy "Workers read the consent of the person in their scope" on public.consent
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));

-- The log is written only by private.begin_person_scope; owners read it.
revoke all on public.audit_log from anon, authenticated, service_role;
revoke all on sequence public.audit_log_id_seq from anon, authenticated;
grant select on public.audit_log to authenticated;
grant all on public.audit_log to service_role;

create policy "Owners read the audit log of their persons" on public.audit_log
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));
