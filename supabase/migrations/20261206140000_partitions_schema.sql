/**
 * -----------------------------------------------------------------------------
 * A clean API surface: partitions out of `public`, and a stated policy on
 * every table with row-level security
 * -----------------------------------------------------------------------------
 * The Data API exposes `public` only (supabase/config.toml, [api] schemas), so
 * whatever sits there is a table an app could query and appears in
 * `supabase gen types`. Partitions are not: rows are reached through their
 * parent table and its policies. They live in schema `partitions`, which the
 * Data API never exposes (like `private` and `pgmq`), made with the forecast
 * partitions (20261206100000), as are private.refuse_direct_access and
 * private.seal_partition, which seal them.
 *
 * Tables that only the kit's own functions reach (partitions, and the tables
 * of `private`) keep row-level security on and carry one restrictive policy
 * that admits no row, "No direct access". It changes nothing for any role (a
 * table with row-level security and no policy admits no row either), but it
 * states the intent in the catalog, so Supabase's linter (rls_enabled_no_policy)
 * has nothing to report, and a permissive policy added later by mistake still
 * opens nothing (a table meant to get policies of its own drops this one).
 * Row-level security of a partition applies only when it is named directly;
 * reads and writes through the parent obey the parent's policies.
 */
-- Every partition still in `public` (observation's monthly ones and its default)
-- moves, with its indexes and constraints; then every partition is sealed.
do $$
declare
  moving regclass;
begin
  for moving in
    select c.oid::regclass from pg_catalog.pg_class c
    where c.relnamespace = 'public'::regnamespace and c.relispartition and c.relkind in ('r', 'p')
  loop
    execute format('alter table %s set schema partitions', moving);
  end loop;
  perform private.seal_partition(c.oid::regclass)
  from pg_catalog.pg_class c
  where c.relnamespace = 'partitions'::regnamespace and c.relispartition and c.relkind in ('r', 'p');
  perform private.refuse_direct_access(c.oid::regclass)
  from pg_catalog.pg_class c
  where c.relnamespace = 'private'::regnamespace and c.relkind = 'r' and c.relrowsecurity
    and not exists (select from pg_catalog.pg_policy p where p.polrelid = c.oid);
end
$$;

-- New monthly partitions are made in `partitions` (otherwise as before).
create or replace function private.create_observation_partitions(p_from date, p_to date) returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  month_start date := date_trunc('month', p_from)::date;
  partition_name text;
  created integer := 0;
begin
  while month_start < p_to loop
    partition_name := format('observation_y%sm%s', to_char(month_start, 'YYYY'), to_char(month_start, 'MM'));
    if to_regclass(format('partitions.%I', partition_name)) is null then
      create temporary table observation_moving (like partitions.observation_default) on commit drop;
      with moved as (
        delete from partitions.observation_default
        where effective_at >= month_start and effective_at < (month_start + interval '1 month')
        returning *
      )
      insert into observation_moving select * from moved;
      execute format(
        'create table partitions.%I partition of public.observation for values from (%L) to (%L)',
        partition_name, month_start, (month_start + interval '1 month')::date);
      perform private.seal_partition(format('partitions.%I', partition_name)::regclass);
      insert into public.observation select * from observation_moving;
      drop table observation_moving;
      created := created + 1;
    end if;
    month_start := (month_start + interval '1 month')::date;
  end loop;
  return created;
end
$$;

-- Superseded by private.seal_partition.
drop function private.seal_observation_partition(text);
