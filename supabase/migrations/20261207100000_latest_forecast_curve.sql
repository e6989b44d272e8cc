/**
 * -----------------------------------------------------------------------------
 * The latest forecast pointer carries the curve; a forecast records its source count
 * -----------------------------------------------------------------------------
 * public.latest_forecast read four tables under row-level security: the
 * pointer private.latest_forecast, the forecast, its points and (to count
 * them) its anchors. Each reference pays its policies' fixed cost (the
 * auth.uid() and anonymous-user InitPlans) and, for the day-partitioned three,
 * a gated scan node per partition that run-time pruning skips only after
 * starting it: 1.3-1.4x the same read without RLS (bench/rls_cost.py), and
 * more as retention keeps more days.
 *
 * public.forecast.source_count now records how many observations the forecast
 * was computed from, written with the forecast by its writer (as the model
 * version and data window are): the count of its anchors then. Anchors can
 * later go with an erased observation; the count is what the forecast used.
 *
 * The pointer now holds what the read shows: the forecast's provenance with
 * that count, and its points as parallel arrays in horizon order (target_at is
 * generated_at + horizon, a check on public.prediction). The read is one
 * primary-key lookup under one table's policies. It is a copy kept by
 * statement triggers, never written by anyone else:
 * - forecast inserts move it forward (as before, now with the provenance) and
 *   fill the curve from the points (after the statement, so points written
 *   with their forecast are there);
 * - point inserts the pointer does not hold yet, point updates and deletes,
 *   and forecast updates (privileged paths) fill again the pointers whose
 *   forecast they touch;
 * - forecast deletes move it back to the newest forecast left and fill it;
 * - retention, which drops partitions without triggers, records its run in
 *   private.retention_run, whose trigger deletes the pointers to the forecasts
 *   it expired (nothing older survives a newer one's expiry).
 * tests/test_latest_pointer.py compares the pointer with the tables after
 * each of these; bench/rls_cost.py measures what the triggers cost a write.
 */
alter table public.forecast
  add column source_count integer not null default 0 check (source_count >= 0);
comment on column public.forecast.source_count is 'How many observations the forecast was computed from (its anchors when it was written).';

update public.forecast f
set source_count = (
  select count(*) from public.prediction_source s where s.forecast_id = f.id and s.generated_at = f.generated_at
);

alter table private.latest_forecast
  add column coverage real,
  add column disclaimer_version text,
  add column model_id uuid,
  add column model_version text,
  add column training_run_id uuid,
  add column data_from timestamptz,
  add column data_to timestamptz,
  add column code_version text,
  add column source_count integer not null default 0,
  add column point_ids uuid[] not null default '{}',
  add column horizons smallint[] not null default '{}',
  add column values_mg_dl real[] not null default '{}',
  add column lowers_mg_dl real[] not null default '{}',
  add column uppers_mg_dl real[] not null default '{}',
  add constraint latest_forecast_curve_shape check (
    cardinality(horizons) = cardinality(point_ids) and cardinality(values_mg_dl) = cardinality(point_ids)
    and cardinality(lowers_mg_dl) = cardinality(point_ids) and cardinality(uppers_mg_dl) = cardinality(point_ids)
  );
comment on column private.latest_forecast.point_ids is 'The forecast''s points (public.prediction ids) in horizon order; horizons, values_mg_dl, lowers_mg_dl and uppers_mg_dl are parallel to it.';

/**
 * Fills the pointers of p_persons from the tables: the forecast's provenance
 * (when p_provenance) and its points. Every trigger below ends here, so the
 * copy has one definition. One pointer at a time, with its forecast's key as
 * parameters of a generic plan, so each read starts on one day's partition
 * (pruned when the plan starts) instead of planning over every day's; a
 * pointer is written only where it differs from the tables.
 */
create or replace function private.fill_latest_forecast(p_persons uuid[], p_provenance boolean) returns void
  language plpgsql volatile security definer
  set search_path = ''
  -- A custom plan would be made for every call: a generic plan over the day partitions looks dearer to the
  -- planner than it is, since it cannot count the partitions that pruning at the plan's start removes.
  set plan_cache_mode = force_generic_plan
as $$
declare
  k record;
begin
  for k in
    select l.person_id, l.forecast_id, l.generated_at
    from private.latest_forecast l
    where l.person_id = any (p_persons)
  loop
    if p_provenance then
      update private.latest_forecast l
      set coverage = f.coverage, disclaimer_version = f.disclaimer_version, model_id = f.model_id,
        model_version = f.model_version, training_run_id = f.training_run_id, data_from = f.data_from,
        data_to = f.data_to, code_version = f.code_version, source_count = f.source_count
      from public.forecast f
      where l.person_id = k.person_id and f.id = k.forecast_id and f.generated_at = k.generated_at;
    end if;
    update private.latest_forecast l
    set point_ids = c.ids, horizons = c.horizons, values_mg_dl = c.vals, lowers_mg_dl = c.lowers,
      uppers_mg_dl = c.uppers
    from (
      select coalesce(array_agg(p.id order by p.horizon_minutes), '{}') as ids,
        coalesce(array_agg(p.horizon_minutes order by p.horizon_minutes), '{}') as horizons,
        coalesce(array_agg(p.value_mg_dl order by p.horizon_minutes), '{}') as vals,
        coalesce(array_agg(p.lower_mg_dl order by p.horizon_minutes), '{}') as lowers,
        coalesce(array_agg(p.upper_mg_dl order by p.horizon_minutes), '{}') as uppers
      from public.prediction p
      where p.forecast_id = k.forecast_id and p.generated_at = k.generated_at
    ) as c
    where l.person_id = k.person_id
      and (l.point_ids, l.horizons, l.values_mg_dl, l.lowers_mg_dl, l.uppers_mg_dl)
        is distinct from (c.ids, c.horizons, c.vals, c.lowers, c.uppers);
  end loop;
end
$$;
comment on function private.fill_latest_forecast(uuid[], boolean) is 'Fills the latest-forecast pointers of the given persons from public.forecast (provenance) and public.prediction (curve).';
revoke all on function private.fill_latest_forecast(uuid[], boolean) from public;

-- The pointer's moves (migration 20261206165000), now with the provenance of the forecast and filled.
create or replace function private.move_latest_forecast() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
declare
  persons uuid[];
begin
  if tg_op = 'INSERT' then
    with moved as (
      insert into private.latest_forecast as l (person_id, owner_id, forecast_id, generated_at, created_at, coverage,
        disclaimer_version, model_id, model_version, training_run_id, data_from, data_to, code_version, source_count)
      select distinct on (a.person_id) a.person_id, a.owner_id, a.id, a.generated_at, a.created_at, a.coverage,
        a.disclaimer_version, a.model_id, a.model_version, a.training_run_id, a.data_from, a.data_to, a.code_version,
        a.source_count
      from added a
      order by a.person_id, a.generated_at desc, a.created_at desc
      on conflict (person_id) do update
        set owner_id = excluded.owner_id, forecast_id = excluded.forecast_id,
          generated_at = excluded.generated_at, created_at = excluded.created_at, coverage = excluded.coverage,
          disclaimer_version = excluded.disclaimer_version, model_id = excluded.model_id,
          model_version = excluded.model_version, training_run_id = excluded.training_run_id,
          data_from = excluded.data_from, data_to = excluded.data_to, code_version = excluded.code_version,
          source_count = excluded.source_count
        where (excluded.generated_at, excluded.created_at) > (l.generated_at, l.created_at)
      returning l.person_id
    )
    select array_agg(m.person_id) into persons from moved m;
  else
    delete from private.latest_forecast l
    using removed r
    where r.person_id = l.person_id and r.id = l.forecast_id and r.generated_at = l.generated_at;
    with moved as (
      insert into private.latest_forecast (person_id, owner_id, forecast_id, generated_at, created_at, coverage,
        disclaimer_version, model_id, model_version, training_run_id, data_from, data_to, code_version, source_count)
      select n.person_id, n.owner_id, n.id, n.generated_at, n.created_at, n.coverage, n.disclaimer_version, n.model_id,
        n.model_version, n.training_run_id, n.data_from, n.data_to, n.code_version, n.source_count
      from (select distinct r.person_id from removed r) as p
      cross join lateral (
        select f.*
        from public.forecast f
        where f.person_id = p.person_id
        order by f.generated_at desc, f.created_at desc
        limit 1
      ) as n
      on conflict (person_id) do nothing
      returning person_id
    )
    select array_agg(m.person_id) into persons from moved m;
  end if;
  if persons is not null then
    perform private.fill_latest_forecast(persons, false);
  end if;
  return null;
end
$$;

/**
 * A statement wrote, changed or removed points of a pointer's forecast, or
 * changed a forecast (privileged paths): fill those pointers again. `changed`
 * is the statement's transition table (new rows for inserts and updates, old
 * rows for deletes).
 */
create or replace function private.refill_latest_forecast() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
begin
  if tg_table_name = 'forecast' then
    perform private.fill_latest_forecast(array(
      select l.person_id
      from changed c
      join private.latest_forecast l on l.person_id = c.person_id and l.forecast_id = c.id
    ), true);
  elsif tg_op = 'INSERT' then
    -- Points are written with their forecast, whose trigger has filled the pointer after the statement: only
    -- points the pointer does not hold send it to the tables.
    perform private.fill_latest_forecast(array(
      select distinct l.person_id
      from changed c
      join private.latest_forecast l
        on l.person_id = c.person_id and l.forecast_id = c.forecast_id and l.generated_at = c.generated_at
      where c.id <> all (l.point_ids)
    ), false);
  else
    perform private.fill_latest_forecast(array(
      select distinct l.person_id
      from changed c
      join private.latest_forecast l
        on l.person_id = c.person_id and l.forecast_id = c.forecast_id and l.generated_at = c.generated_at
    ), false);
  end if;
  return null;
end
$$;
comment on function private.refill_latest_forecast() is 'Trigger: fills again the latest-forecast pointers whose forecast or points the statement changed.';
revoke all on function private.refill_latest_forecast() from public;

create trigger forecast_latest_refill
  after update on public.forecast
  referencing new table as changed
  for each statement execute function private.refill_latest_forecast();
create trigger prediction_latest_curve
  after insert on public.prediction
  referencing new table as changed
  for each statement execute function private.refill_latest_forecast();
create trigger prediction_latest_curve_update
  after update on public.prediction
  referencing new table as changed
  for each statement execute function private.refill_latest_forecast();
create trigger prediction_latest_curve_back
  after delete on public.prediction
  referencing old table as changed
  for each statement execute function private.refill_latest_forecast();

-- The pointers there are.
select private.fill_latest_forecast(array(select person_id from private.latest_forecast), true);

alter table private.latest_forecast
  alter column coverage set not null,
  alter column disclaimer_version set not null,
  alter column model_id set not null,
  alter column model_version set not null,
  alter column data_from set not null,
  alter column data_to set not null,
  alter column code_version set not null;

/**
 * The latest curve from the pointer alone. Same columns, order and answers as
 * before; empty when the person has no forecast or is not the caller's.
 */
create or replace function public.latest_forecast(person_id uuid, language text default 'en')
returns table (
  id uuid,
  forecast_id uuid,
  person_id uuid,
  generated_at timestamptz,
  target_at timestamptz,
  horizon_minutes smallint,
  value_mg_dl real,
  lower_mg_dl real,
  upper_mg_dl real,
  coverage real,
  disclaimer_version text,
  disclaimer text,
  model_id uuid,
  model_version text,
  training_run_id uuid,
  data_from timestamptz,
  data_to timestamptz,
  code_version text,
  source_count integer
)
  language sql stable security invoker
  set search_path = ''
as $$
  select c.id, k.forecast_id, k.person_id, k.generated_at, k.generated_at + make_interval(mins => c.horizon_minutes),
    c.horizon_minutes, c.value_mg_dl, c.lower_mg_dl, c.upper_mg_dl, k.coverage, k.disclaimer_version, d.body,
    k.model_id, k.model_version, k.training_run_id, k.data_from, k.data_to, k.code_version, k.source_count
  from private.latest_forecast k
  cross join lateral private.disclaimer_text(k.disclaimer_version, $2) as d(body)
  cross join lateral unnest(k.point_ids, k.horizons, k.values_mg_dl, k.lowers_mg_dl, k.uppers_mg_dl)
    as c(id, horizon_minutes, value_mg_dl, lower_mg_dl, upper_mg_dl)
  where k.person_id = $1
  order by c.horizon_minutes
$$;

/**
 * Retention (private.expire_forecasts, migration 20261206100100) drops whole
 * day partitions, which fires no trigger on the forecast tables; it records
 * each run in private.retention_run. When a run is recorded, the pointers to
 * the forecasts it expired go: every expired forecast was generated before the
 * end of the cut-off's day, and what is older than an expired forecast expired
 * too, so the person then has no forecast.
 */
create or replace function private.forget_expired_latest_forecasts() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
begin
  delete from private.latest_forecast l
  where l.generated_at < new.expired_before + interval '1 day'
    and not exists (
      select from public.forecast f where f.id = l.forecast_id and f.generated_at = l.generated_at
    );
  return null;
end
$$;
comment on function private.forget_expired_latest_forecasts() is 'Trigger: a recorded retention run deletes the latest-forecast pointers to the forecasts it expired.';
revoke all on function private.forget_expired_latest_forecasts() from public;

create trigger retention_run_forgets_expired_pointers
  after insert on private.retention_run
  for each row execute function private.forget_expired_latest_forecasts();
