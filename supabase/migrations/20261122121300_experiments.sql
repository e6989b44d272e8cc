/**
 * -----------------------------------------------------------------------------
 * A/B experiments over model families
 * -----------------------------------------------------------------------------
 * An operator (the database owner or service_role, through
 * `glucokit experiments`) defines an experiment with two or more variants,
 * each a set of model families and an integer weight, and starts it. At most
 * one experiment runs at a time: two would compete for the families of the
 * same person's model.
 *
 * Assignment is sticky and deterministic. A person's variant follows from
 *   h    = the first 60 bits of SHA-256(experiment key || ':' || person id), as an integer
 *   slot = h mod (sum of the variants' weights)
 * and the variants, in order of name, take consecutive ranges of slots as wide
 * as their weights. lib/glucokit/modelops/experiments.py computes the same in Python.
 * The retrain worker assigns the person in its scope when it retrains them
 * (private.assign_experiment) and trains only the variant's families. An
 * assignment never changes, and a variant's definition is frozen once its
 * experiment leaves draft.
 *
 * When the API serves a forecast curve to the owner of an assigned person, it
 * logs an exposure in the same transaction (private.log_forecast_exposure).
 * An exposure whose model is not of the variant's families, or was trained
 * before the assignment, is marked contaminated with the reason; the analysis
 * leaves such persons out and reports why.
 *
 * Users read the experiments, variants, assignments and exposures of their
 * own persons; workers read those of the person in their scope; anon nothing.
 */

create type public.experiment_status as enum ('draft', 'running', 'stopped', 'decided');
comment on type public.experiment_status is 'An experiment''s life: defined (draft), assigning and logging (running), ended without a decision (stopped), ended by the decision rule (decided).';

create table public.experiment (
  id uuid primary key default gen_random_uuid(),
  key text not null unique check (key ~ '^[a-z][a-z0-9_-]{0,63}$'),
  description text not null check (char_length(description) between 1 and 2000 and description ~ '\S'),
  status public.experiment_status not null default 'draft',
  horizon_minutes smallint not null default 30 check (horizon_minutes between 5 and 60 and horizon_minutes % 5 = 0),
  alpha double precision not null default 0.05 check (alpha > 0 and alpha < 0.5),
  mixture_sd double precision not null default 2.0 check (mixture_sd > 0),
  min_points_per_person integer not null default 12 check (min_points_per_person >= 1),
  min_persons_per_variant integer not null default 10 check (min_persons_per_variant >= 2),
  max_persons_per_variant integer check (max_persons_per_variant >= min_persons_per_variant),
  created_at timestamptz not null default now(),
  started_at timestamptz,
  stopped_at timestamptz,
  decided_at timestamptz,
  decision jsonb check (jsonb_typeof(decision) = 'object'),
  constraint experiment_started_unless_draft check ((status = 'draft') = (started_at is null)),
  constraint experiment_stopped_when_ended check ((status in ('stopped', 'decided')) = (stopped_at is not null)),
  constraint experiment_decided_when_decided check ((status = 'decided') = (decided_at is not null and decision is not null)),
  constraint experiment_times_in_order check (stopped_at >= started_at and decided_at >= started_at)
);
comment on table public.experiment is 'An A/B experiment over model families across persons, with the parameters of its sequential decision rule.';
comment on column public.experiment.key is 'Stable name; part of the assignment hash, so it never changes the variants persons get.';
comment on column public.experiment.horizon_minutes is 'The forecast horizon whose errors the analysis compares.';
comment on column public.experiment.alpha is 'Type-I error rate of the decision rule (mixture SPRT), valid under continuous monitoring.';
comment on column public.experiment.mixture_sd is 'Standard deviation (mg/dL) of the normal mixture over the difference in per-person MAE.';
comment on column public.experiment.min_points_per_person is 'Forecast points with an observed outcome a person needs to count in the analysis.';
comment on column public.experiment.min_persons_per_variant is 'Persons each variant needs before the rule may stop.';
comment on column public.experiment.max_persons_per_variant is 'Budget: with this many persons in every variant and no difference found, the rule stops for futility (null: no budget).';
comment on column public.experiment.decision is 'The analysis that decided the experiment: verdict, winner, statistic, per-variant metrics.';

-- One experiment runs at a time.
create unique index experiment_one_running_idx on public.experiment ((true)) where status = 'running';

create table public.experiment_variant (
  experiment_id uuid not null references public.experiment (id) on delete cascade,
  name text not null check (name ~ '^[a-z][a-z0-9_-]{0,31}$'),
  families text[] not null check (
    cardinality(families) between 1 and 16
    and array_position(families, null) is null
    and array_to_string(families, ' ') ~ '^[a-z][a-z0-9_-]{0,63}( [a-z][a-z0-9_-]{0,63})*$'
  ),
  weight integer not null default 1 check (weight between 1 and 1000),
  primary key (experiment_id, name)
);
comment on table public.experiment_variant is 'One arm of an experiment: the model families its persons are trained with, and its share of persons (weight).';
comment on column public.experiment_variant.families is 'Model families (ml_model.algorithm) the variant trains; models of other families served to its persons contaminate them.';
comment on column public.experiment_variant.weight is 'Relative share of persons; frozen, like the rest of the variant, once the experiment leaves draft.';

create table public.experiment_assignment (
  experiment_id uuid not null,
  person_id uuid not null references public.person (id) on delete cascade,
  variant text not null,
  assigned_at timestamptz not null default now(),
  primary key (experiment_id, person_id),
  -- The target of the exposures' foreign key: an exposure names its assignment's variant.
  unique (experiment_id, person_id, variant),
  foreign key (experiment_id, variant) references public.experiment_variant (experiment_id, name) on delete cascade
);
comment on table public.experiment_assignment is 'A person''s variant in an experiment: derived from a hash of the experiment key and the person, never changed.';
comment on column public.experiment_assignment.assigned_at is 'When the person entered the experiment (their first retrain while it ran); models trained earlier contaminate.';

-- The policies' person column.
create index experiment_assignment_person_idx on public.experiment_assignment (person_id);
-- Serves the variant foreign key.
create index experiment_assignment_variant_idx on public.experiment_assignment (experiment_id, variant);

create table public.experiment_exposure (
  id uuid primary key default gen_random_uuid(),
  experiment_id uuid not null,
  person_id uuid not null,
  variant text not null,
  model_id uuid not null,
  forecast_generated_at timestamptz not null,
  served_at timestamptz not null default now(),
  contaminated boolean not null,
  contamination text check (char_length(contamination) <= 2000),
  foreign key (experiment_id, person_id, variant)
    references public.experiment_assignment (experiment_id, person_id, variant) on delete cascade,
  foreign key (model_id, person_id) references public.ml_model (id, person_id) on delete cascade,
  constraint experiment_exposure_reason_when_contaminated check (contaminated = (contamination is not null))
);
comment on table public.experiment_exposure is 'A forecast curve of an assigned person served to their owner while an experiment ran, with the model that made it.';
comment on column public.experiment_exposure.forecast_generated_at is 'Origin of the served curve (prediction.generated_at).';
comment on column public.experiment_exposure.contaminated is 'The served model was not trained under the person''s variant; the analysis leaves the person out.';
comment on column public.experiment_exposure.contamination is 'Why the exposure is contaminated (null when it is not).';

-- A person's exposures in time order (and the policies' person column).
create index experiment_exposure_person_served_idx on public.experiment_exposure (person_id, served_at);
-- Serves the assignment foreign key and the analysis.
create index experiment_exposure_assignment_idx on public.experiment_exposure (experiment_id, person_id, variant);
-- Serves the model foreign key.
create index experiment_exposure_model_idx on public.experiment_exposure (model_id, person_id);

-- -----------------------------------------------------------------------------
-- The contamination guard: variants frozen, assignments deterministic and immutable
-- -----------------------------------------------------------------------------
/**
 * The variant of p_person_id in p_experiment_id, by the hash rule at the top
 * of this file; null when the experiment has no variants.
 */
create or replace function private.experiment_variant_for(p_experiment_id uuid, p_person_id uuid) returns text
  language sql stable
  set search_path = ''
as $$
  with hashed as (
    select ('x' || left(encode(sha256(convert_to(e.key || ':' || p_person_id::text, 'UTF8')), 'hex'), 15))::bit(60)::bigint as h
    from public.experiment e
    where e.id = p_experiment_id
  ),
  ranges as (
    select v.name,
      sum(v.weight) over (order by v.name collate "C") as upper_slot,
      sum(v.weight) over () as total
    from public.experiment_variant v
    where v.experiment_id = p_experiment_id
  )
  select r.name
  from ranges r, hashed
  where hashed.h % r.total < r.upper_slot
  order by r.upper_slot
  limit 1
$$;
comment on function private.experiment_variant_for(uuid, uuid) is 'The variant a person gets in an experiment: SHA-256 of key:person, 60 bits, modulo the total weight.';
revoke all on function private.experiment_variant_for(uuid, uuid) from public;

create or replace function private.check_experiment_variant_frozen() returns trigger
  language plpgsql
  set search_path = ''
as $$
declare
  experiment_id uuid := case when tg_op = 'DELETE' then old.experiment_id else new.experiment_id end;
  current_status public.experiment_status;
begin
  select e.status into current_status from public.experiment e where e.id = experiment_id;
  -- Gone: the experiment's own deletion cascading to its variants.
  if found and current_status <> 'draft' then
    raise exception 'the variants of a % experiment are frozen', current_status
      using errcode = 'insufficient_privilege', detail = 'Changing them would move persons between variants.';
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;
comment on function private.check_experiment_variant_frozen() is 'Trigger: variants change only while their experiment is a draft.';
revoke all on function private.check_experiment_variant_frozen() from public;

create trigger experiment_variant_frozen
  before insert or update or delete on public.experiment_variant
  for each row execute function private.check_experiment_variant_frozen();

create or replace function private.check_experiment_assignment() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
declare
  current_status public.experiment_status;
  expected text;
begin
  if tg_op = 'UPDATE' then
    raise exception 'person % stays in variant % of this experiment: assignments never change', old.person_id, old.variant
      using errcode = 'insufficient_privilege';
  end if;
  select e.status into current_status from public.experiment e where e.id = new.experiment_id;
  if current_status = 'draft' then
    raise exception 'experiment % is a draft: persons are assigned once it starts', new.experiment_id
      using errcode = 'object_not_in_prerequisite_state';
  end if;
  expected := private.experiment_variant_for(new.experiment_id, new.person_id);
  if new.variant is null then
    new.variant := expected;
  elsif new.variant is distinct from expected then
    raise exception 'person % belongs in variant %, not %', new.person_id, coalesce(expected, '(none)'), new.variant
      using errcode = 'integrity_constraint_violation';
  end if;
  return new;
end
$$;
comment on function private.check_experiment_assignment() is 'Trigger: an assignment to a started experiment takes the hashed variant (filled in when omitted) and never changes.';
revoke all on function private.check_experiment_assignment() from public;

create trigger experiment_assignment_deterministic
  before insert or update on public.experiment_assignment
  for each row execute function private.check_experiment_assignment();

-- -----------------------------------------------------------------------------
-- Assigning (workers) and logging exposures (users)
-- -----------------------------------------------------------------------------
/**
 * Worker, scoped to p_person_id: the person's variant in the running
 * experiment, assigning them first if they are not yet; no row when none runs.
 */
create or replace function private.assign_experiment(p_person_id uuid)
returns table (experiment_key text, variant text, families text[], assigned_at timestamptz)
  language plpgsql volatile security definer
  set search_path = ''
as $$
begin
  if p_person_id is null or p_person_id is distinct from private.worker_person_id() then
    raise exception 'person % is not in this worker''s scope', p_person_id using errcode = 'insufficient_privilege';
  end if;
  insert into public.experiment_assignment (experiment_id, person_id)
  select e.id, p_person_id from public.experiment e where e.status = 'running'
  on conflict (experiment_id, person_id) do nothing;
  return query
    select e.key, a.variant, v.families, a.assigned_at
    from public.experiment e
    join public.experiment_assignment a on a.experiment_id = e.id and a.person_id = p_person_id
    join public.experiment_variant v on v.experiment_id = e.id and v.name = a.variant
    where e.status = 'running';
end
$$;
comment on function private.assign_experiment(uuid) is 'Worker: the scoped person''s variant in the running experiment, assigned on first call.';
revoke all on function private.assign_experiment(uuid) from public;
grant execute on function private.assign_experiment(uuid) to glucokit_worker;

/**
 * Owner: logs that the curve made by p_model_id at p_generated_at was served
 * for p_person_id, once per running experiment the person is assigned to,
 * marked contaminated when the model was not trained under the variant.
 * Returns the number of exposures logged.
 */
create or replace function private.log_forecast_exposure(p_person_id uuid, p_model_id uuid, p_generated_at timestamptz)
returns integer
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  logged integer;
begin
  if p_person_id is null or p_person_id not in (select private.owned_person_ids()) then
    raise exception 'person % is not one of your persons', p_person_id using errcode = 'insufficient_privilege';
  end if;
  insert into public.experiment_exposure (
    experiment_id, person_id, variant, model_id, forecast_generated_at, contaminated, contamination
  )
  select a.experiment_id, a.person_id, a.variant, m.id, p_generated_at, why.reason is not null, why.reason
  from public.experiment_assignment a
  join public.experiment e on e.id = a.experiment_id and e.status = 'running'
  join public.experiment_variant v on v.experiment_id = a.experiment_id and v.name = a.variant
  join public.ml_model m on m.id = p_model_id and m.person_id = a.person_id
  cross join lateral (
    select case
      when not m.algorithm = any (v.families) then
        format('served version %s (%s); variant %s trains %s', m.version, m.algorithm, v.name,
               array_to_string(v.families, ', '))
      when m.trained_at < a.assigned_at then
        format('served version %s (%s), trained %s, before the assignment to variant %s at %s', m.version,
               m.algorithm, m.trained_at, v.name, a.assigned_at)
    end as reason
  ) as why
  where a.person_id = p_person_id;
  get diagnostics logged = row_count;
  return logged;
end
$$;
comment on function private.log_forecast_exposure(uuid, uuid, timestamptz) is 'Owner: log that a forecast curve of an assigned person was served (contaminated when not of the variant).';
revoke all on function private.log_forecast_exposure(uuid, uuid, timestamptz) from public;
grant execute on function private.log_forecast_exposure(uuid, uuid, timestamptz) to authenticated;

-- -----------------------------------------------------------------------------
-- Grants and row-level security
-- -----------------------------------------------------------------------------
-- Operators define and run experiments; users and workers only read what
-- concerns their persons. Assignments and exposures are written only by the
-- functions above (and by operators); nobody updates them.
alter table public.experiment enable row level security;
alter table public.experiment_variant enable row level security;
alter table public.experiment_assignment enable row level security;
alter table public.experiment_exposure enable row level security;

revoke all on public.experiment, public.experiment_variant, public.experiment_assignment, public.experiment_exposure
  from anon, authenticated, service_role;
grant select on public.experiment, public.experiment_variant, public.experiment_assignment, public.experiment_exposure
  to authenticated;
grant select on public.experiment, public.experiment_variant, public.experiment_assignment to glucokit_worker;
grant all on public.experiment, public.experiment_variant to service_role;
grant select, insert, delete on public.experiment_assignment, public.experiment_exposure to service_role;

create policy "Experiments are visible to owners of persons assigned to them" on public.experiment
  for select to authenticated
  using (id in (
    select a.experiment_id from public.experiment_assignment a where a.person_id in (select private.owned_person_ids())
  ));

create policy "Workers read the experiments of the person in their scope" on public.experiment
  for select to glucokit_worker
  using (id in (
    select a.experiment_id from public.experiment_assignment a where a.person_id = (select private.worker_person_id())
  ));

create policy "Variants are visible to owners of persons assigned to their experiment" on public.experiment_variant
  for select to authenticated
  using (experiment_id in (
    select a.experiment_id from public.experiment_assignment a where a.person_id in (select private.owned_person_ids())
  ));

create policy "Workers read the variants of the person in their scope" on public.experiment_variant
  for select to glucokit_worker
  using (experiment_id in (
    select a.experiment_id from public.experiment_assignment a where a.person_id = (select private.worker_person_id())
  ));

create policy "Assignments are visible to the person's owner" on public.experiment_assignment
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));

create policy "Workers read the assignments of the person in their scope" on public.experiment_assignment
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));

create policy "Exposures are visible to the person's owner" on public.experiment_exposure
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));
