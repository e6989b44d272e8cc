-- Experiments: variants, assignments, exposures and the analysis (glucokit.modelops.experiments).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: experiment_assign
-- Worker scoped to a person: their variant in the running experiment, assigning them first (none: no row).
select experiment_key, variant, families, assigned_at from private.assign_experiment(%(person_id)s);

-- name: experiment_log_exposure
-- Owner: log that a forecast curve of their person was served; the number of exposures logged.
select private.log_forecast_exposure(%(person_id)s, %(model_id)s, %(generated_at)s);

-- name: experiment_insert
-- Operator: a draft experiment with its decision rule's parameters.
insert into public.experiment (key, description, horizon_minutes, alpha, mixture_sd, min_points_per_person,
  min_persons_per_variant, max_persons_per_variant)
values (%(key)s, %(description)s, %(horizon_minutes)s, %(alpha)s, %(mixture_sd)s, %(min_points_per_person)s,
  %(min_persons_per_variant)s, %(max_persons_per_variant)s)
returning id;

-- name: experiment_insert_variant
-- Operator: one variant of a draft experiment.
insert into public.experiment_variant (experiment_id, name, families, weight)
values (%(experiment_id)s, %(name)s, %(families)s, %(weight)s);

-- name: experiment_select
-- The experiment with the given key, or every experiment (key null), newest first, each with its variants.
select e.id, e.key, e.description, e.status::text, e.horizon_minutes, e.alpha, e.mixture_sd, e.min_points_per_person,
  e.min_persons_per_variant, e.max_persons_per_variant, e.created_at, e.started_at, e.stopped_at, e.decided_at,
  e.decision,
  (select jsonb_agg(jsonb_build_object('name', v.name, 'families', v.families, 'weight', v.weight)
                    order by v.name collate "C")
   from public.experiment_variant v where v.experiment_id = e.id)
from public.experiment e
where %(key)s::text is null or e.key = %(key)s
order by e.created_at desc, e.key;

-- name: experiment_start
-- Operator: a draft experiment starts assigning persons and logging exposures.
update public.experiment set status = 'running', started_at = now() where id = %(id)s and status = 'draft';

-- name: experiment_stop
-- Operator: a running experiment stops without a decision.
update public.experiment set status = 'stopped', stopped_at = now() where id = %(id)s and status = 'running';

-- name: experiment_decide
-- Operator: a started experiment ends with the analysis that decided it.
update public.experiment
set status = 'decided', stopped_at = coalesce(stopped_at, now()), decided_at = now(), decision = %(decision)s
where id = %(id)s and status in ('running', 'stopped');

-- name: experiment_counts
-- Per variant of an experiment: persons assigned, persons exposed, persons with a contaminated exposure.
select a.variant, count(*) as assigned,
  count(*) filter (where exists (
    select from public.experiment_exposure x where x.experiment_id = a.experiment_id and x.person_id = a.person_id
  )) as exposed,
  count(*) filter (where exists (
    select from public.experiment_exposure x
    where x.experiment_id = a.experiment_id and x.person_id = a.person_id and x.contaminated
  )) as contaminated
from public.experiment_assignment a
where a.experiment_id = %(experiment_id)s
group by a.variant
order by a.variant collate "C";

-- name: experiment_person_outcomes
-- Each exposed person of an experiment: their first contamination, and the errors at the horizon of the
-- forecasts of the clean models they were served, up to the experiment's stop.
with exposed as (
  select x.person_id, x.variant,
    (array_agg(x.contamination order by x.served_at) filter (where x.contaminated))[1] as contamination,
    array_agg(distinct x.model_id) filter (where not x.contaminated) as models
  from public.experiment_exposure x
  where x.experiment_id = %(experiment_id)s
  group by x.person_id, x.variant
)
select e.person_id, e.variant, e.contamination, count(o.prediction_id)::integer as points,
  avg(abs(o.error_mg_dl)) as mae, avg(o.error_mg_dl::double precision ^ 2) as mse,
  avg(o.inside_band::integer)::double precision as coverage
from exposed e
left join public.forecast_outcome o
  on o.person_id = e.person_id and o.model_id = any (e.models) and o.horizon_minutes = %(horizon)s
  and (%(until)s::timestamptz is null or o.target_at <= %(until)s)
group by e.person_id, e.variant, e.contamination
order by e.variant, e.person_id;
