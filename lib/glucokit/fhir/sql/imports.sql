-- Importers of other exports (glucokit.fhir.importers): what they need to know about the person.
-- Named queries: see lib/glucokit/db/queries.py.

-- name: import_person_time_zone
-- The person's IANA time zone, where the current role sees the person (for a user: owns it).
select time_zone from public.person where id = %(person_id)s;

-- name: import_newest_reading
-- The newest stored reading from one source system: where a resumed pull starts.
select max(effective_at) from public.observation
where person_id = %(person_id)s and source_system = %(source_system)s;
