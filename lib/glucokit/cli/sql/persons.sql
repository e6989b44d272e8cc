-- The operator's CLI acting for a person's owner (glucokit.cli.common).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: person_owner
-- The user who owns a person (for the operator's CLI, which acts on the owner's behalf).
select owner_id from public.person where id = %(person_id)s;
