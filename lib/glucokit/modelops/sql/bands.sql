-- Adaptive forecast bands: the band widths each model version serves per horizon (glucokit.modelops.band_state).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: read_band_state
-- The band state of one of the scoped person's models per horizon, locked until the transaction ends.
select horizon_minutes, lower_mg_dl, lower_step_mg_dl, upper_percent, upper_step_percent, outcomes, misses
from private.read_band_state(%(model_id)s);

-- name: save_band_state
-- Stores the band state of one of the scoped person's models, one array element per horizon.
select private.save_band_state(
  %(model_id)s, %(horizons)s::smallint[], %(lowers)s::real[], %(lower_steps)s::real[], %(uppers)s::real[],
  %(upper_steps)s::real[], %(outcomes)s::integer[], %(misses)s::integer[]
);
