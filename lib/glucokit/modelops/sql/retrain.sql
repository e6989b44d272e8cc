-- Retraining one person: their data and their consent (glucokit.modelops.retrain).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: retrain_person
-- The scoped person's owner and time zone.
select owner_id, time_zone from public.person where id = %(person_id)s;

-- name: retrain_person_readings
-- The scoped person's readings of the given codes that are valid results, oldest first.
select code, effective_at, value
from public.observation
where person_id = %(person_id)s and code = any(%(codes)s) and status <> all(%(withdrawn)s)
order by effective_at;

-- name: assert_consent
-- Worker: fails the transaction when the scoped person's consent to the scope's purpose is gone.
select private.assert_consent();
