"""Verify the OIDC token Stratus signs onto a task's request, in a Python receiver.

Stratus publishes its keys like Google does: `<issuer>/.well-known/openid-configuration`
names a `jwks_uri`. Verify the signature (RS256), the issuer, the audience (the task's
`oidc_token.audience`, or the task URL when none was set) and the expiry; then trust the
`email` claim (the task's `oidc_token.service_account_email`).

    pip install "PyJWT[crypto]"

    verifier = StratusOidcVerifier("http://stratus.internal:8123", "https://api.example/tasks")
    claims = verifier.verify(request.headers.get("Authorization"))  # raises on a bad token

With FastAPI, as a dependency:

    def stratus_task(authorization: str | None = Header(None)) -> dict:
        try:
            return verifier.verify(authorization)
        except InvalidTaskToken as e:
            raise HTTPException(status_code=401, detail=str(e))

    @app.post("/tasks/send-email")
    def send_email(payload: dict, claims: dict = Depends(stratus_task)): ...
"""

from __future__ import annotations

import json
import urllib.request

import jwt


class InvalidTaskToken(Exception):
    """The request does not carry a valid token from this Stratus for this audience."""


class StratusOidcVerifier:
    """Checks `Authorization: Bearer <token>` headers against one Stratus issuer."""

    def __init__(self, issuer: str, audience: str, allowed_emails: set[str] | None = None):
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.allowed_emails = allowed_emails
        with urllib.request.urlopen(f"{self.issuer}/.well-known/openid-configuration", timeout=5) as r:
            discovery = json.load(r)
        if discovery["issuer"].rstrip("/") != self.issuer:
            raise ValueError(f"discovery document is for issuer {discovery['issuer']!r}")
        self.iss = discovery["issuer"]  # the exact `iss` the tokens carry
        # PyJWKClient caches the keys and refetches when a token names an unknown key id.
        self.jwks = jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=True)

    def verify(self, authorization: str | None) -> dict:
        """The token's claims, or InvalidTaskToken."""
        if not authorization or not authorization.startswith("Bearer "):
            raise InvalidTaskToken("no bearer token")
        token = authorization[len("Bearer "):]
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.iss,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise InvalidTaskToken(f"token rejected: {e}") from e
        if not claims.get("email_verified"):
            raise InvalidTaskToken("email not verified")
        if self.allowed_emails is not None and claims.get("email") not in self.allowed_emails:
            raise InvalidTaskToken(f"service account {claims.get('email')!r} is not allowed")
        return claims

