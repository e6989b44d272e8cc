/**
 * -----------------------------------------------------------------------------
 * Forecast origins, owner-keyed policies, daily partitions
 * -----------------------------------------------------------------------------
 * A forecast was twelve public.prediction rows, each repeating its provenance,
 * and each anchored to the same ~59 observations (~700 prediction_source rows
 * per forecast). Now:
 *
 * - public.forecast is the origin: one row per (model, generated_at) with the
 *   provenance (model version, training run, data window, code and disclaimer
 *   versions, nominal coverage);
 * - public.prediction keeps one row per point with only what differs per
 *   horizon (horizon, target time, value, band) and its forecast_id;
 * - public.prediction_source anchors the forecast once (keyed on forecast_id):
 *   every point of a forecast has the same sources.
 *
 * All three carry owner_id (the auth user owning the person), so the owner's
 * policy is `owner_id = (select auth.uid())`, with no person lookup; so does
 * public.forecast_outcome. The worker writes it (private.worker_owner_id(),
 * checked by its insert policies), and a change of a person's owner by a
 * privileged path carries over (trigger person_owner_follows).
 *
 * The three grow per reading, so they are partitioned by range of
 * generated_at, one partition a day in schema `partitions`, created ahead by
 * private.create_forecast_partitions() (and the retention job), with a default
 * partition for anything else. Nothing references them by foreign key:
 * outcomes and feedback carry what the rollups need (model version, nominal
 * coverage), so dropping a day's partitions loses no outcome-based figure.
 *
 * The existing rows move over: one forecast per (model, generated_at), the
 * points with their ids (outcomes and feedback keep pointing at them), and the
 * anchors of each forecast once.
 */

create schema partitions;
comment on schema partitions is
  'Partitions of partitioned tables: reached only through their parent tables. Never exposed by the Data API.';
revoke all on schema partitions from public;

create or replace function private.refuse_direct_access(target regclass) returns void
  language plpgsql volatile
  set search_path = ''
as $$
begin
  execute format('alter table %s enable row level security', target);
  if not exists (select from pg_catalog.pg_policy where polrelid = target and polname = 'No direct access') then
    execute format(
      'create policy "No direct access" on %s as restrictive for all to public using (false) with check (false)',
      target);
  end if;
end
$$;
comment on function private.refuse_direct_access(regclass) is
  'Maintenance: row-level security on and a restrictive policy admitting no row, for a table only the kit''s functions reach.';
revoke all on function private.refuse_direct_access(regclass) from public;

create or replace function private.seal_partition(partition regclass) returns void
  language plpgsql volatile
  set search_path = ''
as $$
begin
  perform private.refuse_direct_access(partition);
  execute format('revoke all on %s from anon, authenticated, service_role', partition);
  execute format('comment on table %s is %L', partition, format(
    'Partition of %s: reached only through the parent table and its policies.',
    (select i.inhparent::regclass from pg_catalog.pg_inherits i where i.inhrelid = partition)));
end
$$;
comment on function private.seal_partition(regclass) is 'Maintenance: no direct API access to a partition.';
revoke all on function private.seal_partition(regclass) from public;


-- -----------------------------------------------------------------------------
-- The old tables step aside; what depends on them is rebuilt below.
-- -----------------------------------------------------------------------------
drop view public.model_daily_accuracy;
drop view public.model_feedback_summary;
alter table public.forecast_outcome drop constraint forecast_outcome_prediction_id_person_id_fkey;
alter table public.forecast_feedback drop constraint forecast_feedback_prediction_id_person_id_fkey;
-- Out of the way, with their indexes and constraints, so the new tables take the names.
drop trigger prediction_source_check_person on public.prediction_source;
alter table public.prediction rename to prediction_v1;
alter table public.prediction_source rename to prediction_source_v1;
alter table public.prediction_v1 set schema private;
alter table public.prediction_source_v1 set schema private;

-- -----------------------------------------------------------------------------
-- Tables
-- -----------------------------------------------------------------------------
create table public.forecast (
  id uuid not null default gen_random_uuid(),
  person_id uuid not null,
  owner_id uuid not null,
  model_id uuid not null,
  generated_at timestamptz not null,
  coverage real not null check (coverage > 0 and coverage < 1),
  disclaimer_version text not null check (disclaimer_version ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
  model_version text not null check (private.is_semver(model_version)),
  training_run_id uuid,
  data_from timestamptz not null,
  data_to timestamptz not null,
  code_version text not null check (char_length(code_version) between 1 and 64),
  created_at timestamptz not null default now(),
  primary key (id, generated_at),
  -- Writing the same forecast twice must not duplicate it.
  constraint forecast_idempotency_key unique (model_id, generated_at),
  foreign key (person_id) references public.person (id) on delete cascade,
  foreign key (model_id, person_id) references public.ml_model (id, person_id) on delete cascade,
  foreign key (training_run_id, person_id) references public.training_run (id, person_id),
  constraint forecast_data_window check (data_from <= data_to and data_to <= generated_at)
) partition by range (generated_at);
comment on table public.forecast is 'A forecast''s origin: the model and moment it was made from, with its provenance; its points are public.prediction rows and its anchors public.prediction_source rows.';
comment on column public.forecast.generated_at is 'Time the forecast is made from (its latest input reading).';
comment on column public.forecast.owner_id is 'The auth user owning the person (the policies'' key); kept right by trigger person_owner_follows.';
comment on column public.forecast.coverage is 'Nominal coverage of the points'' bands, e.g. 0.8.';
comment on column public.forecast.disclaimer_version is 'Version of the disclaimer text shown with this forecast.';
comment on column public.forecast.code_version is 'Version of the glucokit code that wrote the forecast.';
comment on column public.forecast.data_from is 'Start of the data window the model was trained on.';

create table public.prediction (
  id uuid not null default gen_random_uuid(),
  forecast_id uuid not null,
  person_id uuid not null,
  owner_id uuid not null,
  model_id uuid not null,
  generated_at timestamptz not null,
  target_at timestamptz not null,
  horizon_minutes smallint not null check (horizon_minutes between 5 and 240 and horizon_minutes % 5 = 0),
  value_mg_dl real not null check (value_mg_dl between 10 and 1000),
  lower_mg_dl real not null check (lower_mg_dl >= 0),
  upper_mg_dl real not null check (upper_mg_dl <= 2000),
  primary key (id, generated_at),
  constraint prediction_idempotency_key unique (forecast_id, horizon_minutes, generated_at),
  foreign key (model_id, person_id) references public.ml_model (id, person_id) on delete cascade,
  constraint prediction_target_at check (target_at = generated_at + make_interval(mins => horizon_minutes)),
  constraint prediction_band check (lower_mg_dl <= value_mg_dl and value_mg_dl <= upper_mg_dl)
) partition by range (generated_at);
comment on table public.prediction is 'One point of a forecast (public.forecast): horizon, target time, value and band.';
comment on column public.prediction.owner_id is 'The auth user owning the person (the policies'' key); kept right by trigger person_owner_follows.';

create table public.prediction_source (
  forecast_id uuid not null,
  person_id uuid not null,
  owner_id uuid not null,
  model_id uuid not null,
  generated_at timestamptz not null,
  observation_id uuid not null,
  observation_effective_at timestamptz not null,
  role public.prediction_source_role not null default 'input_window',
  primary key (forecast_id, observation_id, generated_at),
  foreign key (model_id, person_id) references public.ml_model (id, person_id) on delete cascade,
  foreign key (observation_id, observation_effective_at) references public.observation (id, effective_at) on delete cascade
) partition by range (generated_at);
comment on table public.prediction_source is 'Source anchors, once per forecast: the observations every point of the forecast was computed from (FHIR Observation/{observation_id}).';
comment on column public.prediction_source.owner_id is 'The auth user owning the person (the policies'' key); kept right by trigger person_owner_follows.';

-- The latest forecast of a person; the owner's reads.
create index forecast_person_generated_idx on public.forecast (person_id, generated_at desc);
create index forecast_owner_person_generated_idx on public.forecast (owner_id, person_id, generated_at desc);
create index forecast_model_person_idx on public.forecast (model_id, person_id);
create index forecast_training_run_idx on public.forecast (training_run_id, person_id);
-- A forecast's points; a person's points by origin and by target time (matching outcomes).
create index prediction_owner_person_generated_idx on public.prediction (owner_id, person_id, generated_at, horizon_minutes);
create index prediction_person_target_idx on public.prediction (person_id, target_at);
create index prediction_model_person_idx on public.prediction (model_id, person_id);
create index prediction_source_person_idx on public.prediction_source (person_id);
create index prediction_source_owner_person_idx on public.prediction_source (owner_id, person_id);
create index prediction_source_model_person_idx on public.prediction_source (model_id, person_id);
create index prediction_source_observation_idx on public.prediction_source (observation_id, observation_effective_at);

create trigger prediction_source_check_person
  before insert or update on public.prediction_source
  for each row execute function private.check_prediction_source_person();

-- -----------------------------------------------------------------------------
-- Partitions: one a day, in schema `partitions`, sealed by private.seal_partition
-- -----------------------------------------------------------------------------
create table partitions.forecast_default partition of public.forecast default;
create table partitions.prediction_default partition of public.prediction default;
create table partitions.prediction_source_default partition of public.prediction_source default;
select private.seal_partition(format('partitions.%I', t)::regclass)
from unnest(array['forecast_default', 'prediction_default', 'prediction_source_default']) as t;

/**
 * Creates the daily partitions of public.forecast, public.prediction and
 * public.prediction_source covering [p_from, p_to) that do not exist yet,
 * moving any rows of those days out of the default partitions first.
 */
create or replace function private.create_forecast_partitions(p_from date, p_to date) returns integer
  language plpgsql volatile
  set search_path = ''
as $$
declare
  day date := p_from;
  parent text;
  partition_name text;
  created integer := 0;
begin
  while day < p_to loop
    foreach parent in array array['forecast', 'prediction', 'prediction_source'] loop
      partition_name := format('%s_d%s', parent, to_char(day, 'YYYYMMDD'));
      if to_regclass(format('partitions.%I', partition_name)) is null then
        execute format('create temporary table forecast_moving (like partitions.%I) on commit drop', parent || '_default');
        execute format(
          'with moved as (delete from partitions.%I where generated_at >= %L and generated_at < %L returning *)
           insert into forecast_moving select * from moved',
          parent || '_default', day, day + 1);
        execute format('create table partitions.%I partition of public.%I for values from (%L) to (%L)',
          partition_name, parent, day, day + 1);
        perform private.seal_partition(format('partitions.%I', partition_name)::regclass);
        execute format('insert into public.%I select * from forecast_moving', parent);
        drop table forecast_moving;
        created := created + 1;
      end if;
    end loop;
    day := day + 1;
  end loop;
  return created;
end
$$;
comment on function private.create_forecast_partitions(date, date) is 'Maintenance: create the daily forecast, prediction and prediction_source partitions of [p_from, p_to).';
revoke all on function private.create_forecast_partitions(date, date) from public;

-- Every day that has forecasts, and the week ahead.
select private.create_forecast_partitions(d, d + 1)
from (
  select distinct (generated_at at time zone 'UTC')::date as d from private.prediction_v1
  union
  select g::date from generate_series(current_date, current_date + 7, interval '1 day') as g
) as days;

-- -----------------------------------------------------------------------------
-- The rows move over
-- -----------------------------------------------------------------------------
insert into public.forecast (
  id, person_id, owner_id, model_id, generated_at, coverage, disclaimer_version, model_version,
  training_run_id, data_from, data_to, code_version, created_at
)
select distinct on (p.model_id, p.generated_at)
  gen_random_uuid(), p.person_id, pe.owner_id, p.model_id, p.generated_at, p.coverage, p.disclaimer_version,
  p.model_version, p.training_run_id, p.data_from, p.data_to, p.code_version, p.created_at
from private.prediction_v1 p
join public.person pe on pe.id = p.person_id
order by p.model_id, p.generated_at, p.created_at;

insert into public.prediction (
  id, forecast_id, person_id, owner_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl,
  lower_mg_dl, upper_mg_dl
)
select p.id, f.id, p.person_id, f.owner_id, p.model_id, p.generated_at, p.target_at, p.horizon_minutes,
  p.value_mg_dl, p.lower_mg_dl, p.upper_mg_dl
from private.prediction_v1 p
join public.forecast f on f.model_id = p.model_id and f.generated_at = p.generated_at;

insert into public.prediction_source (
  forecast_id, person_id, owner_id, model_id, generated_at, observation_id, observation_effective_at, role
)
select distinct on (f.id, s.observation_id)
  f.id, f.person_id, f.owner_id, f.model_id, f.generated_at, s.observation_id, s.observation_effective_at, s.role
from private.prediction_source_v1 s
join private.prediction_v1 p on p.id = s.prediction_id
join public.forecast f on f.model_id = p.model_id and f.generated_at = p.generated_at
order by f.id, s.observation_id, s.role;

-- -----------------------------------------------------------------------------
-- Outcomes and feedback carry what their rollups need
-- -----------------------------------------------------------------------------
alter table public.forecast_outcome
  add column owner_id uuid,
  add column generated_at timestamptz,
  add column model_version text,
  add column coverage real;
update public.forecast_outcome o
set owner_id = f.owner_id, generated_at = p.generated_at, model_version = f.model_version, coverage = f.coverage
from public.prediction p
join public.forecast f on f.id = p.forecast_id and f.generated_at = p.generated_at
where p.id = o.prediction_id;
alter table public.forecast_outcome
  alter column owner_id set not null,
  alter column generated_at set not null,
  alter column model_version set not null,
  alter column coverage set not null,
  add constraint forecast_outcome_coverage check (coverage > 0 and coverage < 1);
comment on column public.forecast_outcome.prediction_id is 'The forecast point (public.prediction.id); no foreign key, so the point may expire (retention) while its outcome stays.';
comment on column public.forecast_outcome.owner_id is 'The auth user owning the person (the policies'' key); kept right by trigger person_owner_follows.';
comment on column public.forecast_outcome.model_version is 'Version of the model that made the forecast.';
comment on column public.forecast_outcome.coverage is 'Nominal coverage of the forecast''s band.';
create index forecast_outcome_owner_person_idx on public.forecast_outcome (owner_id, person_id);

alter table public.forecast_feedback
  add column model_id uuid,
  add column model_version text;
update public.forecast_feedback b
set model_id = f.model_id, model_version = f.model_version
from public.prediction p
join public.forecast f on f.id = p.forecast_id and f.generated_at = p.generated_at
where p.id = b.prediction_id;
alter table public.forecast_feedback
  alter column model_id set not null,
  alter column model_version set not null,
  add foreign key (model_id, person_id) references public.ml_model (id, person_id) on delete cascade;
comment on column public.forecast_feedback.model_id is 'The model of the rated point (set from the point on insert).';
comment on column public.forecast_feedback.model_version is 'The version of the model of the rated point (set from the point on insert).';
create index forecast_feedback_model_person_idx on public.forecast_feedback (model_id, person_id);
drop index public.forecast_feedback_prediction_person_idx;

/**
 * Feedback names a point of its person that exists (the foreign key did that
 * before points could expire), and takes the point's model from it.
 */
create or replace function private.feedback_takes_point() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
begin
  select f.model_id, f.model_version into new.model_id, new.model_version
  from public.prediction p
  join public.forecast f on f.id = p.forecast_id and f.generated_at = p.generated_at
  where p.id = new.prediction_id and p.person_id = new.person_id;
  if not found then
    raise exception 'forecast point % is not a point of person %', new.prediction_id, new.person_id
      using errcode = 'foreign_key_violation', constraint = 'forecast_feedback_point';
  end if;
  return new;
end
$$;
comment on function private.feedback_takes_point() is 'Trigger: feedback names an existing point of its person, and takes its model.';
revoke all on function private.feedback_takes_point() from public;

create trigger forecast_feedback_takes_point
  before insert on public.forecast_feedback
  for each row execute function private.feedback_takes_point();

drop table private.prediction_source_v1;
drop table private.prediction_v1;

-- -----------------------------------------------------------------------------
-- Rollups, from outcomes alone where they are outcome-based
-- -----------------------------------------------------------------------------
create view public.model_daily_accuracy with (security_invoker = true) as
with due as (
  select p.person_id, p.model_id, f.model_version, (p.target_at at time zone pe.time_zone)::date as day,
    p.horizon_minutes, count(*) as forecasts, avg(f.coverage) as nominal_coverage
  from public.prediction p
  join public.forecast f on f.id = p.forecast_id and f.generated_at = p.generated_at
  join public.person pe on pe.id = p.person_id
  where p.target_at <= now()
  group by 1, 2, 3, 4, 5
), matched as (
  select o.person_id, o.model_id, o.model_version, (o.target_at at time zone pe.time_zone)::date as day,
    o.horizon_minutes,
    count(*) as outcomes,
    avg(abs(o.error_mg_dl)) as mae_mg_dl,
    sqrt(avg(o.error_mg_dl * o.error_mg_dl)) as rmse_mg_dl,
    -- Mean absolute relative difference, percent of the reading.
    100 * avg(abs(o.error_mg_dl) / o.observed_mg_dl) as mard_percent,
    avg(o.inside_band::integer) as coverage,
    avg(o.coverage) as nominal_coverage,
    sqrt(avg(o.error_mg_dl * o.error_mg_dl * private.grmse_penalty(o.observed_mg_dl, o.predicted_mg_dl)))
      as grmse_mg_dl,
    count(*) filter (where o.observed_mg_dl < 70) as lows,
    count(*) filter (where o.predicted_mg_dl < 70) as lows_forecast,
    count(*) filter (where o.observed_mg_dl < 70 and o.predicted_mg_dl < 70) as lows_detected,
    count(*) filter (where o.observed_mg_dl > 180) as highs,
    count(*) filter (where o.predicted_mg_dl > 180) as highs_forecast,
    count(*) filter (where o.observed_mg_dl > 180 and o.predicted_mg_dl > 180) as highs_detected
  from public.forecast_outcome o
  join public.person pe on pe.id = o.person_id
  where o.target_at <= now()
  group by 1, 2, 3, 4, 5
)
select
  coalesce(m.person_id, d.person_id) as person_id,
  coalesce(m.model_id, d.model_id) as model_id,
  coalesce(m.model_version, d.model_version) as model_version,
  coalesce(m.day, d.day) as day,
  coalesce(m.horizon_minutes, d.horizon_minutes) as horizon_minutes,
  coalesce(d.forecasts, 0) as forecasts,
  coalesce(m.outcomes, 0) as outcomes,
  m.mae_mg_dl, m.rmse_mg_dl, m.mard_percent, m.coverage,
  coalesce(m.nominal_coverage, d.nominal_coverage) as nominal_coverage,
  m.grmse_mg_dl,
  coalesce(m.lows, 0) as lows, coalesce(m.lows_forecast, 0) as lows_forecast,
  coalesce(m.lows_detected, 0) as lows_detected, coalesce(m.highs, 0) as highs,
  coalesce(m.highs_forecast, 0) as highs_forecast, coalesce(m.highs_detected, 0) as highs_detected
from matched m
full join due d
  on d.person_id = m.person_id and d.model_id = m.model_id and d.model_version = m.model_version
  and d.day = m.day and d.horizon_minutes = m.horizon_minutes;
comment on view public.model_daily_accuracy is
  'Per model version, local day and horizon: forecast points due that are still held (full-resolution retention), outcomes matched, MAE, RMSE, MARD (%), band coverage and its nominal level, gRMSE, and the readings below 70 / above 180 mg/dL, the forecasts there and both. Every outcome-based column is computed from forecast_outcome alone and outlives the points'' retention.';

create view public.model_feedback_summary with (security_invoker = true) as
select
  b.person_id,
  b.model_id,
  b.model_version,
  count(*) filter (where b.rating = 'up') as thumbs_up,
  count(*) filter (where b.rating = 'down') as thumbs_down,
  count(b.comment) as comments,
  max(b.updated_at) as last_feedback_at
from public.forecast_feedback b
group by b.person_id, b.model_id, b.model_version;
comment on view public.model_feedback_summary is 'Per model version: thumbs up and down, comments, and the latest feedback.';

revoke all on public.model_daily_accuracy, public.model_feedback_summary from anon, authenticated, service_role;
grant select on public.model_daily_accuracy, public.model_feedback_summary to authenticated, glucokit_worker, service_role;

-- -----------------------------------------------------------------------------
-- The owner column: written by the worker, kept right on an owner change
-- -----------------------------------------------------------------------------
create or replace function private.worker_owner_id() returns uuid
  language sql stable security definer
  set search_path = ''
as $$
  select p.owner_id from public.person p where p.id = private.worker_person_id()
$$;
comment on function private.worker_owner_id() is 'Worker: the auth user owning the person in scope (null without a scope).';
revoke all on function private.worker_owner_id() from public;
grant execute on function private.worker_owner_id() to glucokit_worker;

create or replace function private.person_owner_follows() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
begin
  update public.forecast set owner_id = new.owner_id where person_id = new.id;
  update public.prediction set owner_id = new.owner_id where person_id = new.id;
  update public.prediction_source set owner_id = new.owner_id where person_id = new.id;
  update public.forecast_outcome set owner_id = new.owner_id where person_id = new.id;
  return null;
end
$$;
comment on function private.person_owner_follows() is 'Trigger: a person''s new owner becomes the owner_id of their forecasts, points, anchors and outcomes.';
revoke all on function private.person_owner_follows() from public;

create trigger person_owner_follows
  after update of owner_id on public.person
  for each row when (old.owner_id is distinct from new.owner_id)
  execute function private.person_owner_follows();

-- -----------------------------------------------------------------------------
-- Grants and row-level security
-- -----------------------------------------------------------------------------
alter table public.forecast enable row level security;
alter table public.prediction enable row level security;
alter table public.prediction_source enable row level security;

revoke all on public.forecast, public.prediction, public.prediction_source from anon, authenticated, service_role;
grant select on public.forecast, public.prediction, public.prediction_source to authenticated;
grant select, insert on public.forecast, public.prediction, public.prediction_source to glucokit_worker;
grant all on public.forecast, public.prediction, public.prediction_source to service_role;

create policy "Forecasts are visible to the owner of the person" on public.forecast
  for select to authenticated
  using (owner_id = (select auth.uid()));

create policy "Workers read forecasts of the person in their scope" on public.forecast
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));

create policy "Workers write forecasts of the person in their scope" on public.forecast
  for insert to glucokit_worker
  with check (person_id = (select private.worker_person_id()) and owner_id = (select private.worker_owner_id()));

create policy "Predictions are visible to the owner of the person" on public.prediction
  for select to authenticated
  using (owner_id = (select auth.uid()));

create policy "Workers read predictions of the person in their scope" on public.prediction
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));

create policy "Workers write predictions of the person in their scope" on public.prediction
  for insert to glucokit_worker
  with check (person_id = (select private.worker_person_id()) and owner_id = (select private.worker_owner_id()));

create policy "Prediction sources are visible to the owner of the person" on public.prediction_source
  for select to authenticated
  using (owner_id = (select auth.uid()));

create policy "Workers read prediction sources of the person in their scope" on public.prediction_source
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));

create policy "Workers anchor predictions of the person in their scope" on public.prediction_source
  for insert to glucokit_worker
  with check (person_id = (select private.worker_person_id()) and owner_id = (select private.worker_owner_id()));

drop policy "Owners read the outcomes of their persons' forecasts" on public.forecast_outcome;
create policy "Owners read the outcomes of their persons' forecasts" on public.forecast_outcome
  for select to authenticated
  using (owner_id = (select auth.uid()));

drop policy "Workers record outcomes of the person in their scope" on public.forecast_outcome;
create policy "Workers record outcomes of the person in their scope" on public.forecast_outcome
  for insert to glucokit_worker
  with check (person_id = (select private.worker_person_id()) and owner_id = (select private.worker_owner_id()));
