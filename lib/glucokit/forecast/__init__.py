"""Per-person glucose forecasting, 5 to 60 minutes ahead, with calibrated bands.

Informational trend forecasts only: never for dosing or diagnosis.

    outcome = train_person(glucose, carbs, insulin, tz="Europe/Paris")  # or InsufficientData
    config, tensors = outcome.state.config(), outcome.state.tensors      # JSON + safetensors
    state = ForecastState.from_saved(config, tensors)
    points = forecast(state, recent_glucose, now, recent_carbs, recent_insulin)

Readings are (tz-aware datetime, value) pairs: glucose in mg/dL, carbohydrate
in g, insulin in [iU]. See pipeline.py for how the champion is chosen.

The ML core: imports only the shared facts, never db or anything above (docs/architecture.md).
"""

from glucokit.forecast.candidates import ModelState
from glucokit.forecast.evaluation import PersonData, evaluate_people
from glucokit.forecast.metrics import Metrics, clarke_zones, conformal_quantile
from glucokit.forecast.pipeline import (
    FAMILIES,
    ForecastPoint,
    ForecastState,
    TrainingOutcome,
    TrainingSettings,
    fallback_state,
    forecast,
    holdout_rmse,
    restore,
    train_person,
)
from glucokit.forecast.series import InsufficientData
from glucokit.forecast.windows import HORIZON_MINUTES

__all__ = [
    "FAMILIES",
    "HORIZON_MINUTES",
    "ForecastPoint",
    "ForecastState",
    "InsufficientData",
    "Metrics",
    "ModelState",
    "PersonData",
    "TrainingOutcome",
    "TrainingSettings",
    "clarke_zones",
    "conformal_quantile",
    "evaluate_people",
    "fallback_state",
    "forecast",
    "holdout_rmse",
    "restore",
    "train_person",
]
