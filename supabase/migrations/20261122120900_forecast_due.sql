/**
 * -----------------------------------------------------------------------------
 * Persons due a forecast
 * -----------------------------------------------------------------------------
 * A person is due when their latest valid CGM reading is newer than the
 * latest reading their active model has forecast from (or, before its first
 * forecast, at least as new as the end of its training data). The forecast
 * job asks for them unscoped, a page at a time in person order (after
 * p_after), then forecasts each in that person's scope. It learns person ids
 * only, as the scheduled retrain sweep does.
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
    order by m.person_id
    limit p_limit;
end
$$;
comment on function private.forecast_due_persons(uuid, integer) is 'Forecast job: persons whose active model has not forecast from their latest CGM reading (ids only, unscoped).';
revoke all on function private.forecast_due_persons(uuid, integer) from public;
grant execute on function private.forecast_due_persons(uuid, integer) to glucokit_worker, service_role;

-- The latest forecast origin of a model (forecast_due_persons, the forecast writer).
create index prediction_model_generated_idx on public.prediction (model_id, generated_at desc);
