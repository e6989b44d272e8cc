"""Database access for everything that runs: connections, transactions as a user or as a scoped worker, and
the named SQL queries.

Imports only the shared facts (errors, units, project paths).
"""
