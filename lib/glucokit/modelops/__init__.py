"""Model operations: the registry, the model store, retraining with champion/challenger, experiments, monitoring,
day patterns, and the forecast writer that serves the active model.

Imports forecast (the ML core), db, fhir-free shared facts; never api, jobs or cli.
"""
