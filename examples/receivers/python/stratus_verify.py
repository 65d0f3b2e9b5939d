"""Verify that a request really comes from Stratus, in a FastAPI receiver.

Three proofs, each a FastAPI dependency (see examples/receivers/README.md):

- `StratusSignature(keys)`: the `X-Stratus-Signature` header, an HMAC-SHA256 over
  `"<t>." + body` keyed with a key configured in `[[receiver_auth]] hmac_keys`. Rejects a
  missing or malformed header, a signature by no key you hold, a changed body, and a timestamp
  more than 5 minutes old (a replay) or more than 5 minutes ahead.
- `StratusSharedSecret(header, secret)`: the static `secret_header` of the same rule.
- `StratusOidc(issuer, audience)`: the task's OIDC token (`Authorization: Bearer …`), checked
  against Stratus' published keys with PyJWT (stratus_oidc.py, next to this file).

Each answers 401 when its proof fails. Copy this file and stratus_oidc.py into your service:

    pip install fastapi "PyJWT[crypto]"

    from fastapi import Depends, FastAPI, Request
    from stratus_verify import StratusOidc, StratusSignature

    app = FastAPI()
    signed = StratusSignature(keys=[os.environ["STRATUS_HMAC_KEY"]])
    oidc = StratusOidc(issuer="https://stratus.internal:8123", audience="https://api.example/tasks")

    @app.post("/tasks/send-email")
    async def send_email(request: Request, t: int = Depends(signed), claims: dict = Depends(oidc)):
        payload = await request.json()   # the same bytes the signature covered
        ...

The signature does not stop a replay *within* the 5-minute window: de-duplicate on
`X-CloudTasks-TaskName` + `X-CloudTasks-TaskRetryCount` for that long (a retry of the same task
carries a higher retry count and a fresh signature).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from fastapi import HTTPException, Request

from stratus_oidc import InvalidTaskToken, StratusOidcVerifier

SIGNATURE_HEADER = "X-Stratus-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSignature(Exception):
    """The request does not carry a valid, fresh Stratus signature for its body."""


def _key_bytes(key: str | bytes) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key


def sign(key: str | bytes, t: int, body: bytes) -> str:
    """The `v1` value Stratus sends: hex HMAC-SHA256 of `"<t>." + body` keyed with `key`."""
    return hmac.new(_key_bytes(key), f"{t}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def parse_signature_header(header: str | None) -> tuple[int, list[str]]:
    """`t=<unix seconds>,v1=<hex>[,v1=<hex>]` as (t, [hex, ...]); unknown schemes are skipped."""
    if not header:
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")
    t = None
    sigs: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header")
        if name == "t":
            if t is not None or not value.isascii() or not value.isdigit():
                raise InvalidSignature(f"malformed timestamp in {SIGNATURE_HEADER}")
            t = int(value)
        elif name == "v1":
            sigs.append(value)
    if t is None or not sigs:
        raise InvalidSignature(f"{SIGNATURE_HEADER} needs t= and at least one v1=")
    return t, sigs


def verify_signature(
    header: str | None,
    body: bytes,
    keys: Sequence[str | bytes],
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Checks a signature header against the raw body; returns its timestamp.

    Raises InvalidSignature unless some `v1` equals the HMAC of one of `keys` (compared in
    constant time) and `t` is within `tolerance_seconds` of `now` (default: the clock).
    """
    if not keys:
        raise ValueError("keys: at least one HMAC key is needed")
    t, sigs = parse_signature_header(header)
    now = time.time() if now is None else now
    if t < now - tolerance_seconds:
        raise InvalidSignature(f"signature timestamp {t} is older than {tolerance_seconds} s (replay?)")
    if t > now + tolerance_seconds:
        raise InvalidSignature(f"signature timestamp {t} is more than {tolerance_seconds} s in the future")
    expected = [sign(k, t, body) for k in keys]
    # Compare every pair (no early exit) so timing does not tell which part matched.
    ok = False
    for got in sigs:
        for want in expected:
            ok |= hmac.compare_digest(got.encode("ascii", "replace"), want.encode("ascii"))
    if not ok:
        raise InvalidSignature("no signature matches the body with any configured key")
    return t


class StratusSignature:
    """FastAPI dependency: 401 unless the request is signed with one of `keys`.

    Hold the current key; during a rotation Stratus sends one signature per configured key, so
    a receiver holding either the old or the new key accepts. Returns the signature timestamp.
    """

    def __init__(self, keys: Sequence[str | bytes], tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS):
        if not keys:
            raise ValueError("keys: at least one HMAC key is needed")
        self.keys = [_key_bytes(k) for k in keys]
        self.tolerance_seconds = tolerance_seconds

    async def __call__(self, request: Request) -> int:
        body = await request.body()  # cached: the endpoint reads the same bytes again
        try:
            return verify_signature(
                request.headers.get(SIGNATURE_HEADER), body, self.keys, self.tolerance_seconds
            )
        except InvalidSignature as e:
            raise HTTPException(status_code=401, detail=str(e)) from e


class StratusSharedSecret:
    """FastAPI dependency: 401 unless header `header` carries `secret` (constant-time compare).

    A static secret proves only that the sender knows it: it can be replayed by anyone who saw
    one request, so use it over TLS only, and prefer StratusSignature.
    """

    def __init__(self, header: str, secret: str):
        if not header or not secret:
            raise ValueError("header and secret: both are needed")
        self.header = header
        self.secret = secret.encode("utf-8")

    async def __call__(self, request: Request) -> None:
        got = request.headers.get(self.header, "").encode("utf-8")
        if not hmac.compare_digest(got, self.secret):
            raise HTTPException(status_code=401, detail=f"missing or wrong {self.header} header")


class StratusOidc:
    """FastAPI dependency: 401 unless `Authorization` carries a Stratus OIDC token for `audience`.

    `issuer` is the Stratus URL (or its `oidc_issuer`); the keys are fetched from its discovery
    document on first use and cached. `allowed_emails` limits the service accounts accepted.
    Returns the token's claims.
    """

    def __init__(self, issuer: str, audience: str, allowed_emails: set[str] | None = None):
        self.issuer = issuer
        self.audience = audience
        self.allowed_emails = allowed_emails
        self._verifier: StratusOidcVerifier | None = None

    def __call__(self, request: Request) -> dict:
        if self._verifier is None:
            self._verifier = StratusOidcVerifier(self.issuer, self.audience, self.allowed_emails)
        try:
            return self._verifier.verify(request.headers.get("Authorization"))
        except InvalidTaskToken as e:
            raise HTTPException(status_code=401, detail=str(e)) from e
