/**
 * -----------------------------------------------------------------------------
 * The retrain queue: sharded reads, retries with backoff, a dead-letter state
 * -----------------------------------------------------------------------------
 * Three changes to migration 20261122120700 (see docs/retrain-queue.md):
 * - a job task finds the messages of its shard in SQL (private.peek_retrains),
 *   so other shards' messages at the head of the queue never hide its own;
 * - a retrain that raised is retried after a backoff that doubles with each
 *   attempt (private.retry_retrain), up to max_attempts claims;
 * - after the last attempt the request is failed with the reason (the dead-
 *   letter state: status 'failed', its message in the queue's archive), and
 *   private.retrain_queue_metrics() counts requests waiting for a retry and
 *   those given up in the last day, for the operator.
 */

-- The first retry waits this long; each later one twice as long as the one before.
alter table private.retrain_config
  add column retry_delay_seconds integer not null default 300 check (retry_delay_seconds > 0);
comment on column private.retrain_config.retry_delay_seconds is 'Wait before retrying a retrain that raised; doubled for each further attempt (at most a day).';

/**
 * The shard of a person among p_count job tasks: the person id as a 128-bit
 * big-endian integer, modulo p_count, exactly as the workers' Python computes
 * it (retrain_job.Shard.owns: UUID.int % count). Computed byte by byte
 * (Horner's rule, reduced at each step), so no value outgrows a bigint.
 */
create or replace function private.retrain_shard(p_person_id uuid, p_count integer) returns integer
  language plpgsql immutable strict parallel safe
  set search_path = ''
as $$
declare
  id_bytes bytea := uuid_send(p_person_id);
  remainder bigint := 0;
begin
  if p_count < 1 then
    raise exception 'a job has at least one task' using errcode = 'invalid_parameter_value';
  end if;
  for i in 0..15 loop
    remainder := (remainder * 256 + get_byte(id_bytes, i)) % p_count;
  end loop;
  return remainder;
end
$$;
comment on function private.retrain_shard(uuid, integer) is 'Queue internals: which of p_count job tasks takes a person (UUID.int % count).';
revoke all on function private.retrain_shard(uuid, integer) from public;

/**
 * Worker: up to p_qty visible messages of one job task's shard, oldest
 * first, with the request each carries; it only looks (the claim hides a
 * message), so tasks never hide each other's messages. A message that
 * carries no request belongs to every shard: any task drops it.
 */
create or replace function private.peek_retrains(p_shard_index integer, p_shard_count integer, p_qty integer)
returns table (
  msg_id bigint, read_ct integer, enqueued_at timestamptz, vt timestamptz, message jsonb,
  request_id uuid, person_id uuid, trigger public.training_trigger, status public.retrain_status
)
  language plpgsql stable security definer
  set search_path = ''
as $$
begin
  if p_shard_count is null or p_shard_count < 1 or p_shard_index is null
      or p_shard_index not between 0 and p_shard_count - 1 then
    raise exception 'shard % of % does not exist', p_shard_index, p_shard_count
      using errcode = 'invalid_parameter_value';
  end if;
  if p_qty is null or p_qty not between 1 and 1000 then
    raise exception 'peek 1 to 1000 messages' using errcode = 'invalid_parameter_value';
  end if;
  return query
    select m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, r.id, r.person_id, r.trigger, r.status
    from pgmq.q_glucokit_retrain m
    left join public.retrain_request r on r.msg_id = m.msg_id
    where m.vt <= clock_timestamp()
      and (r.person_id is null or private.retrain_shard(r.person_id, p_shard_count) = p_shard_index)
    order by m.msg_id
    limit p_qty;
end
$$;
comment on function private.peek_retrains(integer, integer, integer) is 'Worker: the visible retrain messages of one job task''s shard, without hiding them.';
revoke all on function private.peek_retrains(integer, integer, integer) from public;
grant execute on function private.peek_retrains(integer, integer, integer) to glucokit_worker, service_role;

/**
 * Worker: the claimed retrain raised. While the request has attempts left
 * (fewer than max_attempts claims), it waits again as 'queued' with the
 * attempt's error, and its message shows after retry_delay_seconds,
 * doubled for each attempt so far (at most a day). When the person already
 * has a request waiting (at most one may), that one carries the retry: it is
 * held back as long, and this one fails naming it. After the last attempt the
 * request fails for good (dead letter): status 'failed', the reason in
 * `error`, its message archived. Outcomes: 'retrying' with the time of the
 * next attempt, 'failed', or 'gone' (the person was deleted meanwhile).
 */
create or replace function private.retry_retrain(p_msg_id bigint, p_attempt integer, p_error text)
returns table (outcome text, retry_at timestamptz)
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  request public.retrain_request := private.held_retrain(p_msg_id, p_attempt);
  config private.retrain_config;
  failure text := coalesce(nullif(p_error, ''), 'failed without a message');
  delay integer;
  next_attempt timestamptz;
  waiting public.retrain_request;
begin
  if request.id is null then
    perform pgmq.archive('glucokit_retrain', p_msg_id);
    return query select 'gone', null::timestamptz;
    return;
  end if;
  select * into config from private.retrain_config;
  select * into waiting from public.retrain_request r
  where r.person_id = request.person_id and r.status = 'queued'
  for update;

  -- Failing a request (its status and reason, the message archived, the person's waiting request made visible)
  -- is private.finish_retrain's (migration 20261122120700).
  if request.attempts >= config.max_attempts then
    perform private.finish_retrain(p_msg_id, p_attempt, false, null,
      left(format('gave up after %s attempts; the last one failed: %s', request.attempts, failure), 10000));
    return query select 'failed', null::timestamptz;
    return;
  end if;

  -- double precision until the cap, so that many attempts cannot overflow an integer
  delay := least(config.retry_delay_seconds * 2.0 ^ (request.attempts - 1), 86400)::integer;
  next_attempt := clock_timestamp() + make_interval(secs => delay);
  if waiting.id is not null then
    perform private.finish_retrain(p_msg_id, p_attempt, false, null,
      left(format('attempt %s failed: %s; request %s, already waiting, retries it',
        request.attempts, failure, waiting.id), 10000));
    -- finish_retrain made the waiting request visible at once: it waits for the backoff instead.
    update public.retrain_request r set duplicates = r.duplicates + 1 where r.id = waiting.id;
    perform pgmq.set_vt('glucokit_retrain', waiting.msg_id, delay);
  else
    update public.retrain_request r
    set status = 'queued', lease_expires_at = null,
      error = left(format('attempt %s failed: %s; retried at %s', request.attempts, failure, next_attempt), 10000)
    where r.id = request.id;
    perform pgmq.set_vt('glucokit_retrain', p_msg_id, delay);
  end if;
  return query select 'retrying', next_attempt;
end
$$;
comment on function private.retry_retrain(bigint, integer, text) is 'Worker: the claimed retrain raised: retry it after a backoff, or fail it for good after the last attempt.';
revoke all on function private.retry_retrain(bigint, integer, text) from public;
grant execute on function private.retry_retrain(bigint, integer, text) to glucokit_worker, service_role;

/**
 * The queue at a glance, now with the requests waiting for a retry after a
 * failed attempt and those given up (failed) in the last day. Its columns
 * change, so it is dropped and created again.
 */
drop function private.retrain_queue_metrics();
create function private.retrain_queue_metrics()
returns table (
  queue_length bigint, newest_msg_age_sec integer, oldest_msg_age_sec integer, total_messages bigint,
  queued bigint, running bigint, expired_leases bigint, retrying bigint, failed_last_day bigint
)
  language sql volatile security definer
  set search_path = ''
as $$
  select m.queue_length, m.newest_msg_age_sec, m.oldest_msg_age_sec, m.total_messages,
    (select count(*) from public.retrain_request r where r.status = 'queued'),
    (select count(*) from public.retrain_request r where r.status = 'running'),
    (select count(*) from public.retrain_request r where r.status = 'running' and r.lease_expires_at <= clock_timestamp()),
    (select count(*) from public.retrain_request r where r.status = 'queued' and r.attempts > 0),
    (select count(*) from public.retrain_request r
     where r.status = 'failed' and r.finished_at > clock_timestamp() - interval '1 day')
  from pgmq.metrics('glucokit_retrain') as m
$$;
comment on function private.retrain_queue_metrics() is 'Worker/monitoring: queue length and ages; requests queued, running, with expired leases, waiting for a retry, and failed in the last day.';
revoke all on function private.retrain_queue_metrics() from public;
grant execute on function private.retrain_queue_metrics() to glucokit_worker, service_role;
