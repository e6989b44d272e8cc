/**
 * -----------------------------------------------------------------------------
 * RPCs for what an app shows
 * -----------------------------------------------------------------------------
 * A Supabase app reads through the Data API with supabase-js: these functions
 * are what it calls (`supabase.rpc('latest_forecast', { person_id })`), and the
 * FastAPI routes read through the same functions (lib/glucokit/api/sql/reads.sql),
 * so both give the same answers. Each runs with the caller's rights (security
 * invoker): row-level security decides, and another user's person reads as one
 * without forecasts or models. search_path is pinned, and only `authenticated`
 * may execute them (policies/access.toml lists them as matrix objects).
 *
 * public.cgm_summary (migration 20261205120300) is the fourth.
 */

/**
 * The disclaimer texts, by version and language, so that an answer carries the
 * text its forecast was shown with. lib/glucokit/disclaimer.py is where the
 * texts are written; tests/test_rpcs.py fails when a version or language there
 * is not here word for word (a new version comes with a new migration).
 */
create table private.disclaimer (
  version text not null check (version ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
  language text not null check (language ~ '^[a-z]{2}$'),
  body text not null check (char_length(body) between 1 and 2000),
  primary key (version, language)
);
comment on table private.disclaimer is 'The disclaimer texts by version and language (written in lib/glucokit/disclaimer.py).';
revoke all on private.disclaimer from public, anon, authenticated, service_role;
-- Read only through private.disclaimer_text.
select private.refuse_direct_access('private.disclaimer');

insert into private.disclaimer (version, language, body) values
  ('v1', 'en',
   'Informational only. This forecast is an estimate of your glucose trend, not a medical device. '
   'It does not diagnose, recommend doses or treatments, or assess urgency. '
   'Talk to your care team about decisions on your health.'),
  ('v1', 'de',
   'Nur zur Information. Diese Vorhersage schätzt den Verlauf Ihres Glukosewerts und ist kein '
   'Medizinprodukt. Sie stellt keine Diagnose, empfiehlt keine Dosen oder Behandlungen und bewertet '
   'keine Dringlichkeit. Besprechen Sie Entscheidungen über Ihre Gesundheit mit Ihrem Behandlungsteam.');

create or replace function private.disclaimer_text(p_version text, p_language text) returns text
  language plpgsql stable security definer
  set search_path = ''
as $$
declare
  v_body text;
begin
  select d.body into v_body from private.disclaimer d where d.version = p_version and d.language = p_language;
  if not found then
    raise exception 'no disclaimer % in language % (languages: en, de)', p_version, p_language
      using errcode = 'invalid_parameter_value';
  end if;
  return v_body;
end
$$;
comment on function private.disclaimer_text(text, text) is 'The text of a disclaimer version in a language.';
revoke all on function private.disclaimer_text(text, text) from public;
grant execute on function private.disclaimer_text(text, text) to authenticated;

/**
 * A person's latest forecast curve: the newest origin (of the newest model
 * there) and its points by horizon, each with its band, the disclaimer version
 * and text, the model version and the number of observations the forecast was
 * computed from. Empty when the person has no forecast or is not the caller's.
 * The newest origin comes from the pointer private.latest_forecast (migration
 * 20261206165000) by primary key, and only its day's partitions are read; the
 * forecast is a materialized CTE so that its sources are counted once.
 */
create or replace function public.latest_forecast(person_id uuid, language text default 'en')
returns table (
  id uuid,
  forecast_id uuid,
  person_id uuid,
  generated_at timestamptz,
  target_at timestamptz,
  horizon_minutes smallint,
  value_mg_dl real,
  lower_mg_dl real,
  upper_mg_dl real,
  coverage real,
  disclaimer_version text,
  disclaimer text,
  model_id uuid,
  model_version text,
  training_run_id uuid,
  data_from timestamptz,
  data_to timestamptz,
  code_version text,
  source_count integer
)
  language sql stable security invoker
  set search_path = ''
as $$
  with f as materialized (
    select l.id, l.generated_at, l.coverage, l.disclaimer_version, l.model_id, l.model_version, l.training_run_id,
      l.data_from, l.data_to, l.code_version,
      (select count(*)::integer from public.prediction_source s
       where s.forecast_id = l.id and s.generated_at = l.generated_at) as source_count
    from private.latest_forecast k
    join public.forecast l on l.id = k.forecast_id and l.generated_at = k.generated_at
    where k.person_id = $1
  )
  select p.id, f.id, p.person_id, p.generated_at, p.target_at, p.horizon_minutes, p.value_mg_dl, p.lower_mg_dl,
    p.upper_mg_dl, f.coverage, f.disclaimer_version, private.disclaimer_text(f.disclaimer_version, $2), f.model_id,
    f.model_version, f.training_run_id, f.data_from, f.data_to, f.code_version, f.source_count
  from f
  join public.prediction p on p.forecast_id = f.id and p.generated_at = f.generated_at
  where p.person_id = $1
  order by p.horizon_minutes
$$;
comment on function public.latest_forecast(uuid, text) is
  'RPC: the person''s latest forecast curve with bands, disclaimer (en or de), model version and source count.';
revoke all on function public.latest_forecast(uuid, text) from public, anon, authenticated, service_role;
grant execute on function public.latest_forecast(uuid, text) to authenticated;

/**
 * One forecast point with its forecast's provenance and its source anchors
 * (the observations every point of the forecast was computed from: the input
 * window first, then covariates, by time), as a JSON array of
 * {observation_id, effective_at, role, code, reference}. No row when the
 * point does not exist or is not the caller's.
 */
create or replace function public.forecast_point(prediction_id uuid, language text default 'en')
returns table (
  id uuid,
  forecast_id uuid,
  person_id uuid,
  generated_at timestamptz,
  target_at timestamptz,
  horizon_minutes smallint,
  value_mg_dl real,
  lower_mg_dl real,
  upper_mg_dl real,
  coverage real,
  disclaimer_version text,
  disclaimer text,
  model_id uuid,
  model_version text,
  training_run_id uuid,
  data_from timestamptz,
  data_to timestamptz,
  code_version text,
  sources jsonb
)
  language sql stable security invoker
  set search_path = ''
as $$
  select p.id, f.id, p.person_id, p.generated_at, p.target_at, p.horizon_minutes, p.value_mg_dl, p.lower_mg_dl,
    p.upper_mg_dl, f.coverage, f.disclaimer_version, private.disclaimer_text(f.disclaimer_version, $2), f.model_id,
    f.model_version, f.training_run_id, f.data_from, f.data_to, f.code_version,
    coalesce((
      select jsonb_agg(
        jsonb_build_object(
          'observation_id', s.observation_id,
          'effective_at', s.observation_effective_at,
          'role', s.role,
          'code', o.code,
          'reference', 'Observation/' || s.observation_id
        )
        order by s.role, s.observation_effective_at, s.observation_id
      )
      from public.prediction_source s
      join public.observation o on o.id = s.observation_id and o.effective_at = s.observation_effective_at
      where s.forecast_id = p.forecast_id and s.generated_at = p.generated_at
    ), '[]'::jsonb)
  from public.prediction p
  join public.forecast f on f.id = p.forecast_id and f.generated_at = p.generated_at
  where p.id = $1
$$;
comment on function public.forecast_point(uuid, text) is
  'RPC: one forecast point with its provenance, disclaimer (en or de) and source anchors.';
revoke all on function public.forecast_point(uuid, text) from public, anon, authenticated, service_role;
grant execute on function public.forecast_point(uuid, text) to authenticated;

/**
 * The person's model versions, newest first by semantic version, with their
 * metrics and model card (null for a version registered before model cards).
 */
create or replace function public.person_models(person_id uuid)
returns table (
  id uuid,
  version text,
  algorithm text,
  stage text,
  stage_reason text,
  is_fallback boolean,
  storage_path text,
  artifact_sha256 text,
  features text[],
  metrics jsonb,
  trained_at timestamptz,
  training_run_id uuid,
  data_from timestamptz,
  data_to timestamptz,
  card jsonb
)
  language sql stable security invoker
  set search_path = ''
as $$
  select m.id, m.version, m.algorithm, m.stage::text, m.stage_reason, m.is_fallback, m.storage_path,
    m.artifact_sha256, m.features, m.metrics, m.trained_at, m.training_run_id, m.data_from, m.data_to, m.card
  from public.ml_model m
  where m.person_id = $1 and m.model_type = 'glucose-forecast'
  order by
    string_to_array(split_part(split_part(m.version, '+', 1), '-', 1), '.')::integer[] desc,
    m.created_at desc
$$;
comment on function public.person_models(uuid) is
  'RPC: the person''s glucose-forecast model versions, newest first, with metrics and model card.';
revoke all on function public.person_models(uuid) from public, anon, authenticated, service_role;
grant execute on function public.person_models(uuid) to authenticated;
