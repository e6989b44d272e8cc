"""Model operations: the registry, the model store, retraining with champion/challenger, the retrain queue,
experiments, monitoring, day patterns, and the forecast writer that serves the active model.

May import forecast (the ML core), db and the shared facts, and its layer's siblings fhir and privacy; never api,
jobs, cli or tooling (docs/architecture.md).
"""
