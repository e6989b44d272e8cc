"""FHIR in and out: codes and resource builders, validation, ingest into observations, export, and forecasts as FHIR.

May import forecast, db and the shared facts (and its layer's siblings, modelops and privacy); never api, jobs, cli
or tooling (docs/architecture.md).
"""
