-- Adaptive forecast bands: the half-width each model version serves per horizon (glucokit.modelops.band_state).
-- Named queries: see lib/glucokit/db/queries.py.

-- name: read_band_state
-- The band state of one of the scoped person's models per horizon, locked until the transaction ends.
select horizon_minutes, half_width_mg_dl, step_mg_dl, outcomes, misses from private.read_band_state(%(model_id)s);

-- name: save_band_state
-- Stores the band state of one of the scoped person's models, one array element per horizon.
select private.save_band_state(
  %(model_id)s, %(horizons)s::smallint[], %(half_widths)s::real[], %(steps)s::real[], %(outcomes)s::integer[],
  %(misses)s::integer[]
);
