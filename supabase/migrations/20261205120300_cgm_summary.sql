/**
 * -----------------------------------------------------------------------------
 * CGM summary of a person and a period
 * -----------------------------------------------------------------------------
 * public.cgm_summary(person_id, from, to) returns the figures of the HL7 CGM
 * Implementation Guide's CGM Summary (STU1, http://hl7.org/fhir/uv/cgm) over
 * the person's valid CGM readings in [from, to) (`to` is cut at now()):
 *
 * - times in ranges, as percentages of the readings: < 54, 54 to < 70,
 *   70 to 180, > 180 to 250 and > 250 mg/dL (the international consensus on
 *   time in range, Battelino et al., Diabetes Care 2019;42:1593, whose
 *   integer bounds 54-69, 181-250 this spells for values that arrived in
 *   mmol/L and are not whole mg/dL);
 * - mean glucose, its sample standard deviation and coefficient of variation
 *   (SD / mean, %);
 * - GMI, the glucose management indicator (Bergenstal et al., Diabetes Care
 *   2018;41:2275): GMI (%) = 3.31 + 0.02392 x mean glucose in mg/dL;
 * - days of wear: local days (the person's time zone) with readings;
 * - sensor active %: readings received / readings expected over the period
 *   at the sensor's interval (at most 100). The interval is the median gap
 *   between consecutive readings of the period, kept within 1 to 15 minutes
 *   (Libre 3 to Libre 2's stored readings; Dexcom's is 5), and 5 minutes when
 *   there are fewer than two readings;
 * - sufficient: the consensus asks for at least 14 days with the sensor
 *   active at least 70 % of the time for a representative summary; reason
 *   says which of the two is missing.
 *
 * It runs with the caller's rights (security invoker): row-level security
 * decides which person and readings exist. Only signed-in users may call it;
 * another user's person reads as a missing one.
 */

/**
 * The LOINC codes of CGM readings (private.retrain_config), for functions
 * that run with a user's rights and cannot read the settings table.
 */
create or replace function private.cgm_codes() returns text[]
  language sql stable security definer
  set search_path = ''
as $$
  select c.cgm_codes from private.retrain_config c
$$;
comment on function private.cgm_codes() is 'The LOINC codes of CGM readings (private.retrain_config.cgm_codes).';
revoke all on function private.cgm_codes() from public;
grant execute on function private.cgm_codes() to authenticated;

create or replace function public.cgm_summary(person_id uuid, "from" timestamptz, "to" timestamptz)
returns table (
  period_from timestamptz,
  period_to timestamptz,
  readings bigint,
  reading_interval_seconds double precision,
  expected_readings bigint,
  sensor_active_percent double precision,
  days_of_wear bigint,
  mean_mg_dl double precision,
  sd_mg_dl double precision,
  cv_percent double precision,
  gmi_percent double precision,
  very_low_percent double precision,
  low_percent double precision,
  in_range_percent double precision,
  high_percent double precision,
  very_high_percent double precision,
  sufficient boolean,
  reason text
)
  language plpgsql stable security invoker
  set search_path = ''
as $$
#variable_conflict use_column
declare
  max_period constant interval := interval '90 days';
  -- What the consensus asks of a representative summary.
  min_days constant double precision := 14;
  min_active constant double precision := 70;
  v_person uuid := cgm_summary.person_id;
  v_from timestamptz := cgm_summary."from";
  v_to timestamptz := least(cgm_summary."to", now());
  v_zone text;
begin
  if v_person is null or v_from is null or cgm_summary."to" is null then
    raise exception 'a CGM summary needs a person, from and to' using errcode = 'null_value_not_allowed';
  end if;
  if cgm_summary."to" <= v_from then
    raise exception 'the period is reversed or empty: to (%) must be after from (%)', cgm_summary."to", v_from
      using errcode = 'invalid_parameter_value';
  end if;
  if cgm_summary."to" - v_from > max_period then
    raise exception 'the period is % long: a summary covers at most %', cgm_summary."to" - v_from, max_period
      using errcode = 'invalid_parameter_value';
  end if;
  if v_from >= v_to then
    raise exception 'the period starts in the future (%): there are no readings yet', v_from
      using errcode = 'invalid_parameter_value';
  end if;
  select p.time_zone into v_zone from public.person p where p.id = v_person;
  if not found then
    raise exception 'no person % among yours', v_person using errcode = 'no_data_found';
  end if;

  return query
    with reading as (
      select o.value::double precision as mg_dl, o.effective_at
      from public.observation o
      where o.person_id = v_person
        and o.code_system = 'http://loinc.org'
        and o.code = any (private.cgm_codes())
        and o.status not in ('cancelled', 'entered-in-error')
        and o.effective_at >= v_from
        and o.effective_at < v_to
    ),
    gap as (
      select extract(epoch from r.effective_at - lag(r.effective_at) over (order by r.effective_at)) as seconds
      from reading r
    ),
    sensor as (
      -- greatest() skips nulls: the default goes in first.
      select least(greatest(coalesce(percentile_cont(0.5) within group (order by g.seconds), 300), 60), 900)
        as interval_seconds
      from gap g
      where g.seconds > 0
    ),
    figure as (
      select
        count(*) as readings,
        count(distinct (r.effective_at at time zone v_zone)::date) as days_of_wear,
        avg(r.mg_dl) as mean_mg_dl,
        stddev_samp(r.mg_dl) as sd_mg_dl,
        (100.0 * count(*) filter (where r.mg_dl < 54) / nullif(count(*), 0))::double precision as very_low,
        (100.0 * count(*) filter (where r.mg_dl >= 54 and r.mg_dl < 70) / nullif(count(*), 0))::double precision as low,
        (100.0 * count(*) filter (where r.mg_dl >= 70 and r.mg_dl <= 180) / nullif(count(*), 0))::double precision as in_range,
        (100.0 * count(*) filter (where r.mg_dl > 180 and r.mg_dl <= 250) / nullif(count(*), 0))::double precision as high,
        (100.0 * count(*) filter (where r.mg_dl > 250) / nullif(count(*), 0))::double precision as very_high
      from reading r
    ),
    coverage as (
      select
        s.interval_seconds,
        greatest(floor(extract(epoch from v_to - v_from) / s.interval_seconds), 1)::bigint as expected,
        extract(epoch from v_to - v_from) / 86400 as days
      from sensor s
    ),
    active as (
      select least(100.0 * f.readings / c.expected, 100)::double precision as percent from figure f, coverage c
    )
    select
      v_from, v_to, f.readings, c.interval_seconds, c.expected, a.percent, f.days_of_wear,
      f.mean_mg_dl, f.sd_mg_dl, 100 * f.sd_mg_dl / f.mean_mg_dl, 3.31 + 0.02392 * f.mean_mg_dl,
      f.very_low, f.low, f.in_range, f.high, f.very_high,
      f.readings > 0 and c.days >= min_days and a.percent >= min_active,
      case
        when f.readings = 0 then 'no CGM readings in the period'
        when c.days >= min_days and a.percent >= min_active then
          format('representative: %s days with the sensor active %s %% of the time (at least %s days and %s %% are recommended)',
            round(c.days::numeric, 1), round(a.percent::numeric, 1), min_days, min_active)
        else concat_ws('; ',
          case when c.days < min_days then
            format('the period covers %s days, and at least %s are recommended', round(c.days::numeric, 1), min_days)
          end,
          case when a.percent < min_active then
            format('the sensor was active %s %% of the period, and at least %s %% is recommended',
              round(a.percent::numeric, 1), min_active)
          end)
      end
    from figure f, coverage c, active a;
end
$$;
comment on function public.cgm_summary(uuid, timestamptz, timestamptz) is
  'CGM summary of one of your persons over [from, to) (at most 90 days): times in ranges, mean, GMI, CV, days of wear, sensor active %, and whether it is representative.';
revoke all on function public.cgm_summary(uuid, timestamptz, timestamptz) from public, anon, authenticated, service_role;
grant execute on function public.cgm_summary(uuid, timestamptz, timestamptz) to authenticated;
