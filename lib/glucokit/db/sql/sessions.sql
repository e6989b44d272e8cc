-- Sessions: what the current role sees of a person (glucokit.db.sessions, and the API's reads).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: person_visible
-- True when the current role sees the person (for a user: owns it), and the database's clock.
select exists (select from public.person where id = %(person_id)s), now();
