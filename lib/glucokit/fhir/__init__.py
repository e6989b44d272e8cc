"""FHIR in and out: codes and resource builders, validation, ingest into observations, export, and forecasts as FHIR.

Imports db, the shared facts and nothing above them.
"""
