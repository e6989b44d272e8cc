"""Privacy: consent per purpose, the audit log, erasure and the export of everything about a person (GDPR).

Imports modelops, fhir, db and the shared facts; never api, jobs or cli.
"""
