-- Day patterns (glucokit.modelops.patterns).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: patterns_person
-- The scoped person's time zone, their local date today, and their newest day pattern's day (null: none).
select p.time_zone, (now() at time zone p.time_zone)::date,
  (select max(d.day) from public.day_pattern d where d.person_id = p.id)
from public.person p
where p.id = %(person_id)s;

-- name: patterns_readings
-- The scoped person's valid CGM readings in [since, until) (since null: from the first), oldest first.
select effective_at, value
from public.observation
where person_id = %(person_id)s and code = any(%(codes)s) and status <> all(%(withdrawn)s)
  and (%(since)s::timestamptz is null or effective_at >= %(since)s) and effective_at < %(until)s
order by effective_at;

-- name: patterns_upsert
-- Writes the scoped person's day patterns; a day already stored is replaced.
insert into public.day_pattern (person_id, day, source, embedding, readings, filled_slots, computed_at)
select %(person_id)s, d.day, %(source)s, d.embedding::extensions.vector, d.readings, d.filled_slots, now()
from unnest(%(days)s::date[], %(embeddings)s::text[], %(readings)s::smallint[], %(filled_slots)s::smallint[])
  as d(day, embedding, readings, filled_slots)
on conflict (person_id, day) do update
  set source = excluded.source, embedding = excluded.embedding, readings = excluded.readings,
    filled_slots = excluded.filled_slots, computed_at = excluded.computed_at;

-- name: patterns_remove
-- Removes the scoped person's day patterns from a day on (null: all days) that are not among those kept.
delete from public.day_pattern
where person_id = %(person_id)s and (%(from)s::date is null or day >= %(from)s) and day <> all(%(keep)s::date[]);

-- name: patterns_similar
-- The person's days nearest to one of their days by profile (exact: a join, so no index orders it), nearest
-- first; the distance as the root mean square difference in mg/dL.
select d.day, (d.embedding operator(extensions.<->) q.embedding) / %(scale)s as rms_difference_mg_dl, d.readings,
  d.filled_slots
from public.day_pattern q
join public.day_pattern d on d.person_id = q.person_id and d.day <> q.day
where q.person_id = %(person_id)s and q.day = %(day)s
order by d.embedding operator(extensions.<->) q.embedding, d.day
limit %(limit)s;

-- name: patterns_day
-- Whether the current role sees the person's pattern of a day.
select 1 from public.day_pattern where person_id = %(person_id)s and day = %(day)s;
