"""Privacy: consent per purpose, the audit log, erasure and the export of everything about a person (GDPR).

May import forecast, db and the shared facts, and its layer's siblings modelops and fhir; never api, jobs, cli or
tooling (docs/architecture.md).
"""
