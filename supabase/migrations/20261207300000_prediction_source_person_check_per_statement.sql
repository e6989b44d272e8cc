/**
 * -----------------------------------------------------------------------------
 * A source anchor's person is checked once per statement
 * -----------------------------------------------------------------------------
 * Trigger prediction_source_check_person ran a PL/pgSQL function for every
 * anchor row: ~61 calls per forecast (its input hour and covariates), about a
 * quarter of the database CPU of the forecast writer's insert
 * (bench/forecast_pass.py). The same check now runs once per statement, over
 * the statement's new rows: an anchor whose observation is not its person's
 * fails the whole statement with the same error (foreign_key_violation,
 * "observation ... does not belong to person ...").
 */
create or replace function private.check_prediction_source_persons() returns trigger
  language plpgsql security definer
  set search_path = ''
as $$
declare
  stray record;
begin
  select a.observation_id, a.person_id into stray
  from anchored a
  where not exists (
    select from public.observation o
    where o.id = a.observation_id
      and o.effective_at = a.observation_effective_at
      and o.person_id = a.person_id
  )
  limit 1;
  if found then
    raise exception 'observation % does not belong to person %', stray.observation_id, stray.person_id
      using errcode = 'foreign_key_violation';
  end if;
  return null;
end
$$;
comment on function private.check_prediction_source_persons() is 'Trigger: the source anchors a statement writes stay within their prediction''s person.';
revoke all on function private.check_prediction_source_persons() from public, anon, authenticated, service_role;

drop trigger prediction_source_check_person on public.prediction_source;
drop function private.check_prediction_source_person();

-- A trigger with a transition table has one event.
create trigger prediction_source_check_person
  after insert on public.prediction_source
  referencing new table as anchored
  for each statement execute function private.check_prediction_source_persons();

create trigger prediction_source_check_person_update
  after update on public.prediction_source
  referencing new table as anchored
  for each statement execute function private.check_prediction_source_persons();
