-- Consent per purpose (glucokit.privacy.consent, glucokit.privacy.rights).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: has_consent
-- Whether a person's consent to a purpose is in force (workers, unscoped).
select private.has_consent(%(person_id)s, %(purpose)s::public.processing_purpose);

-- name: consent_list
-- A person's consent records, in the order of the purposes.
select c.purpose::text as purpose, c.granted_at, c.withdrawn_at, c.delete_models
from public.consent c where c.person_id = %(person_id)s order by c.purpose;

-- name: consent_grant
-- Gives consent to purposes, or gives it again after a withdrawal (a consent in force keeps its date).
insert into public.consent (person_id, purpose)
select %(person_id)s, purpose::public.processing_purpose from unnest(%(purposes)s::text[]) as purpose
on conflict (person_id, purpose) do update
  set granted_at = now(), withdrawn_at = null, delete_models = false
  where public.consent.withdrawn_at is not null;

-- name: consent_withdraw
-- Withdraws consent to purposes that is in force; delete_models asks for the models' removal too.
update public.consent set withdrawn_at = now(), delete_models = %(delete_models)s
where person_id = %(person_id)s and purpose = any (%(purposes)s::public.processing_purpose[]) and withdrawn_at is null;
