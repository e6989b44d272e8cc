"""Database access for everything that runs: connections, transactions as a user or as a scoped worker
(sessions), the named-query loader, what text PostgreSQL can hold, and connection URLs.

Imports only the shared facts (errors, units, disclaimer, project, settings, logs); never forecast, which is
independent of it, nor anything above (docs/architecture.md).
"""
