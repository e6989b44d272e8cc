"""Cloud Run service: the glucokit HTTP API for signed-in users.

    python workers/api_service.py

Settings (README.md, "Settings"): PORT (set by Cloud Run); DATABASE_URL, a login that may
`set role authenticated` (on Supabase: the `authenticator` role, as PostgREST uses), never a role that
bypasses row-level security; SUPABASE_URL (tokens are checked against its JWKS at
/auth/v1/.well-known/jwks.json and their issuer must be {SUPABASE_URL}/auth/v1) and/or
SUPABASE_JWT_SECRET (for tokens signed with HS256); GLUCOKIT_API_POOL.

SIGTERM stops the server gracefully: uvicorn finishes the requests in flight, then exits by that signal.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from glucokit import logs
from glucokit.api import ApiSettings, TokenVerifier, create_app
from glucokit.errors import GlucokitError
from glucokit.settings import ApiServiceSettings, load

log = logging.getLogger("api_service")


def main() -> int:
    log_settings = logs.configure("api_service")
    try:
        settings = load(ApiServiceSettings)
        supabase = (settings.supabase_url or "").rstrip("/")
        secret = settings.supabase_jwt_secret
        verifier = TokenVerifier(
            secret=secret.get_secret_value() if secret else None,
            jwks_url=f"{supabase}/auth/v1/.well-known/jwks.json" if supabase else None,
            issuer=f"{supabase}/auth/v1" if supabase else None,
        )
    except GlucokitError as error:
        log.error("%s", error)
        return 2
    app = create_app(ApiSettings(settings.database_url.get_secret_value(), verifier, pool_size=settings.api_pool))
    uvicorn.run(
        logs.TraceRequests(app),
        host="0.0.0.0",  # noqa: S104 - Cloud Run sends to the container's port
        port=settings.port,
        log_level="info",
        log_config=logs.uvicorn_log_config(log_settings),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
