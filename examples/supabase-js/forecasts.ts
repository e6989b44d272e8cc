// What a Supabase app reads and writes of glucokit's forecasts, with supabase-js and the
// generated Database type. Every call runs as the signed-in user: row-level security decides
// which persons, forecasts and feedback exist for them.
import type { RealtimeChannel, SupabaseClient } from '@supabase/supabase-js';
import type { Database } from '../../types/database';

export type Client = SupabaseClient<Database>;
export type FeedbackRating = Database['public']['Enums']['feedback_rating'];

type CurveRow = Database['public']['Functions']['latest_forecast']['Returns'][number];
export type Language = 'en' | 'de';

export type ForecastPoint = Pick<
  CurveRow,
  'id' | 'target_at' | 'horizon_minutes' | 'value_mg_dl' | 'lower_mg_dl' | 'upper_mg_dl'
>;

export interface Forecast {
  id: string;
  personId: string;
  modelId: string;
  modelVersion: string;
  disclaimerVersion: string;
  /** The disclaimer text to show with the forecast, in the language asked for. */
  disclaimer: string;
  /** How many observations the forecast was computed from (public.forecast_point names them). */
  sourceCount: number;
  generatedAt: string;
  points: ForecastPoint[];
}

/**
 * The newest forecast of one of the user's persons, its points by horizon; null before the first
 * (or for a person that is not the user's). The RPC public.latest_forecast is what glucokit's own
 * API reads too, so both give the same curve.
 */
export async function latestForecast(
  client: Client,
  personId: string,
  language: Language = 'en',
): Promise<Forecast | null> {
  const { data, error } = await client.rpc('latest_forecast', { person_id: personId, language });
  if (error) throw error;
  const first = data[0];
  if (first === undefined) return null;
  return {
    id: first.forecast_id,
    personId,
    modelId: first.model_id,
    modelVersion: first.model_version,
    disclaimerVersion: first.disclaimer_version,
    disclaimer: first.disclaimer,
    sourceCount: first.source_count,
    generatedAt: first.generated_at,
    points: data.map(({ id, target_at, horizon_minutes, value_mg_dl, lower_mg_dl, upper_mg_dl }) => ({
      id,
      target_at,
      horizon_minutes,
      value_mg_dl,
      lower_mg_dl,
      upper_mg_dl,
    })),
  };
}

/** What the database broadcasts when a forecast is written: ids only, never glucose values. */
export interface NewForecast {
  forecast_id: string;
  person_id: string;
  model_id: string;
  generated_at: string;
}

/**
 * Calls onForecast for every new forecast of the person. Channel design: Realtime Broadcast from
 * the database, on the private topic `forecast:<person_id>`, event `forecast`; a policy on
 * realtime.messages lets only the person's owner join it. Read the forecast itself with
 * latestForecast when told. Remove the channel (client.removeChannel) to stop.
 */
export async function subscribeToForecasts(
  client: Client,
  personId: string,
  onForecast: (forecast: NewForecast) => void,
): Promise<RealtimeChannel> {
  await client.realtime.setAuth();
  return client
    .channel(`forecast:${personId}`, { config: { private: true } })
    .on('broadcast', { event: 'forecast' }, ({ payload }) => onForecast(payload as NewForecast))
    .subscribe();
}

/**
 * The user's thumbs up or down on one point of a forecast; giving it again replaces it. The
 * database checks that the point is one of the person's and takes the model from the point (the
 * table's model columns are required, so the forecast's own are sent).
 */
export async function leaveFeedback(
  client: Client,
  forecast: Forecast,
  point: ForecastPoint,
  rating: FeedbackRating,
  comment: string | null = null,
): Promise<void> {
  const { error } = await client.from('forecast_feedback').upsert(
    {
      prediction_id: point.id,
      person_id: forecast.personId,
      model_id: forecast.modelId,
      model_version: forecast.modelVersion,
      rating,
      comment,
    },
    { onConflict: 'prediction_id,user_id' },
  );
  if (error) throw error;
}
