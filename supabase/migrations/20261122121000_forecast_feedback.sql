/**
 * -----------------------------------------------------------------------------
 * Feedback on forecasts
 * -----------------------------------------------------------------------------
 * The owner of a person can rate each forecast point of that person: thumbs
 * up or down, with an optional comment. A user gives at most one feedback per
 * point; sending it again replaces it
 * (insert ... on conflict (prediction_id, user_id) do update). The user reads,
 * changes and withdraws their own feedback; workers read the feedback of the
 * person in their scope (forecast monitoring) and write none.
 */

create type public.feedback_rating as enum ('up', 'down');
comment on type public.feedback_rating is 'A user''s verdict on a forecast point: thumbs up or down.';

create table public.forecast_feedback (
  id uuid primary key default gen_random_uuid(),
  prediction_id uuid not null,
  person_id uuid not null,
  user_id uuid not null default auth.uid() references auth.users (id) on delete cascade,
  rating public.feedback_rating not null,
  comment text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- One feedback per user and point: the key of the upsert. It starts with
  -- user_id, so it also serves the auth.users foreign key and the policies.
  constraint forecast_feedback_one_per_user unique (user_id, prediction_id),
  -- The point must be a forecast of the same person.
  foreign key (prediction_id, person_id) references public.prediction (id, person_id) on delete cascade,
  constraint forecast_feedback_comment_length check (char_length(comment) <= 2000),
  constraint forecast_feedback_comment_not_blank check (comment ~ '\S')
);
comment on table public.forecast_feedback is 'A user''s thumbs up or down, with an optional comment, on one forecast point of a person they own.';
comment on column public.forecast_feedback.person_id is 'The person of the forecast point (the composite foreign key keeps it the prediction''s own).';
comment on column public.forecast_feedback.user_id is 'The auth user who gave the feedback; defaults to the caller.';
comment on column public.forecast_feedback.comment is 'Optional free text, at most 2000 characters and not blank.';
comment on column public.forecast_feedback.updated_at is 'Time of the latest change (a re-sent feedback replaces the rating and comment).';

-- A person's feedback in time order (and the policies' person column).
create index forecast_feedback_person_created_idx on public.forecast_feedback (person_id, created_at);
-- Serves the prediction foreign key (its cascade).
create index forecast_feedback_prediction_person_idx on public.forecast_feedback (prediction_id, person_id);

create trigger forecast_feedback_touch_updated_at
  before update on public.forecast_feedback
  for each row execute function private.touch_updated_at();

-- -----------------------------------------------------------------------------
-- Grants and row-level security
-- -----------------------------------------------------------------------------
-- Users give feedback as themselves on their own persons' forecasts, and may
-- change only its rating and comment; workers only read it.
alter table public.forecast_feedback enable row level security;

revoke all on public.forecast_feedback from anon, authenticated, service_role;
grant select, delete on public.forecast_feedback to authenticated;
grant insert (prediction_id, person_id, user_id, rating, comment) on public.forecast_feedback to authenticated;
grant update (rating, comment) on public.forecast_feedback to authenticated;
grant select on public.forecast_feedback to glucokit_worker;
grant all on public.forecast_feedback to service_role;

create policy "Feedback is visible to the user who gave it" on public.forecast_feedback
  for select to authenticated
  using (user_id = (select auth.uid()) and person_id in (select private.owned_person_ids()));

create policy "Owners give feedback on forecasts of their persons" on public.forecast_feedback
  for insert to authenticated
  with check (user_id = (select auth.uid()) and person_id in (select private.owned_person_ids()));

create policy "Users change their feedback" on public.forecast_feedback
  for update to authenticated
  using (user_id = (select auth.uid()) and person_id in (select private.owned_person_ids()))
  with check (user_id = (select auth.uid()) and person_id in (select private.owned_person_ids()));

create policy "Users withdraw their feedback" on public.forecast_feedback
  for delete to authenticated
  using (user_id = (select auth.uid()) and person_id in (select private.owned_person_ids()));

create policy "Workers read feedback of the person in their scope" on public.forecast_feedback
  for select to glucokit_worker
  using (person_id = (select private.worker_person_id()));
