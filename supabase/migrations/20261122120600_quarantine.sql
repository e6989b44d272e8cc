/**
 * -----------------------------------------------------------------------------
 * Quarantine of rejected input
 * -----------------------------------------------------------------------------
 * Ingest keeps every valid entry of a request and puts each rejected one here,
 * with the errors that rejected it and the payload exactly as received, so
 * nothing a user sent is silently lost. The owner can read and discard their
 * quarantined entries (and fix and resend them); nobody can change one.
 */

create table public.quarantined_entry (
  id uuid primary key default gen_random_uuid(),
  person_id uuid not null references public.person (id) on delete cascade,
  received_at timestamptz not null default now(),
  -- Where the entry came from: a file name or an API request.
  source text not null check (char_length(source) between 1 and 1024),
  -- Position of the entry in its bundle (0-based) or line of its NDJSON file
  -- (1-based); null when the whole document was rejected.
  entry_index integer check (entry_index >= 0),
  -- [{"field": "...", "reason": "..."}, ...]
  errors jsonb not null check (jsonb_typeof(errors) = 'array' and jsonb_array_length(errors) > 0),
  payload text not null
);

comment on table public.quarantined_entry is 'Input entries that ingest rejected, with their errors and the payload as received.';
comment on column public.quarantined_entry.errors is 'Why the entry was rejected: [{"field": ..., "reason": ...}].';
comment on column public.quarantined_entry.payload is 'The rejected entry (or document) exactly as received.';

-- The owner's review: one person, newest first (and the person foreign key).
create index quarantined_entry_person_received_idx on public.quarantined_entry (person_id, received_at);

alter table public.quarantined_entry enable row level security;

revoke all on public.quarantined_entry from anon, authenticated, service_role;
grant select, insert, delete on public.quarantined_entry to authenticated;
grant all on public.quarantined_entry to service_role;

create policy "Quarantined entries are visible to the owner of the person" on public.quarantined_entry
  for select to authenticated
  using (person_id in (select private.owned_person_ids()));

create policy "Ingest quarantines entries for the owner of the person" on public.quarantined_entry
  for insert to authenticated
  with check (person_id in (select private.owned_person_ids()));

create policy "Owners can discard quarantined entries of their persons" on public.quarantined_entry
  for delete to authenticated
  using (person_id in (select private.owned_person_ids()));
