"""The Cloud Run workers' logic: one job runner and the retrain, forecast, pattern and privacy jobs built on it, and
the retrain service that fills the queue.

May import modelops, privacy, fhir, forecast, db and the shared facts; never api (the other entry point of its
layer), cli or tooling (docs/architecture.md).
"""
