/**
 * The forecast job's tasks list only their own shard of the persons due a
 * forecast, filtered here rather than by reading every due person and
 * dropping the others in Python. The shard of a person is
 * private.retrain_shard (UUID.int % count, as runner.Shard.owns computes it),
 * so the retrain queue and the forecast job split persons the same way.
 * Called with the two arguments of before (one task), it lists what it did.
 *
 * A person's latest reading is found by one backward scan of
 * observation_person_code_effective_idx per CGM code, stopping at the first
 * valid reading, rather than by aggregating all of their readings (23 ms ->
 * 1.2 ms for 8 persons of 14 days, bench/README.md "Forecast pass"), and
 * the model's latest origin from public.forecast (one row per origin; its
 * idempotency key (model_id, generated_at) gives the max by one backward
 * index step) rather than from the twelve rows per origin of public.prediction.
 */
drop function private.forecast_due_persons(uuid, integer);

create function private.forecast_due_persons(
  p_after uuid default null, p_limit integer default 1000, p_shard_index integer default 0, p_shard_count integer default 1
)
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
  if p_shard_count is null or p_shard_index is null or p_shard_index < 0 or p_shard_index >= p_shard_count then
    raise exception 'task index % is not in 0..% of % tasks', p_shard_index, p_shard_count - 1, p_shard_count
      using errcode = 'invalid_parameter_value';
  end if;
  return query
    select m.person_id
    from public.ml_model m
    cross join lateral (
      select max(l.at) as at
      from unnest(cgm_codes) as c (code)
      cross join lateral (
        select o.effective_at as at
        from public.observation o
        where o.person_id = m.person_id
          and o.code_system = 'http://loinc.org'
          and o.code = c.code
          and o.status not in ('cancelled', 'entered-in-error')
        order by o.effective_at desc
        limit 1
      ) as l
    ) as latest
    cross join lateral (
      select max(f.generated_at) as at from public.forecast f where f.model_id = m.id
    ) as forecast
    where m.stage = 'active'
      and (p_after is null or m.person_id > p_after)
      and (p_shard_count = 1 or private.retrain_shard(m.person_id, p_shard_count) = p_shard_index)
      and latest.at >= m.data_to
      and (forecast.at is null or latest.at > forecast.at)
      and private.has_consent(m.person_id, 'forecasting')
    order by m.person_id
    limit p_limit;
end
$$;
comment on function private.forecast_due_persons(uuid, integer, integer, integer) is
  'Forecast job: persons of one task''s shard whose active model has not forecast from their latest CGM reading (ids only, unscoped).';
revoke all on function private.forecast_due_persons(uuid, integer, integer, integer) from public;
grant execute on function private.forecast_due_persons(uuid, integer, integer, integer) to glucokit_worker, service_role;

comment on function private.retrain_shard(uuid, integer) is
  'Job tasks: which of p_count tasks takes a person (UUID.int % count); the retrain queue and the forecast job.';
