"""Cloud Run service: the glucokit HTTP API for signed-in users.

    python workers/api_service.py

Environment:
    PORT                  the port to listen on (Cloud Run sets it; default 8080)
    DATABASE_URL          a login that may `set role authenticated` (on Supabase: the `authenticator` role, as
                          PostgREST uses); never a role that bypasses row-level security
    SUPABASE_URL          the project's URL: tokens are checked against its JWKS at /auth/v1/.well-known/jwks.json
                          and their issuer must be {SUPABASE_URL}/auth/v1
    SUPABASE_JWT_SECRET   the project's JWT secret, for tokens signed with HS256 (set it, SUPABASE_URL, or both)
    GLUCOKIT_API_POOL     database connections (default 8)

SIGTERM stops the server gracefully: uvicorn finishes the requests in flight, then exits by that signal.
"""

from __future__ import annotations

import os
import sys

import uvicorn

from glucokit.api import ApiSettings, TokenVerifier, create_app
from glucokit.errors import GlucokitError


def main() -> int:
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("api_service: DATABASE_URL is required", file=sys.stderr)
        return 2
    supabase = os.environ.get("SUPABASE_URL", "").rstrip("/")
    try:
        verifier = TokenVerifier(
            secret=os.environ.get("SUPABASE_JWT_SECRET"),
            jwks_url=f"{supabase}/auth/v1/.well-known/jwks.json" if supabase else None,
            issuer=f"{supabase}/auth/v1" if supabase else None,
        )
    except GlucokitError as error:
        print(f"api_service: {error}", file=sys.stderr)
        return 2
    app = create_app(ApiSettings(url, verifier, pool_size=int(os.environ.get("GLUCOKIT_API_POOL", "8"))))
    uvicorn.run(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8080")), log_level="info")  # noqa: S104
    return 0


if __name__ == "__main__":
    sys.exit(main())
