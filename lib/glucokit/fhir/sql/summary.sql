-- The CGM summary (glucokit.fhir.summary).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: cgm_summary
-- The person's CGM summary over [start, end), under the caller's row-level security (public.cgm_summary).
select s.period_from, s.period_to, s.readings, s.reading_interval_seconds, s.expected_readings,
  s.sensor_active_percent, s.days_of_wear, s.mean_mg_dl, s.sd_mg_dl, s.cv_percent, s.gmi_percent,
  s.very_low_percent, s.low_percent, s.in_range_percent, s.high_percent, s.very_high_percent, s.sufficient,
  s.reason
from public.cgm_summary(%(person_id)s, %(start)s, %(end)s) as s;
