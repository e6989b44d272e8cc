// A signed-in user's round trip: their first person's latest forecast, feedback on its first
// point, and a subscription for the next forecasts.
import { createClient } from '@supabase/supabase-js';
import type { Database } from '../../types/database';
import { latestForecast, leaveFeedback, subscribeToForecasts } from './forecasts';

export async function showForecasts(supabaseUrl: string, anonKey: string, email: string, password: string) {
  const client = createClient<Database>(supabaseUrl, anonKey);
  const signIn = await client.auth.signInWithPassword({ email, password });
  if (signIn.error) throw signIn.error;

  const persons = await client.from('person').select('id').order('created_at').limit(1);
  if (persons.error) throw persons.error;
  const person = persons.data[0];
  if (person === undefined) return;

  const forecast = await latestForecast(client, person.id);
  const first = forecast?.points[0];
  if (forecast && first) {
    console.log(`${first.target_at}: ${first.value_mg_dl} mg/dL (${first.lower_mg_dl} to ${first.upper_mg_dl})`);
    console.log(forecast.disclaimer);
    await leaveFeedback(client, forecast, first, 'up');
  }

  return subscribeToForecasts(client, person.id, async (announced) => {
    const next = await latestForecast(client, announced.person_id);
    console.log(`new forecast at ${announced.generated_at}: ${next?.points.length ?? 0} points`);
  });
}
