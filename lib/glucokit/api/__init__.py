"""The HTTP API for signed-in users (FastAPI): ``create_app(ApiSettings(...))``; served by workers/api_service.py."""

from glucokit.api.app import ApiSettings, create_app
from glucokit.api.auth import TokenVerifier

__all__ = ["ApiSettings", "TokenVerifier", "create_app"]
