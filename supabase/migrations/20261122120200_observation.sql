/**
 * -----------------------------------------------------------------------------
 * Observations
 * -----------------------------------------------------------------------------
 * FHIR-aligned measurements (glucose readings, carbohydrate intake, insulin
 * doses...). Sized for ~100k rows per person per year and millions of persons,
 * so the table is range-partitioned by month of effective_at, and one index
 * serves the common read: one person, one code, a time range.
 *
 * Glucose is stored in mg/dL; a reading that arrived in another unit keeps
 * that value and unit in original_value/original_unit.
 */

create table public.observation (
  id uuid not null default gen_random_uuid(),
  person_id uuid not null references public.person (id) on delete cascade,
  status text not null default 'final'
    check (status in ('registered', 'preliminary', 'final', 'amended', 'corrected', 'cancelled', 'entered-in-error', 'unknown')),
  category text not null default 'laboratory' check (category ~ '^[a-z][a-z-]{0,63}$'),
  code_system text not null default 'http://loinc.org' check (char_length(code_system) between 1 and 255),
  code text not null check (char_length(code) between 1 and 64),
  value numeric not null check (value <> 'NaN'::numeric),
  unit text not null check (unit ~ '^\S{1,32}$'),
  original_value numeric check (original_value <> 'NaN'::numeric),
  original_unit text check (original_unit ~ '^\S{1,32}$'),
  effective_at timestamptz not null,
  issued_at timestamptz,
  device text check (char_length(device) <= 255),
  source_system text not null check (char_length(source_system) between 1 and 255),
  source_id text not null check (char_length(source_id) between 1 and 255),
  resource jsonb check (jsonb_typeof(resource) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (id, effective_at),
  -- The source's identifier makes ingest idempotent. The partition key must be
  -- part of every unique constraint of a partitioned table.
  unique (person_id, source_system, source_id, effective_at),
  constraint observation_original_value_and_unit check ((original_value is null) = (original_unit is null)),
  -- LOINC glucose codes (99504-3, 105272-9, 14745-4, 15074-8, 2339-0) are
  -- stored normalised to mg/dL and within what a sensor or a laboratory can
  -- report for a living person.
  constraint observation_glucose_in_mg_dl check (
    code_system <> 'http://loinc.org'
    or code not in ('99504-3', '105272-9', '14745-4', '15074-8', '2339-0')
    or (unit = 'mg/dL' and value between 10 and 1000)
  )
) partition by range (effective_at);

comment on table public.observation is 'FHIR-aligned measurements of a person, partitioned by month of effective_at.';
comment on column public.observation.value is 'Normalised value (glucose in mg/dL).';
comment on column public.observation.original_value is 'The value as received, when it was converted.';
comment on column public.observation.source_id is 'Identifier of the reading in its source system: the idempotency key of ingest.';
comment on column public.observation.resource is 'The original FHIR resource, as received.';

-- One person, one code, a time range (and the person foreign key, and the policies).
create index observation_person_code_effective_idx on public.observation (person_id, code, effective_at);

create trigger observation_touch_updated_at
  before update on public.observation
  for each row execute function private.touch_updated_at();

/**
 * Partitions are tables of their own: like the parent they have row-level
 * security enabled, but no policies and no privileges for any API role, so
 * rows are only ever reached through public.observation and its policies.
 * (They stay in `public` beside their parent: Prisma's schema engine reads a
 * partitioned table as one model only when its partitions are in the same schema.)
 */
create or replace function private.seal_observation_partition(partition_name text) returns void
  language plpgsql volatile
  set search_path = ''
as $$
begin
  execute format('alter table public.%I enable row level security', partition_name);
  execute format('revoke all on public.%I from anon, authenticated, service_role', partition_name);
  execute format('comment on table public.%I is %L', partition_name,
    'Partition of public.observation: reached only through the parent table and its policies.');
end
$$;
comment on function private.seal_observation_partition(text) is 'Maintenance: no direct API access to an observation partition.';
revoke all on function private.seal_observation_partition(text) from public;

-- Rows outside every monthly partition (very old or far-future readings) land
-- here until private.create_observation_partitions() gives them a month.
create table public.observation_default partition of public.observation default;
select private.seal_observation_partition('observation_default');

/**
 * Creates the monthly partitions covering [p_from, p_to) that do not exist
 * yet, moving any rows of those months out of the default partition first.
 * Run ahead of time (for example monthly from pg_cron) so that readings land
 * in their own month.
 */
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
    if to_regclass(format('public.%I', partition_name)) is null then
      create temporary table observation_moving (like public.observation_default) on commit drop;
      with moved as (
        delete from public.observation_default
        where effective_at >= month_start and effective_at < (month_start + interval '1 month')
        returning *
      )
      insert into observation_moving select * from moved;
      execute format(
        'create table public.%I partition of public.observation for values from (%L) to (%L)',
        partition_name, month_start, (month_start + interval '1 month')::date);
      perform private.seal_observation_partition(partition_name);
      insert into public.observation select * from observation_moving;
      drop table observation_moving;
      created := created + 1;
    end if;
    month_start := (month_start + interval '1 month')::date;
  end loop;
  return created;
end
$$;
comment on function private.create_observation_partitions(date, date) is 'Maintenance: create the monthly observation partitions of [p_from, p_to).';
revoke all on function private.create_observation_partitions(date, date) from public;

-- Two years back and one year ahead of the day the schema is installed.
select private.create_observation_partitions(
  (date_trunc('month', now()) - interval '24 months')::date,
  (date_trunc('month', now()) + interval '13 months')::date
);

-- -----------------------------------------------------------------------------
-- Grants and row-level security
-- -----------------------------------------------------------------------------
-- Users keep their own persons' observations (ingest runs as the user);
-- workers only read the observations of the person in their scope.
alter table public.observation enable row level security;

revoke all on public.observation from anon, authenticated, service_role;
grant select, insert, update, delete on public.observation to authenticated;
grant select on public.observation to glucokit_worker;
grant all on public.observation to service_role;

create policy "Observations are visible to the owner of the person" on public.observation
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));

create policy "Owners can add observations to their persons" on public.observation
  for insert to authenticated
  with check (person_id in (select private.owned_person_ids()));

create policy "Owners can correct observations of their persons" on public.observation
  for update to authenticated
  using (person_id in (select private.owned_person_ids()))
  with check (person_id in (select private.owned_person_ids()));

create policy "Owners can delete observations of their persons" on public.observation
  for delete to authenticated
  using (person_id in (select private.owned_person_ids()));

create policy "Workers read observations of the person in their scope" on public.observation
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));
