/**
 * -----------------------------------------------------------------------------
 * The retrain queue (PGMQ, a.k.a. Supabase Queues)
 * -----------------------------------------------------------------------------
 * A person's model is retrained when enough new CGM data has arrived, when it
 * has none yet, when it is getting old, when its forecasts get worse, or when
 * its owner asks. Each reason becomes a retrain request (public.retrain_request,
 * readable by the owner) and one message in the PGMQ queue `glucokit_retrain`,
 * which the training workers (glucokit_worker) read.
 *
 * Guarantees, enforced here and not left to the workers:
 * - at most one queued request per person: enqueueing again while one waits
 *   only counts a duplicate on it (no second message);
 * - at most one running request per person: a worker claims a request
 *   atomically, with a lease; a second worker gets `busy`;
 * - a worker that dies loses its claim when the lease expires: the lease and
 *   the message's visibility timeout end together, so the message comes back
 *   and the next worker takes the request over (up to max_attempts claims);
 * - a message that belongs to no live request is archived, never run.
 *
 * `glucokit db migrate` installs PGMQ before the migrations run (the pgmq
 * extension on a Supabase project, PGMQ's SQL-only install elsewhere), so this
 * file assumes the `pgmq` schema exists. The Data API never exposes `pgmq`
 * (supabase/config.toml exposes `public` only); anon and authenticated get no
 * privilege on the queue, and workers reach it only through the private
 * functions below. See docs/retrain-queue.md.
 */

-- -----------------------------------------------------------------------------
-- The queue
-- -----------------------------------------------------------------------------
-- pgmq.create is idempotent, but check first so that a re-run does not even
-- take pgmq's queue lock.
do $$
begin
  if not exists (select from pgmq.list_queues() where queue_name = 'glucokit_retrain') then
    perform pgmq.create('glucokit_retrain');
  end if;
end
$$;

-- The queue's tables belong to the migration role, and the private functions
-- below reach them as that role. The API roles get no grants, and row-level
-- security without policies is a second lock (as Supabase recommends for
-- queues) should a grant ever be given by hand.
alter table pgmq.q_glucokit_retrain enable row level security;
alter table pgmq.a_glucokit_retrain enable row level security;
revoke all on pgmq.q_glucokit_retrain, pgmq.a_glucokit_retrain from public, anon, authenticated;

-- -----------------------------------------------------------------------------
-- Settings
-- -----------------------------------------------------------------------------
/**
 * The thresholds and timings of the queue, in one place. One row; change it
 * with an UPDATE (no migration needed).
 */
create table private.retrain_config (
  singleton boolean primary key default true check (singleton),
  -- LOINC codes of CGM readings: what counts as new data.
  cgm_codes text[] not null default array['99504-3', '105272-9'],
  -- New CGM readings since the last training that trigger a retrain (288 = one day at 5 minutes).
  new_data_readings integer not null default 288 check (new_data_readings > 0),
  -- CGM readings a person needs before the first training (576 = two days).
  initial_readings integer not null default 576 check (initial_readings > 0),
  -- How often an owner may ask for a retrain of one person.
  user_request_interval interval not null default interval '1 hour' check (user_request_interval >= interval '0'),
  -- A claim's lease when the worker names none; also the message's visibility timeout.
  lease_seconds integer not null default 1800 check (lease_seconds > 0),
  -- Claims of one request before it is given up (workers that die or hang).
  max_attempts integer not null default 3 check (max_attempts > 0)
);
comment on table private.retrain_config is 'Retrain queue settings (one row): thresholds, rate limit, lease, attempts.';
insert into private.retrain_config default values on conflict do nothing;

-- -----------------------------------------------------------------------------
-- Retrain requests
-- -----------------------------------------------------------------------------
create type public.retrain_status as enum ('queued', 'running', 'done', 'failed');
comment on type public.retrain_status is 'Where a retrain request stands: waiting in the queue, claimed by a worker, or finished.';

create table public.retrain_request (
  id uuid primary key default gen_random_uuid(),
  person_id uuid not null references public.person (id) on delete cascade,
  trigger public.training_trigger not null,
  reason text check (char_length(reason) <= 2000),
  status public.retrain_status not null default 'queued',
  -- The PGMQ message that carries the request (queue glucokit_retrain).
  msg_id bigint not null unique,
  duplicates integer not null default 0 check (duplicates >= 0),
  attempts integer not null default 0 check (attempts >= 0),
  requested_at timestamptz not null default now(),
  started_at timestamptz,
  lease_expires_at timestamptz,
  finished_at timestamptz,
  training_run_id uuid,
  error text check (char_length(error) <= 10000),
  updated_at timestamptz not null default now(),
  foreign key (training_run_id, person_id) references public.training_run (id, person_id),
  constraint retrain_request_started_after_request check (started_at >= requested_at),
  constraint retrain_request_finished_after_start check (finished_at >= started_at),
  constraint retrain_request_claimed_when_running check (
    status <> 'running' or (started_at is not null and lease_expires_at is not null and attempts > 0)
  ),
  constraint retrain_request_finished_when_done check ((status in ('done', 'failed')) = (finished_at is not null)),
  constraint retrain_request_error_when_failed check (status <> 'failed' or error is not null)
);
comment on table public.retrain_request is 'A request to retrain a person''s model and its way through the retrain queue; the owner reads it, only the queue functions write it.';
comment on column public.retrain_request.msg_id is 'Id of the PGMQ message in queue glucokit_retrain that carries this request.';
comment on column public.retrain_request.duplicates is 'Enqueue attempts merged into this request while it was queued.';
comment on column public.retrain_request.attempts is 'Claims so far: a worker that dies leaves its claim to the next one after the lease.';
comment on column public.retrain_request.lease_expires_at is 'While running: when the claim lapses unless the worker extends it.';

-- The owner's history, newest first (and the person foreign key, and the policies).
create index retrain_request_person_requested_idx on public.retrain_request (person_id, requested_at desc);
-- Serves the training-run foreign key.
create index retrain_request_training_run_idx on public.retrain_request (training_run_id, person_id);
-- At most one waiting and one running request per person, whatever the workers do.
create unique index retrain_request_one_queued_idx on public.retrain_request (person_id) where status = 'queued';
create unique index retrain_request_one_running_idx on public.retrain_request (person_id) where status = 'running';

create trigger retrain_request_touch_updated_at
  before update on public.retrain_request
  for each row execute function private.touch_updated_at();

/**
 * Messages carry the person's id: when requests go (their person was
 * deleted), their messages go too, from the queue and from its archive, so no
 * worker runs them and nothing of the person stays behind.
 */
create or replace function private.forget_retrain_messages() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
declare
  gone bigint[];
begin
  select array_agg(o.msg_id) into gone from forgotten_requests o;
  if gone is not null then
    perform pgmq.delete('glucokit_retrain', gone);
    delete from pgmq.a_glucokit_retrain a where a.msg_id = any (gone);
  end if;
  return null;
end
$$;
comment on function private.forget_retrain_messages() is 'Trigger: delete the queue and archive messages of deleted retrain requests.';
revoke all on function private.forget_retrain_messages() from public;

create trigger retrain_request_forget_messages
  after delete on public.retrain_request
  referencing old table as forgotten_requests
  for each statement execute function private.forget_retrain_messages();

/**
 * Per-person counters behind the new-data and initial triggers, and the
 * owner's rate limit. Counting starts when a person's first CGM reading
 * arrives after this migration; values are counts of arrived readings (an
 * ever-growing counter and marks on it), so no statement has to count rows of
 * public.observation.
 */
create table private.retrain_state (
  person_id uuid primary key references public.person (id) on delete cascade,
  cgm_readings bigint not null default 0,
  -- cgm_readings when the last completed retrain was claimed; null: never trained through the queue and no model.
  cgm_readings_at_training bigint,
  -- cgm_readings when the running retrain was claimed.
  cgm_readings_at_claim bigint,
  -- cgm_readings when the last initial/new-data retrain was enqueued.
  cgm_readings_at_enqueue bigint,
  trained_at timestamptz,
  user_requested_at timestamptz,
  updated_at timestamptz not null default now()
);
comment on table private.retrain_state is 'Per-person counters of arrived CGM readings and the last owner request, for the retrain triggers.';

-- -----------------------------------------------------------------------------
-- Enqueueing
-- -----------------------------------------------------------------------------
/**
 * Every function that changes a person's requests or counters takes this
 * transaction-level lock first, so they take turns per person and always
 * lock rows in the same order (no deadlocks between ingest, claims and
 * finishing workers). Several persons are locked in person_id order.
 */
create or replace function private.lock_retrain_person(p_person_id uuid) returns void
  language sql volatile
  set search_path = ''
as $$
  select pg_advisory_xact_lock(hashtext('glucokit_retrain'), hashtext(p_person_id::text))
$$;
comment on function private.lock_retrain_person(uuid) is 'Queue internals: serialize retrain bookkeeping per person (transaction-level advisory lock).';
revoke all on function private.lock_retrain_person(uuid) from public;

/**
 * Queues a retrain of one person, or counts a duplicate on the request that is
 * already waiting (no second message). Returns the request id. A worker
 * transaction scoped to a person may only enqueue that person (the
 * performance hook); unscoped workers and service_role may enqueue anyone.
 * The per-person advisory lock makes concurrent enqueues of one person take
 * turns; the unique index is the backstop.
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
comment on function private.enqueue_retrain(uuid, public.training_trigger, text) is 'Worker/admin: queue a retrain of a person (deduplicated: one queued request per person); returns the request id.';
revoke all on function private.enqueue_retrain(uuid, public.training_trigger, text) from public;
grant execute on function private.enqueue_retrain(uuid, public.training_trigger, text) to glucokit_worker, service_role;

/**
 * New data and initial training: after every INSERT statement on
 * public.observation, count the CGM readings it brought per person (from the
 * transition table: one aggregate per statement, not a trigger per row) and
 * queue a retrain when a person crosses a threshold:
 * - initial: no model and no completed retrain yet, and initial_readings
 *   readings counted;
 * - new_data: new_data_readings readings since the last completed retrain
 *   was claimed.
 * Either way, at least new_data_readings more readings must have arrived
 * since the last such enqueue, so a person whose training keeps failing is
 * not re-queued on every upload.
 */
create or replace function private.count_arrived_readings() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
declare
  config private.retrain_config;
  persons uuid[];
  readings bigint[];
  with_model boolean[];
  person uuid;
  due_persons uuid[];
  due_triggers public.training_trigger[];
  due_readings bigint[];
begin
  select * into config from private.retrain_config;
  select
    array_agg(a.person_id order by a.person_id),
    array_agg(a.readings order by a.person_id),
    array_agg(exists (select from public.ml_model m where m.person_id = a.person_id) order by a.person_id)
  into persons, readings, with_model
  from (
    select o.person_id, count(*) as readings
    from arrived_observations o
    where o.code_system = 'http://loinc.org'
      and o.code = any (config.cgm_codes)
      and o.status not in ('cancelled', 'entered-in-error')
    group by o.person_id
  ) as a;
  if persons is null then
    return null;
  end if;

  foreach person in array persons loop
    perform private.lock_retrain_person(person);
  end loop;

  with arrived as (
    select * from unnest(persons, readings, with_model) as a (person_id, readings, with_model)
  ),
  counted as (
    insert into private.retrain_state as s (person_id, cgm_readings)
    select a.person_id, a.readings from arrived a
    on conflict (person_id) do update
      set cgm_readings = s.cgm_readings + excluded.cgm_readings, updated_at = now()
    returning s.person_id, s.cgm_readings, s.cgm_readings_at_training, s.cgm_readings_at_enqueue
  ),
  judged as (
    select c.person_id, c.cgm_readings,
      -- Trained: a retrain completed through the queue, or a model from before it.
      (c.cgm_readings_at_training is not null or a.with_model) as trained,
      c.cgm_readings - coalesce(c.cgm_readings_at_training, 0) as since_training,
      c.cgm_readings_at_enqueue
    from counted c
    join arrived a on a.person_id = c.person_id
  )
  select
    array_agg(j.person_id order by j.person_id),
    array_agg(case when j.trained then 'new_data' else 'initial' end::public.training_trigger order by j.person_id),
    array_agg(j.since_training order by j.person_id)
  into due_persons, due_triggers, due_readings
  from judged j
  where (j.cgm_readings_at_enqueue is null or j.cgm_readings - j.cgm_readings_at_enqueue >= config.new_data_readings)
    and j.since_training >= case when j.trained then config.new_data_readings else config.initial_readings end;

  if due_persons is not null then
    for i in 1 .. cardinality(due_persons) loop
      perform private.enqueue_retrain(
        due_persons[i], due_triggers[i],
        format('%s CGM readings %s', due_readings[i],
          case when due_triggers[i] = 'initial' then 'and no model yet' else 'since the last training' end)
      );
    end loop;
    update private.retrain_state s set cgm_readings_at_enqueue = s.cgm_readings
    where s.person_id = any (due_persons);
  end if;
  return null;
end
$$;
comment on function private.count_arrived_readings() is 'Trigger: count arrived CGM readings per person and queue initial/new-data retrains at the thresholds.';
revoke all on function private.count_arrived_readings() from public;

create trigger observation_count_arrived_readings
  after insert on public.observation
  referencing new table as arrived_observations
  for each statement execute function private.count_arrived_readings();

/**
 * Scheduled retrains: queues persons whose active model was trained longer
 * than p_max_age ago, oldest first, at most p_limit per call, skipping
 * persons with a request waiting or running and persons that already had a
 * scheduled request within p_max_age (so a failing one is not retried on
 * every sweep). Called by pg_cron or by a worker on a schedule; unscoped.
 */
create or replace function private.enqueue_due_retrains(p_max_age interval, p_limit integer default 1000) returns integer
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  due uuid;
  enqueued integer := 0;
begin
  if private.worker_person_id() is not null then
    raise exception 'the scheduled sweep runs unscoped' using errcode = 'insufficient_privilege';
  end if;
  if p_max_age is null or p_max_age <= interval '0' or p_limit is null or p_limit < 1 then
    raise exception 'the sweep needs a positive maximum age and limit' using errcode = 'invalid_parameter_value';
  end if;
  -- The oldest models first; enqueued in person order, as every multi-person lock is taken.
  for due in
    select oldest.person_id
    from (
      select m.person_id
      from public.ml_model m
      where m.stage = 'active'
        and m.trained_at < now() - p_max_age
        and not exists (
          select from public.retrain_request r
          where r.person_id = m.person_id
            and (r.status in ('queued', 'running') or (r.trigger = 'scheduled' and r.requested_at > now() - p_max_age))
        )
      group by m.person_id
      order by min(m.trained_at), m.person_id
      limit p_limit
    ) as oldest
    order by oldest.person_id
  loop
    perform private.enqueue_retrain(due, 'scheduled', format('active model older than %s', p_max_age));
    enqueued := enqueued + 1;
  end loop;
  return enqueued;
end
$$;
comment on function private.enqueue_due_retrains(interval, integer) is 'Scheduler: queue retrains of persons whose active model is older than p_max_age; returns how many.';
revoke all on function private.enqueue_due_retrains(interval, integer) from public;
grant execute on function private.enqueue_due_retrains(interval, integer) to glucokit_worker, service_role;

/**
 * The owner asks for a retrain of one of their persons: at most once per
 * user_request_interval per person. Refusals carry SQLSTATE PT429, which
 * PostgREST answers with HTTP 429 Too Many Requests.
 */
create or replace function private.request_retrain(p_person_id uuid, p_reason text default null) returns uuid
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  config private.retrain_config;
  last_request timestamptz;
begin
  if p_person_id is null or p_person_id not in (select private.owned_person_ids()) then
    raise exception 'person % is not one of your persons', p_person_id using errcode = 'insufficient_privilege';
  end if;
  select * into config from private.retrain_config;
  perform private.lock_retrain_person(p_person_id);
  insert into private.retrain_state (person_id) values (p_person_id) on conflict (person_id) do nothing;
  select s.user_requested_at into last_request from private.retrain_state s where s.person_id = p_person_id for update;
  if last_request > now() - config.user_request_interval then
    raise exception 'a retrain of person % was already requested at %', p_person_id, last_request
      using errcode = 'PT429',
        detail = format('An owner may request one retrain per person every %s.', config.user_request_interval),
        hint = format('Try again after %s.', last_request + config.user_request_interval);
  end if;
  update private.retrain_state s set user_requested_at = now(), updated_at = now() where s.person_id = p_person_id;
  return private.enqueue_retrain(p_person_id, 'user_request', coalesce(p_reason, 'requested by the owner'));
end
$$;
comment on function private.request_retrain(uuid, text) is 'Owner: request a retrain of an owned person (rate limited); returns the request id.';
revoke all on function private.request_retrain(uuid, text) from public;
grant execute on function private.request_retrain(uuid, text) to authenticated;

/**
 * The same, for the Data API: POST /rest/v1/rpc/request_retrain
 * {"person_id": ...}. It runs with the caller's rights; the checks live in
 * the private function.
 */
create or replace function public.request_retrain(person_id uuid, reason text default null) returns uuid
  language sql volatile security invoker
  set search_path = ''
as $$
  select private.request_retrain(request_retrain.person_id, request_retrain.reason)
$$;
comment on function public.request_retrain(uuid, text) is 'Ask for a retrain of one of your persons (at most once per hour per person); returns the request id.';
revoke all on function public.request_retrain(uuid, text) from public, anon, authenticated, service_role;
grant execute on function public.request_retrain(uuid, text) to authenticated;

-- -----------------------------------------------------------------------------
-- Working the queue (glucokit_worker, unscoped transactions)
-- -----------------------------------------------------------------------------
/**
 * Reads up to p_qty messages and hides them for p_vt_seconds, with the
 * request each one carries (null for a message that has none).
 */
create or replace function private.read_retrains(p_vt_seconds integer, p_qty integer default 1)
returns table (
  msg_id bigint, read_ct integer, enqueued_at timestamptz, vt timestamptz, message jsonb,
  request_id uuid, person_id uuid, trigger public.training_trigger, status public.retrain_status
)
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  if p_vt_seconds is null or p_vt_seconds < 0 or p_qty is null or p_qty not between 1 and 1000 then
    raise exception 'read needs a visibility timeout >= 0 s and 1 to 1000 messages' using errcode = 'invalid_parameter_value';
  end if;
  return query
    select m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, r.id, r.person_id, r.trigger, r.status
    from pgmq.read('glucokit_retrain', p_vt_seconds, p_qty) as m
    left join public.retrain_request r on r.msg_id = m.msg_id
    order by m.msg_id;
end
$$;
comment on function private.read_retrains(integer, integer) is 'Worker: read retrain messages, hidden for p_vt_seconds.';
revoke all on function private.read_retrains(integer, integer) from public;
grant execute on function private.read_retrains(integer, integer) to glucokit_worker, service_role;

/**
 * Claims the request a message carries, atomically per person. Outcomes:
 * - claimed: the request is running under this claim until lease_expires_at;
 *   the message stays hidden exactly as long (lease = visibility timeout);
 *   `attempt` identifies the claim in extend/complete/fail;
 * - busy: another claim on the same person is live; the message is hidden
 *   until that lease ends (completing it makes the message visible at once);
 * - dropped: the message carries no live request (a duplicate, a finished
 *   request, a deleted person): it is archived;
 * - exhausted: the request was claimed max_attempts times without finishing:
 *   it is marked failed and its message archived.
 * A running request whose lease has expired (its worker died) is taken over:
 * by a claim of its own message (attempt + 1), or, when the person's next
 * request is claimed first, it is marked failed as superseded.
 */
create or replace function private.claim_retrain(p_msg_id bigint, p_lease_seconds integer default null)
returns table (
  outcome text, request_id uuid, person_id uuid, trigger public.training_trigger, reason text,
  attempt integer, lease_expires_at timestamptz
)
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  config private.retrain_config;
  lease integer;
  request public.retrain_request;
  holder public.retrain_request;
  request_person uuid;
  lease_end timestamptz;
begin
  select * into config from private.retrain_config;
  lease := coalesce(p_lease_seconds, config.lease_seconds);
  if lease < 1 then
    raise exception 'a lease lasts at least 1 s' using errcode = 'invalid_parameter_value';
  end if;

  -- Take the person's turn first (as enqueue does), then lock the rows.
  select r.person_id into request_person from public.retrain_request r where r.msg_id = p_msg_id;
  if found then
    perform private.lock_retrain_person(request_person);
    select * into request from public.retrain_request r where r.msg_id = p_msg_id for update;
  end if;
  if request.id is null or request.status in ('done', 'failed') then
    perform pgmq.archive('glucokit_retrain', p_msg_id);
    return query select 'dropped', request.id, request.person_id, request.trigger, request.reason, request.attempts,
      null::timestamptz;
    return;
  end if;

  select * into holder from public.retrain_request r
  where r.person_id = request.person_id and r.status = 'running' and r.id <> request.id
  for update;
  if found then
    if holder.lease_expires_at > clock_timestamp() then
      perform pgmq.set_vt('glucokit_retrain', p_msg_id,
        ceil(extract(epoch from holder.lease_expires_at - clock_timestamp()))::integer + 1);
      return query select 'busy', request.id, request.person_id, request.trigger, request.reason, request.attempts,
        holder.lease_expires_at;
      return;
    end if;
    update public.retrain_request r
    set status = 'failed', finished_at = clock_timestamp(), lease_expires_at = null,
      error = format('abandoned: the lease of attempt %s ran out at %s; superseded by request %s',
        holder.attempts, holder.lease_expires_at, request.id)
    where r.id = holder.id;
    perform pgmq.archive('glucokit_retrain', holder.msg_id);
  end if;

  if request.status = 'running' and request.lease_expires_at > clock_timestamp() then
    -- Read again while its claim is live (its visibility was changed by hand): leave it to its holder.
    perform pgmq.set_vt('glucokit_retrain', p_msg_id,
      ceil(extract(epoch from request.lease_expires_at - clock_timestamp()))::integer + 1);
    return query select 'busy', request.id, request.person_id, request.trigger, request.reason, request.attempts,
      request.lease_expires_at;
    return;
  end if;

  if request.attempts >= config.max_attempts then
    update public.retrain_request r
    set status = 'failed', finished_at = clock_timestamp(), lease_expires_at = null,
      started_at = coalesce(r.started_at, clock_timestamp()),
      error = format('gave up after %s attempts: no worker finished it', request.attempts)
    where r.id = request.id;
    perform pgmq.archive('glucokit_retrain', p_msg_id);
    return query select 'exhausted', request.id, request.person_id, request.trigger, request.reason, request.attempts,
      null::timestamptz;
    return;
  end if;

  lease_end := clock_timestamp() + make_interval(secs => lease);
  update public.retrain_request r
  set status = 'running', attempts = r.attempts + 1, started_at = clock_timestamp(), lease_expires_at = lease_end
  where r.id = request.id
  returning * into request;
  -- New data is counted from here once this retrain completes.
  insert into private.retrain_state as s (person_id, cgm_readings_at_claim) values (request.person_id, 0)
  on conflict on constraint retrain_state_pkey do update set cgm_readings_at_claim = s.cgm_readings, updated_at = now();
  -- Set after the lease, so the message never shows before the lease has run out.
  perform pgmq.set_vt('glucokit_retrain', p_msg_id, lease);
  return query select 'claimed', request.id, request.person_id, request.trigger, request.reason, request.attempts,
    lease_end;
end
$$;
comment on function private.claim_retrain(bigint, integer) is 'Worker: claim the retrain a message carries (one running claim per person, with a lease).';
revoke all on function private.claim_retrain(bigint, integer) from public;
grant execute on function private.claim_retrain(bigint, integer) to glucokit_worker, service_role;

/**
 * The running request of a message, locked (person lock first), if claim
 * `p_attempt` still holds it; null when no request carries the message;
 * raises when another claim took it over or it has finished.
 */
create or replace function private.held_retrain(p_msg_id bigint, p_attempt integer) returns public.retrain_request
  language plpgsql volatile
  set search_path = ''
as $$
declare
  request_person uuid;
  request public.retrain_request;
begin
  select r.person_id into request_person from public.retrain_request r where r.msg_id = p_msg_id;
  if not found then
    return null;
  end if;
  perform private.lock_retrain_person(request_person);
  select * into request from public.retrain_request r where r.msg_id = p_msg_id for update;
  if found and (request.status <> 'running' or request.attempts <> p_attempt) then
    raise exception 'retrain request % is no longer held by attempt % (it is % at attempt %)',
      request.id, p_attempt, request.status, request.attempts
      using errcode = 'object_not_in_prerequisite_state',
        hint = 'The lease ran out and another claim took over: discard this attempt''s result.';
  end if;
  return request;
end
$$;
comment on function private.held_retrain(bigint, integer) is 'Queue internals: the running request of a message, if claim p_attempt still holds it.';
revoke all on function private.held_retrain(bigint, integer) from public;

/**
 * Extends a live claim (a heartbeat for long trainings): the lease and the
 * message's visibility timeout both move to now + p_lease_seconds.
 */
create or replace function private.extend_retrain_lease(p_msg_id bigint, p_attempt integer, p_lease_seconds integer default null)
returns timestamptz
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  request public.retrain_request := private.held_retrain(p_msg_id, p_attempt);
  lease integer := coalesce(p_lease_seconds, (select c.lease_seconds from private.retrain_config c));
  lease_end timestamptz;
begin
  if request.id is null then
    raise exception 'no retrain request carries message %', p_msg_id using errcode = 'no_data_found';
  end if;
  if lease < 1 then
    raise exception 'a lease lasts at least 1 s' using errcode = 'invalid_parameter_value';
  end if;
  lease_end := clock_timestamp() + make_interval(secs => lease);
  update public.retrain_request r set lease_expires_at = lease_end where r.id = request.id;
  perform pgmq.set_vt('glucokit_retrain', p_msg_id, lease);
  return lease_end;
end
$$;
comment on function private.extend_retrain_lease(bigint, integer, integer) is 'Worker: extend a live claim''s lease (and the message''s visibility).';
revoke all on function private.extend_retrain_lease(bigint, integer, integer) from public;
grant execute on function private.extend_retrain_lease(bigint, integer, integer) to glucokit_worker, service_role;

/**
 * Finishes a claim: done (the message is deleted and the person's counters
 * restart from the claim) or failed (the message is archived; the counters
 * stay, so the next threshold queues it again). Either way the person's
 * waiting request, if any, becomes visible at once. Returns false when the
 * request is gone (its person was deleted meanwhile).
 */
create or replace function private.finish_retrain(
  p_msg_id bigint,
  p_attempt integer,
  p_succeeded boolean,
  p_training_run_id uuid,
  p_error text
) returns boolean
  language plpgsql volatile
  set search_path = ''
as $$
declare
  request public.retrain_request := private.held_retrain(p_msg_id, p_attempt);
  waiting bigint;
begin
  if request.id is null then
    perform pgmq.archive('glucokit_retrain', p_msg_id);
    return false;
  end if;
  update public.retrain_request r
  set status = case when p_succeeded then 'done' else 'failed' end::public.retrain_status,
    finished_at = clock_timestamp(), lease_expires_at = null,
    training_run_id = coalesce(p_training_run_id, r.training_run_id),
    error = case when p_succeeded then null else coalesce(nullif(p_error, ''), 'failed without a message') end
  where r.id = request.id;
  if p_succeeded then
    update private.retrain_state s
    set cgm_readings_at_training = coalesce(s.cgm_readings_at_claim, s.cgm_readings),
      cgm_readings_at_claim = null, trained_at = clock_timestamp(), updated_at = now()
    where s.person_id = request.person_id;
    perform pgmq.delete('glucokit_retrain', p_msg_id);
  else
    perform pgmq.archive('glucokit_retrain', p_msg_id);
  end if;
  select r.msg_id into waiting from public.retrain_request r where r.person_id = request.person_id and r.status = 'queued';
  if found then
    perform pgmq.set_vt('glucokit_retrain', waiting, 0);
  end if;
  return true;
end
$$;
comment on function private.finish_retrain(bigint, integer, boolean, uuid, text) is 'Queue internals: end a claim as done or failed.';
revoke all on function private.finish_retrain(bigint, integer, boolean, uuid, text) from public;

/**
 * A worker finished a retrain: optionally link the training run it recorded.
 */
create or replace function private.complete_retrain(p_msg_id bigint, p_attempt integer, p_training_run_id uuid default null)
returns boolean
  language sql volatile security definer
  set search_path = ''
as $$
  select private.finish_retrain(p_msg_id, p_attempt, true, p_training_run_id, null)
$$;
comment on function private.complete_retrain(bigint, integer, uuid) is 'Worker: the claimed retrain is done (its message is deleted).';
revoke all on function private.complete_retrain(bigint, integer, uuid) from public;
grant execute on function private.complete_retrain(bigint, integer, uuid) to glucokit_worker, service_role;

/**
 * A worker gave up on a retrain, with the error to show the owner.
 */
create or replace function private.fail_retrain(p_msg_id bigint, p_attempt integer, p_error text, p_training_run_id uuid default null)
returns boolean
  language sql volatile security definer
  set search_path = ''
as $$
  select private.finish_retrain(p_msg_id, p_attempt, false, p_training_run_id, p_error)
$$;
comment on function private.fail_retrain(bigint, integer, text, uuid) is 'Worker: the claimed retrain failed (its message is archived).';
revoke all on function private.fail_retrain(bigint, integer, text, uuid) from public;
grant execute on function private.fail_retrain(bigint, integer, text, uuid) to glucokit_worker, service_role;

/**
 * The queue at a glance: PGMQ's metrics of the queue and the requests by state.
 */
create or replace function private.retrain_queue_metrics()
returns table (
  queue_length bigint, newest_msg_age_sec integer, oldest_msg_age_sec integer, total_messages bigint,
  queued bigint, running bigint, expired_leases bigint
)
  language sql volatile security definer
  set search_path = ''
as $$
  select m.queue_length, m.newest_msg_age_sec, m.oldest_msg_age_sec, m.total_messages,
    (select count(*) from public.retrain_request r where r.status = 'queued'),
    (select count(*) from public.retrain_request r where r.status = 'running'),
    (select count(*) from public.retrain_request r where r.status = 'running' and r.lease_expires_at <= clock_timestamp())
  from pgmq.metrics('glucokit_retrain') as m
$$;
comment on function private.retrain_queue_metrics() is 'Worker/monitoring: queue length and ages, requests queued, running and with expired leases.';
revoke all on function private.retrain_queue_metrics() from public;
grant execute on function private.retrain_queue_metrics() to glucokit_worker, service_role;

-- -----------------------------------------------------------------------------
-- Grants and row-level security
-- -----------------------------------------------------------------------------
-- Owners read their persons' requests; workers read those of the person in
-- their scope. Nobody writes them directly: only the functions above do.
alter table public.retrain_request enable row level security;

revoke all on public.retrain_request from anon, authenticated, service_role;
grant select on public.retrain_request to authenticated, glucokit_worker;
grant all on public.retrain_request to service_role;

-- The owner follows their persons' retrains (queued, running, done, failed and why).
create policy "Retrain requests are visible to the owner of the person" on public.retrain_request
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));

-- A training worker may look up the requests of the person it is training.
create policy "Workers read retrain requests of the person in their scope" on public.retrain_request
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));
