"""The HTTP API for signed-in users (FastAPI): ``create_app(ApiSettings(...))``; served by workers/api_service.py.
It owns the app, token verification (auth), the request and response bodies (models), the user's reads and the chart.

May import modelops, privacy, fhir, forecast, db and the shared facts; never jobs (the other entry point of its
layer), cli or tooling (docs/architecture.md).
"""

from glucokit.api.app import ApiSettings, create_app
from glucokit.api.auth import TokenVerifier

__all__ = ["ApiSettings", "TokenVerifier", "create_app"]
