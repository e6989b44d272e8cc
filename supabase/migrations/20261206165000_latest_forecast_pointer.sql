/**
 * -----------------------------------------------------------------------------
 * The latest forecast of a person, kept as a pointer
 * -----------------------------------------------------------------------------
 * public.latest_forecast read a person's newest origin with
 * `order by generated_at desc, created_at desc limit 1` over every day
 * partition of public.forecast. As the table owner the planner merges the
 * partitions' (person_id, generated_at desc) indexes and stops after a row or
 * two. Under row-level security the owner's policy adds
 * `owner_id = (select auth.uid())`: the planner takes the
 * (owner_id, person_id, generated_at desc) index, estimates one row per
 * partition (owner and person taken as independent, the owner a parameter),
 * and so reads and sorts all of the person's forecasts (200 heap rows at 2,400
 * points a person) to keep one: 3.11x the read without RLS (bench/rls_cost.py).
 *
 * private.latest_forecast holds, per person, the key of their newest forecast
 * (the same order: generated_at, then created_at). The read becomes a
 * primary-key lookup, the forecast by its primary key (run-time pruning leaves
 * one partition) and its points by (forecast_id, horizon, generated_at).
 * A statement trigger on public.forecast keeps it: inserts move it forward,
 * deletes (a model's or a person's) move it back to the newest forecast left.
 * Partitions dropped by retention fire no trigger; a pointer to an expired
 * forecast reads as no forecast, as the person then has none.
 */
create table private.latest_forecast (
  person_id uuid primary key references public.person (id) on delete cascade,
  owner_id uuid not null,
  forecast_id uuid not null,
  generated_at timestamptz not null,
  created_at timestamptz not null
);
comment on table private.latest_forecast is 'Per person, the key of their newest forecast (public.forecast, by generated_at then created_at); kept by trigger forecast_latest_pointer, read by public.latest_forecast.';
comment on column private.latest_forecast.owner_id is 'The auth user owning the person (the policy''s key); kept right by trigger latest_forecast_owner_follows.';

alter table private.latest_forecast enable row level security;
revoke all on private.latest_forecast from public, anon, authenticated, service_role;
grant select on private.latest_forecast to authenticated;

create policy "The latest forecast is visible to the owner of the person" on private.latest_forecast
  for select to authenticated
  using (owner_id = (select auth.uid()));

create policy "Anonymous users reach no health data" on private.latest_forecast
  as restrictive for all to authenticated
  using (((select auth.jwt()) ->> 'is_anonymous')::boolean is not true)
  with check (((select auth.jwt()) ->> 'is_anonymous')::boolean is not true);

/**
 * Points each person with forecasts in the statement's transition table at
 * their newest forecast: forward only after an insert (`added`), recomputed
 * from what is left after a delete (`removed`).
 */
create or replace function private.move_latest_forecast() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    insert into private.latest_forecast as l (person_id, owner_id, forecast_id, generated_at, created_at)
    select distinct on (a.person_id) a.person_id, a.owner_id, a.id, a.generated_at, a.created_at
    from added a
    order by a.person_id, a.generated_at desc, a.created_at desc
    on conflict (person_id) do update
      set owner_id = excluded.owner_id, forecast_id = excluded.forecast_id,
        generated_at = excluded.generated_at, created_at = excluded.created_at
      where (excluded.generated_at, excluded.created_at) > (l.generated_at, l.created_at);
  else
    delete from private.latest_forecast l
    using removed r
    where r.person_id = l.person_id and r.id = l.forecast_id and r.generated_at = l.generated_at;
    insert into private.latest_forecast (person_id, owner_id, forecast_id, generated_at, created_at)
    select n.person_id, n.owner_id, n.id, n.generated_at, n.created_at
    from (select distinct r.person_id from removed r) as p
    cross join lateral (
      select f.person_id, f.owner_id, f.id, f.generated_at, f.created_at
      from public.forecast f
      where f.person_id = p.person_id
      order by f.generated_at desc, f.created_at desc
      limit 1
    ) as n
    on conflict (person_id) do nothing;
  end if;
  return null;
end
$$;
comment on function private.move_latest_forecast() is 'Trigger: keeps private.latest_forecast at each person''s newest forecast.';
revoke all on function private.move_latest_forecast() from public;

create trigger forecast_latest_pointer
  after insert on public.forecast
  referencing new table as added
  for each statement execute function private.move_latest_forecast();

create trigger forecast_latest_pointer_back
  after delete on public.forecast
  referencing old table as removed
  for each statement execute function private.move_latest_forecast();

create or replace function private.latest_forecast_owner_follows() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
begin
  update private.latest_forecast set owner_id = new.owner_id where person_id = new.id;
  return null;
end
$$;
comment on function private.latest_forecast_owner_follows() is 'Trigger: a person''s new owner becomes the owner_id of their latest-forecast pointer.';
revoke all on function private.latest_forecast_owner_follows() from public;

create trigger latest_forecast_owner_follows
  after update of owner_id on public.person
  for each row when (old.owner_id is distinct from new.owner_id)
  execute function private.latest_forecast_owner_follows();

-- The forecasts there are.
insert into private.latest_forecast (person_id, owner_id, forecast_id, generated_at, created_at)
select distinct on (f.person_id) f.person_id, f.owner_id, f.id, f.generated_at, f.created_at
from public.forecast f
order by f.person_id, f.generated_at desc, f.created_at desc;
