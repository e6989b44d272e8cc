/**
 * -----------------------------------------------------------------------------
 * Day patterns: an embedding per person-day, for "days like this one"
 * -----------------------------------------------------------------------------
 * One row per person and local day (in person.time_zone) whose CGM readings
 * cover it well enough: the day's glucose profile as 48 half-hour means in
 * mg/dL (lib/glucokit/modelops/patterns.py computes it; docs/patterns.md). Workers write
 * the rows of the person in their scope; the owner reads them and asks for
 * the days nearest to one of theirs.
 *
 * Distance is Euclidean (L2) on mg/dL: a day at 250 mg/dL all day is far from
 * one at 100 mg/dL all day. Cosine distance would call them alike (they point
 * the same way), so it does not fit levels that matter in absolute terms.
 * Divided by sqrt(48), the L2 distance is the root mean square difference of
 * the two profiles in mg/dL.
 */

create extension if not exists vector with schema extensions;
-- The vector type, its casts and operators live in `extensions`, which Supabase
-- opens to its API roles; the workers write vectors too.
grant usage on schema extensions to glucokit_worker;

create table public.day_pattern (
  id uuid primary key default gen_random_uuid(),
  person_id uuid not null references public.person (id) on delete cascade,
  day date not null,
  source text not null,
  embedding extensions.vector(48) not null,
  readings smallint not null,
  filled_slots smallint not null,
  computed_at timestamptz not null default now(),
  -- One pattern per person and day: the key of the worker's upsert, and the
  -- index that serves the person foreign key, the policies and a person's
  -- days in order.
  constraint day_pattern_one_per_day unique (person_id, day),
  constraint day_pattern_readings_positive check (readings > 0),
  constraint day_pattern_filled_slots_range check (filled_slots between 0 and 48),
  constraint day_pattern_source_format check (source ~ '^[a-z]+-v[0-9]+$')
);
comment on table public.day_pattern is 'A person''s local day as a glucose profile embedding (48 half-hour means, mg/dL), for finding similar days.';
comment on column public.day_pattern.day is 'The local calendar day in the person''s time zone (person.time_zone at the time of computing).';
comment on column public.day_pattern.source is 'How the embedding was computed, with its version (profile-v1: half-hour means, docs/patterns.md).';
comment on column public.day_pattern.embedding is 'Half-hour mean glucose in mg/dL from local midnight, 48 values; L2 distance / sqrt(48) = RMS difference.';
comment on column public.day_pattern.readings is 'Valid CGM readings of the day the profile was computed from.';
comment on column public.day_pattern.filled_slots is 'Half-hour slots without readings whose value was interpolated from their neighbours.';

-- Approximate nearest neighbours across rows (L2, the distance above). A
-- person's own days are found through the unique (person_id, day) index and
-- an exact sort: docs/patterns.md has the measurement that chose this.
create index day_pattern_embedding_hnsw_idx on public.day_pattern using hnsw (embedding extensions.vector_l2_ops);

-- -----------------------------------------------------------------------------
-- Grants and row-level security
-- -----------------------------------------------------------------------------
-- Owners read their persons' days; workers write and refresh the days of the
-- person in their scope (a day that no longer qualifies is deleted).
alter table public.day_pattern enable row level security;

revoke all on public.day_pattern from anon, authenticated, service_role;
grant select on public.day_pattern to authenticated;
grant select, delete on public.day_pattern to glucokit_worker;
grant insert (person_id, day, source, embedding, readings, filled_slots, computed_at) on public.day_pattern to glucokit_worker;
grant update (source, embedding, readings, filled_slots, computed_at) on public.day_pattern to glucokit_worker;
grant all on public.day_pattern to service_role;

create policy "Owners read their persons' day patterns" on public.day_pattern
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));

create policy "Workers read day patterns of the person in their scope" on public.day_pattern
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));

create policy "Workers write day patterns of the person in their scope" on public.day_pattern
  for insert to glucokit_worker
  with check (person_id = (select private.worker_person_id()));

create policy "Workers refresh day patterns of the person in their scope" on public.day_pattern
  for update to glucokit_worker
  using (person_id = (select private.worker_person_id()))
  with check (person_id = (select private.worker_person_id()));

create policy "Workers remove day patterns of the person in their scope" on public.day_pattern
  for delete to glucokit_worker
  using (person_id = (select private.worker_person_id()));

/**
 * Persons who consent to pattern search and have CGM readings in a local day
 * that has ended and is later than their newest stored pattern (any day when
 * they have none). The
 * pattern job asks for them unscoped, a page at a time in person order (after
 * p_after), then computes each one's days in that person's scope. It learns
 * person ids only. A person whose latest ended days were skipped (too few
 * readings) stays listed until a later day qualifies; computing their few
 * days again is cheap.
 */
create or replace function private.pattern_due_persons(p_after uuid default null, p_limit integer default 1000)
returns table (person_id uuid)
  language plpgsql stable security definer
  set search_path = ''
as $$
declare
  cgm_codes text[] := (select c.cgm_codes from private.retrain_config c);
begin
  if private.worker_person_id() is not null then
    raise exception 'persons due day patterns are listed unscoped' using errcode = 'insufficient_privilege';
  end if;
  if p_limit is null or p_limit < 1 then
    raise exception 'the limit must be positive' using errcode = 'invalid_parameter_value';
  end if;
  return query
    select p.id
    from public.person p
    cross join lateral (
      select max(d.day) as day from public.day_pattern d where d.person_id = p.id
    ) as newest
    where (p_after is null or p.id > p_after)
      and private.has_consent(p.id, 'pattern_search')
      and exists (
        select
        from public.observation o
        where o.person_id = p.id
          and o.code_system = 'http://loinc.org'
          and o.code = any (cgm_codes)
          and o.status not in ('cancelled', 'entered-in-error')
          and o.effective_at >= coalesce((newest.day + 1)::timestamp at time zone p.time_zone, '-infinity')
          and o.effective_at < (now() at time zone p.time_zone)::date::timestamp at time zone p.time_zone
      )
    order by p.id
    limit p_limit;
end
$$;
comment on function private.pattern_due_persons(uuid, integer) is 'Pattern job: consenting persons with ended local days of CGM readings after their newest day pattern (ids only, unscoped).';
revoke all on function private.pattern_due_persons(uuid, integer) from public;
grant execute on function private.pattern_due_persons(uuid, integer) to glucokit_worker, service_role;
