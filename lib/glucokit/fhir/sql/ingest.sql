-- FHIR ingest: staged batches into public.observation, rejected entries into quarantine (glucokit.fhir.ingest).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: ingest_create_stage
-- The session's staging table for ingest batches: COPY cannot write into a
-- table under row-level security, so batches land here first and reach
-- public.observation through an INSERT that the policies check.
create temporary table if not exists observation_stage (
  status text, category text, code_system text, code text, value numeric, unit text,
  original_value numeric, original_unit text, effective_at timestamptz, issued_at timestamptz,
  device text, source_system text, source_id text, resource text
) on commit delete rows;

-- name: ingest_copy_stage
-- Binary COPY of one batch into the staging table.
copy pg_temp.observation_stage (
  status, category, code_system, code, value, unit, original_value, original_unit, effective_at, issued_at,
  device, source_system, source_id, resource
) from stdin (format binary);

-- name: ingest_move_corrections
-- A correction (amended, corrected, entered-in-error) may move a reading in
-- time: the version at the old time goes, the staged one replaces it.
delete from public.observation o
using pg_temp.observation_stage s
where s.status in ('amended', 'corrected', 'entered-in-error')
  and o.person_id = %(person_id)s
  and o.source_system = s.source_system
  and o.source_id = s.source_id
  and o.effective_at <> s.effective_at;

-- name: ingest_batch_is_new
-- Whether the person has no reading stored in the batch's span of time: then
-- ingest_insert_stage_new writes the batch (one check per batch, not per row).
select not exists (
  select from public.observation
  where person_id = %(person_id)s and effective_at between %(first)s and %(last)s
);

-- name: ingest_insert_stage_new
-- A batch of readings none of which is stored yet, as a plain INSERT: about a
-- fifth cheaper per row than ON CONFLICT's speculative insertion (measured with
-- bench/ingest.py's data). A reading that another transaction stores at the
-- same moment makes it fail with a unique violation; the batch is then written
-- again with ingest_insert_stage.
insert into public.observation (
  person_id, status, category, code_system, code, value, unit, original_value, original_unit, effective_at,
  issued_at, device, source_system, source_id, resource
)
select
  %(person_id)s, status, category, code_system, code, value, unit, original_value, original_unit, effective_at,
  issued_at, device, source_system, source_id, resource::jsonb
from pg_temp.observation_stage;

-- name: ingest_insert_stage
-- New readings of the batch; the ones already stored are left to ingest_update_stage.
insert into public.observation (
  person_id, status, category, code_system, code, value, unit, original_value, original_unit, effective_at,
  issued_at, device, source_system, source_id, resource
)
select
  %(person_id)s, status, category, code_system, code, value, unit, original_value, original_unit, effective_at,
  issued_at, device, source_system, source_id, resource::jsonb
from pg_temp.observation_stage
on conflict (person_id, source_system, source_id, effective_at) do nothing;

-- name: ingest_update_stage
-- Readings stored before whose source sent a different version: the new one wins.
update public.observation o
set status = s.status, category = s.category, code_system = s.code_system, code = s.code, value = s.value,
  unit = s.unit, original_value = s.original_value, original_unit = s.original_unit, issued_at = s.issued_at,
  device = s.device, resource = s.resource::jsonb
from pg_temp.observation_stage s
where o.person_id = %(person_id)s
  and o.source_system = s.source_system
  and o.source_id = s.source_id
  and o.effective_at = s.effective_at
  and (o.status, o.category, o.code_system, o.code, o.value, o.unit, o.original_value, o.original_unit,
       o.issued_at, o.device, o.resource)
    is distinct from
      (s.status, s.category, s.code_system, s.code, s.value, s.unit, s.original_value, s.original_unit,
       s.issued_at, s.device, s.resource::jsonb);

-- name: quarantine_entry
-- One rejected entry, with its errors and payload as received.
insert into public.quarantined_entry (person_id, source, entry_index, errors, payload)
values (%(person_id)s, %(source)s, %(entry_index)s, %(errors)s, %(payload)s);
