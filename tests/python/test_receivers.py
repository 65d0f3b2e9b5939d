"""Proof of origin end to end: a `stratus serve` with `[[receiver_auth]]` rules dispatches to a
FastAPI receiver (uvicorn on 127.0.0.1) that checks the HMAC signature, the shared-secret
header and the OIDC token with examples/receivers/python/stratus_verify.py, the very file users
copy. Tasks come through the official client; forged, tampered and replayed requests are sent
straight to the receiver and must get 401.

All waits are bounded polls of real time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import uvicorn
from fastapi import Depends, FastAPI, Request
from google.cloud import tasks_v2

from conftest import StratusServer, _free_port, _stratus_bin, make_client
from stratus_helpers import http_task, poll, unique

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "receivers" / "python"))
from stratus_verify import (  # noqa: E402
    SIGNATURE_HEADER,
    StratusOidc,
    StratusSharedSecret,
    StratusSignature,
    sign,
)

NEW_KEY = "rotation-new-key-5f1c0a9e"
OLD_KEY = "rotation-old-key-77b2d4c1"
OIDC_KEY = "oidc-queue-key-0d9e8f7a6b"
SECRET_HEADER = "X-Recv-Secret"
SECRET = "recv-shared-secret-3c2b1a"
SIGNED_QUEUE = "projects/recv/locations/local/queues/signed"
OIDC_PARENT = "projects/recv-oidc/locations/local"
EMAIL = "worker@recv.iam.gserviceaccount.com"
AUDIENCE = "https://api.example/tasks"

CONFIG = f"""
[[receiver_auth]]
queue = "{SIGNED_QUEUE}"
secret_header = "{SECRET_HEADER}"
secret = "{SECRET}"
hmac_keys = ["{NEW_KEY}", "{OLD_KEY}"]

[[receiver_auth]]
queue = "projects/recv-oidc/*"
hmac_keys = ["{OIDC_KEY}"]
"""


class App:
    """The FastAPI receiver under uvicorn in a thread; records what it accepted."""

    def __init__(self, issuer: str):
        self.accepted: list[dict] = []
        self.lock = threading.Lock()
        app = FastAPI()

        async def record(request: Request, route: str, **extra) -> dict:
            rec = {
                "route": route,
                "headers": dict(request.headers),
                "body": await request.body(),
                **extra,
            }
            with self.lock:
                self.accepted.append(rec)
            return {"ok": True}

        # The current key only (already rotated), and the previous key only (not yet).
        new_only = StratusSignature(keys=[NEW_KEY])
        old_only = StratusSignature(keys=[OLD_KEY])
        secret = StratusSharedSecret(SECRET_HEADER, SECRET)
        oidc = StratusOidc(issuer, AUDIENCE, allowed_emails={EMAIL})
        other_audience = StratusOidc(issuer, "https://other.example")
        oidc_sig = StratusSignature(keys=[OIDC_KEY])

        @app.post("/new")
        async def new(request: Request, t: int = Depends(new_only), _s: None = Depends(secret)):
            return await record(request, "new", t=t)

        @app.post("/old")
        async def old(request: Request, t: int = Depends(old_only), _s: None = Depends(secret)):
            return await record(request, "old", t=t)

        @app.post("/oidc")
        async def oidc_route(request: Request, t: int = Depends(oidc_sig), claims: dict = Depends(oidc)):
            return await record(request, "oidc", t=t, claims=claims)

        @app.post("/other-audience")
        async def other(request: Request, claims: dict = Depends(other_audience)):
            return await record(request, "other-audience", claims=claims)

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        poll(lambda: self.server.started, "uvicorn to start", timeout=10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def wait_for(self, route: str, n: int = 1) -> list[dict]:
        def got():
            with self.lock:
                hits = [r for r in self.accepted if r["route"] == route]
            return hits if len(hits) >= n else None

        return poll(got, f"{n} accepted request(s) on /{route}", timeout=20)

    def count(self, route: str) -> int:
        with self.lock:
            return sum(1 for r in self.accepted if r["route"] == route)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("receivers") / "stratus.toml"
    cfg.write_text(CONFIG)
    server = StratusServer("receivers", ["--config", str(cfg)])
    server.start()
    app = App(server.url)
    try:
        app.start()
        yield server, make_client(server.url), app
    finally:
        app.stop()
        server.stop()


def send(app: App, route: str, headers: dict, body: bytes) -> requests.Response:
    """Sends a request straight to the receiver (an attacker's copy of a request)."""
    keep = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
    return requests.post(f"{app.url}/{route}", headers=keep, data=body, timeout=5)


def signature(key: str, t: int, body: bytes) -> str:
    return f"t={t},v1={sign(key, t, body)}"


def test_signed_queue_is_verified_and_forgeries_are_rejected(setup):
    server, client, app = setup
    parent = SIGNED_QUEUE.rsplit("/queues/", 1)[0]
    client.create_queue(parent=parent, queue=tasks_v2.Queue(name=SIGNED_QUEUE))
    body = json.dumps({"order": 42, "note": "héllo"}).encode()
    # The task tries to pre-set both proofs: Stratus replaces them.
    forged = {SECRET_HEADER: "guess", SIGNATURE_HEADER: "t=1,v1=00", "Content-Type": "application/json"}
    for route in ("new", "old"):
        client.create_task(
            parent=SIGNED_QUEUE,
            task=http_task(url=f"{app.url}/{route}", http_body=body, http_headers=forged),
        )
    new = app.wait_for("new")[0]
    old = app.wait_for("old")[0]  # key rotation: a receiver holding only the second key accepts

    for rec in (new, old):
        assert rec["body"] == body
        sig = rec["headers"][SIGNATURE_HEADER.lower()]
        t = rec["t"]
        assert abs(time.time() - t) < 60
        assert sig == f"t={t},v1={sign(NEW_KEY, t, body)},v1={sign(OLD_KEY, t, body)}"
        assert rec["headers"][SECRET_HEADER.lower()] == SECRET

    # The stored task never shows the proofs the dispatch added: a task the receiver refuses
    # (no OIDC token for /other-audience) stays, dispatched, with only its own headers.
    refused = client.create_task(
        parent=SIGNED_QUEUE,
        task=http_task(url=f"{app.url}/other-audience", http_body=body, http_headers=forged),
    )
    stored = poll(
        lambda: (t := client.get_task(request={"name": refused.name, "response_view": tasks_v2.Task.View.FULL})).dispatch_count
        and t,
        "the refused task's first attempt",
    )
    assert stored.response_count >= 1
    assert stored.last_attempt.response_status.code != 0
    assert dict(stored.http_request.headers).get(SECRET_HEADER) == "guess"
    assert dict(stored.http_request.headers).get(SIGNATURE_HEADER) == "t=1,v1=00"
    for k, v in stored.http_request.headers.items():
        assert SECRET not in v and NEW_KEY not in v and OLD_KEY not in v, (k, v)
    client.delete_task(name=refused.name)

    headers = new["headers"]
    now = int(time.time())
    # Sanity: a fresh, correctly signed request is accepted (so the 401s below mean something).
    ok = dict(headers, **{SIGNATURE_HEADER: signature(NEW_KEY, now - 250, body)})
    assert send(app, "new", ok, body).status_code == 200

    cases = {
        "tampered body": (headers, body.replace(b"42", b"43")),
        "replay older than 5 minutes": (
            dict(headers, **{SIGNATURE_HEADER: signature(NEW_KEY, now - 301, body)}),
            body,
        ),
        "timestamp 5 minutes ahead": (
            dict(headers, **{SIGNATURE_HEADER: signature(NEW_KEY, now + 330, body)}),
            body,
        ),
        "unknown key": (
            dict(headers, **{SIGNATURE_HEADER: signature("someone-elses-key-123456", now, body)}),
            body,
        ),
        "old key at the new-key receiver": (
            dict(headers, **{SIGNATURE_HEADER: signature(OLD_KEY, now, body)}),
            body,
        ),
        "missing signature": ({k: v for k, v in headers.items() if k != SIGNATURE_HEADER.lower()}, body),
        "malformed signature": (dict(headers, **{SIGNATURE_HEADER: "v1=abc"}), body),
        "wrong shared secret": (dict(ok, **{SECRET_HEADER: "guess"}), body),
    }
    for what, (h, b) in cases.items():
        r = send(app, "new", h, b)
        assert r.status_code == 401, f"{what}: {r.status_code} {r.text}"


def test_oidc_and_signature_are_both_verified(setup):
    server, client, app = setup
    queue = client.create_queue(
        parent=OIDC_PARENT, queue=tasks_v2.Queue(name=f"{OIDC_PARENT}/queues/{unique('q')}")
    )
    body = b'{"user": 7}'
    token = tasks_v2.OidcToken(service_account_email=EMAIL, audience=AUDIENCE)
    for route in ("oidc", "other-audience"):
        client.create_task(
            parent=queue.name,
            task=http_task(url=f"{app.url}/{route}", http_body=body, http_oidc_token=token),
        )
    rec = app.wait_for("oidc")[0]
    assert rec["claims"]["email"] == EMAIL and rec["claims"]["aud"] == AUDIENCE
    assert rec["headers"][SIGNATURE_HEADER.lower()] == signature(OIDC_KEY, rec["t"], body)
    # The token is for AUDIENCE: the receiver expecting another audience refuses the dispatch.
    time.sleep(1.0)
    assert app.count("other-audience") == 0

    headers = rec["headers"]
    auth = headers["authorization"]
    head, payload, sig = auth[len("Bearer "):].split(".")
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    assert send(app, "oidc", headers, body).status_code == 200  # in the window, untouched
    cases = {
        "wrong audience": ("other-audience", headers, body),
        "tampered token": ("oidc", dict(headers, authorization=f"Bearer {head}.{payload}.{flipped}"), body),
        "no token": ("oidc", {k: v for k, v in headers.items() if k != "authorization"}, body),
        "tampered body": ("oidc", headers, b'{"user": 8}'),
    }
    for what, (route, h, b) in cases.items():
        r = send(app, route, h, b)
        assert r.status_code == 401, f"{what}: {r.status_code} {r.text}"


def test_server_log_has_no_secrets(setup):
    server, _client, _app = setup
    log = server.log_path.read_text(errors="replace")
    for secret in (SECRET, NEW_KEY, OLD_KEY, OIDC_KEY):
        assert secret not in log


@pytest.mark.parametrize(
    "entry, wants",
    [
        ('queue = "projects/p/*"\nhmac_keys = ["short"]', "receiver_auth[0]: hmac_keys"),
        ('queue = "projects/p/*"\nhmac_keys = ["a-long-enough-key-1", "a-long-enough-key-2", "a-long-enough-key-3"]', "at most 2"),
        ('queue = "projects/p/*"\nsecret = "s3cret-value"', "receiver_auth[0]: secret_header"),
        ('queue = "projects/p/*"\nsecret_header = "Authorization"\nsecret = "x"', "reserved"),
        ('queue = "projects/p/*"\nsecret_header = "X-CloudTasks-Secret"\nsecret = "x"', "reserved"),
        ('queue = "billing"\nhmac_keys = ["a-long-enough-key-1"]', "receiver_auth[0]: queue"),
    ],
)
def test_bad_receiver_auth_is_refused_at_start(tmp_path, entry, wants):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"[[receiver_auth]]\n{entry}\n")
    out = subprocess.run(
        [str(_stratus_bin()), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"), "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode != 0
    assert wants in out.stderr, out.stderr
    assert "s3cret-value" not in out.stderr
