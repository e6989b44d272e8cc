-- Feedback on forecast points (glucokit.api.app).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: api_upsert_feedback
-- The signed-in user's thumbs up/down on a forecast point they can see; sending again replaces it (the
-- forecast_feedback_takes_point trigger fills in the point's model).
insert into public.forecast_feedback (prediction_id, person_id, rating, comment)
select p.id, p.person_id, %(rating)s::public.feedback_rating, %(comment)s
from public.prediction p
where p.id = %(prediction_id)s
on conflict (prediction_id, user_id) do update
  set rating = excluded.rating, comment = excluded.comment
returning id, prediction_id, rating::text as rating, comment, created_at, updated_at;
