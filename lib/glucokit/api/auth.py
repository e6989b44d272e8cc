"""Supabase access tokens: verified as Supabase Auth signs them, and turned into the claims a transaction runs with.

Supabase Auth signs access tokens either with the project's shared JWT secret
(HS256) or with an asymmetric signing key (RS256 or ES256) whose public half
is published as a JWKS at ``{SUPABASE_URL}/auth/v1/.well-known/jwks.json``.
A token is accepted only when its header's algorithm is one the configured
keys verify (never ``none``; an HS256 token is never checked against a public
key), its signature holds, it has not expired, and its audience is
``authenticated``. The claims are then set for one transaction, as PostgREST
does, and row-level security decides the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

import jwt

from glucokit.db.text import unstorable
from glucokit.errors import GlucokitError
from glucokit.settings import LEEWAY_S

AUDIENCE: Final = "authenticated"
ASYMMETRIC: Final = ("RS256", "ES256")
# A user id as Supabase Auth writes it. Python's UUID() also takes "urn:uuid:…", braces and non-ASCII digits,
# which PostgreSQL's uuid input does not, so a claim is checked against this before anything else reads it.
USER_ID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII | re.IGNORECASE)


class Unauthorized(GlucokitError):
    """The request carries no token, or one that is not a valid access token of a signed-in user."""


@dataclass(frozen=True)
class Caller:
    """A verified signed-in user: their id and every claim of their token."""

    user_id: UUID
    claims: dict[str, Any]


class TokenVerifier:
    """Verifies Supabase access tokens with the project's JWT secret, its JWKS, or both."""

    def __init__(self, *, secret: str | None = None, jwks_url: str | None = None, issuer: str | None = None) -> None:
        if not secret and not jwks_url:
            raise GlucokitError("token verification needs SUPABASE_JWT_SECRET, a JWKS URL, or both")
        self.secret = secret or None
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=600) if jwks_url else None
        self.issuer = issuer

    def caller(self, authorization: str | None) -> Caller:
        """The signed-in user of an ``Authorization: Bearer`` header; raises Unauthorized otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("sign in: send the access token as 'Authorization: Bearer <token>'")
        claims = self.verify(token.strip())
        subject = claims.get("sub")
        if not isinstance(subject, str) or USER_ID.fullmatch(subject) is None:
            raise Unauthorized("the token names no user (sub is not a user id)")
        if _unreadable(claims):
            # PostgreSQL's jsonb holds neither NUL nor half a UTF-16 pair, and policies cast the claims to jsonb:
            # such a token (user_metadata is the user's to write) could only fail inside the database.
            raise Unauthorized(
                "the token carries a NUL character (\\u0000) or an unpaired surrogate, which the database cannot read"
            )
        user_id = UUID(subject)
        # The database reads the claims, not user_id: give it the canonical spelling that Python checked.
        return Caller(user_id, {**claims, "sub": str(user_id)})

    def may_block(self, authorization: str | None) -> bool:
        """Whether verifying this ``Authorization`` header may fetch the JWKS (blocking HTTP): only a token signed
        with an asymmetric key, when a JWKS URL is configured. Anything else is verified by CPU alone."""
        if self.jwks is None:
            return False
        try:
            algorithm = jwt.get_unverified_header((authorization or "").partition(" ")[2].strip()).get("alg")
        except jwt.InvalidTokenError:
            return False  # refused without a key
        return algorithm in ASYMMETRIC

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a signed-in user's valid access token; raises Unauthorized otherwise."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as error:
            raise Unauthorized(f"not a JWT: {error}") from None
        if algorithm == "HS256" and self.secret is not None:
            key: Any = self.secret
        elif algorithm in ASYMMETRIC and self.jwks is not None:
            try:
                key = self.jwks.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError as error:
                raise Unauthorized(f"no signing key for this token: {error}") from None
        else:
            raise Unauthorized(f"tokens signed with {algorithm!r} are not accepted")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.issuer,
                leeway=LEEWAY_S,
                # The audience is checked below, after the role: an anon key carries none.
                options={"require": ["exp", "role"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired: sign in again") from None
        except jwt.InvalidTokenError as error:
            raise Unauthorized(f"invalid token: {error}") from None
        if claims["role"] != "authenticated":
            raise Unauthorized(f"a signed-in user's token is needed, not one with role {claims['role']!r}")
        audience = claims.get("aud")
        if audience != AUDIENCE and AUDIENCE not in (audience if isinstance(audience, list) else []):
            raise Unauthorized(f"the token is not for this API (audience must be {AUDIENCE!r})")
        return claims


def _unreadable(claims: dict[str, Any]) -> bool:
    """Whether any key or string of decoded JSON holds NUL or an unpaired surrogate (iterative: claims may nest
    deeply)."""
    pending: list[object] = [claims]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if unstorable(value) is not None:
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False
