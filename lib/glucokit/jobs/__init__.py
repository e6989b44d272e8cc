"""The Cloud Run workers' logic: one job runner and the retrain, forecast, pattern and privacy jobs built on it, the
retrain queue and the service that fills it.

Imports modelops, privacy, fhir, forecast, db and the shared facts; never api, cli or tooling.
"""
