"""Dispatch seen through the official client: a dispatching `stratus serve` delivers to a
receiver on 127.0.0.1 run by the test, the client watches the task's counters change, and
the receiver verifies Stratus' OIDC tokens with PyJWT against the published JWKS.

All waits are bounded polls of real time (the server dispatches in real time here).
"""

from __future__ import annotations

import http.server
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from stratus_helpers import create_queue, http_task, poll

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "receivers" / "python"))
from stratus_oidc import InvalidTaskToken, StratusOidcVerifier  # noqa: E402

POLL_TIMEOUT_S = 20.0


class Receiver:
    """An HTTP server on 127.0.0.1 that records requests and answers from a script."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver.lock:
                    receiver.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                    status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, n: int) -> list[dict]:
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"receiver saw {len(self.requests)} requests, expected {n}")

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def fast_retry_queue(client) -> str:
    return create_queue(
        client,
        retry_config=tasks_v2.RetryConfig(
            min_backoff=duration_pb2.Duration(seconds=1),
            max_backoff=duration_pb2.Duration(seconds=1),
            max_attempts=5,
        ),
    ).name


def test_client_sees_counters_change_after_delivery(client_dispatch, receiver):
    queue = fast_retry_queue(client_dispatch)
    receiver.script = [503]
    created = client_dispatch.create_task(
        parent=queue, task=http_task(url=f"{receiver.url}/hook", http_body=b"hello")
    )
    assert created.dispatch_count == 0

    def after_first_attempt():
        t = client_dispatch.get_task(name=created.name)
        return t if t.dispatch_count >= 1 else None

    t = poll(after_first_attempt, "the first attempt")
    assert t.dispatch_count == 1
    assert t.response_count == 1
    assert t.first_attempt.dispatch_time is not None
    assert t.last_attempt.dispatch_time is not None
    assert t.last_attempt.response_time is not None
    assert t.last_attempt.response_status.code == 14  # UNAVAILABLE for a 503
    # The retry is scheduled about a second later.
    assert t.schedule_time > created.schedule_time

    # The second attempt answers 200: the task is done and gone from the API.
    seen = receiver.wait_for(2)
    assert seen[0]["body"] == b"hello"
    assert seen[1]["headers"]["x-cloudtasks-taskpreviousresponse"] == "503"
    assert seen[1]["headers"]["x-cloudtasks-taskretrycount"] == "1"

    def gone():
        try:
            client_dispatch.get_task(name=created.name)
            return False
        except gexc.NotFound:
            return True

    poll(gone, "the task to finish")


def test_run_task_dispatches_a_paused_queue_now(client_dispatch, receiver):
    queue = fast_retry_queue(client_dispatch)
    client_dispatch.pause_queue(name=queue)
    t = client_dispatch.create_task(parent=queue, task=http_task(url=f"{receiver.url}/run"))
    time.sleep(0.3)
    assert receiver.requests == [], "a paused queue dispatched"
    ran = client_dispatch.run_task(name=t.name)
    # Returned after dispatch, before the response (spec §2.1).
    assert ran.dispatch_count == 1
    assert ran.last_attempt.dispatch_time is not None
    assert not ran.last_attempt.response_time
    seen = receiver.wait_for(1)
    assert seen[0]["path"] == "/run"
    assert seen[0]["headers"]["x-cloudtasks-taskname"] == t.name.rsplit("/", 1)[1]


def test_oidc_token_verifies_with_pyjwt(server_dispatch, client_dispatch, receiver):
    queue = fast_retry_queue(client_dispatch)
    email = "worker@stratus-py.iam.gserviceaccount.com"
    audiences = {"explicit": "https://api.example/tasks", "default": None}
    for label, aud in audiences.items():
        token = tasks_v2.OidcToken(service_account_email=email, audience=aud or "")
        client_dispatch.create_task(
            parent=queue,
            task=http_task(url=f"{receiver.url}/oidc/{label}", http_oidc_token=token),
        )
    seen = receiver.wait_for(2)

    # What a receiver does (examples/receivers/python/stratus_oidc.py, quoted in
    # docs/migrating.md): discovery document -> JWKS -> verify signature and claims.
    issuer = requests.get(
        f"{server_dispatch.url}/.well-known/openid-configuration", timeout=5
    ).json()["issuer"]
    for req in seen:
        auth = req["headers"]["authorization"]
        label = req["path"].rsplit("/", 1)[1]
        # With no audience the token's audience is the target URL (spec §6.6).
        want_aud = audiences[label] or f"{receiver.url}{req['path']}"
        verifier = StratusOidcVerifier(issuer, want_aud, allowed_emails={email})
        claims = verifier.verify(auth)
        assert claims["email"] == email
        assert claims["sub"] == email
        assert claims["email_verified"] is True
        assert claims["exp"] > claims["iat"]
        # A token for another audience, a tampered token, a missing header, another
        # service account: all refused.
        with pytest.raises(InvalidTaskToken, match="(?i)audience"):
            StratusOidcVerifier(issuer, "https://other.example").verify(auth)
        head, payload, sig = auth[len("Bearer "):].split(".")
        flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
        with pytest.raises(InvalidTaskToken):
            verifier.verify(f"Bearer {head}.{payload}.{flipped}")
        with pytest.raises(InvalidTaskToken):
            verifier.verify(None)
        with pytest.raises(InvalidTaskToken, match="not allowed"):
            StratusOidcVerifier(issuer, want_aud, allowed_emails={"x@y"}).verify(auth)


def test_failed_tasks_are_listed_and_retried(server_dispatch, client_dispatch, receiver):
    queue = create_queue(
        client_dispatch,
        retry_config=tasks_v2.RetryConfig(
            min_backoff=duration_pb2.Duration(seconds=0, nanos=100_000_000),
            max_backoff=duration_pb2.Duration(seconds=0, nanos=100_000_000),
            max_attempts=2,
        ),
    ).name
    receiver.script = [500, 500]
    t = client_dispatch.create_task(parent=queue, task=http_task(url=f"{receiver.url}/dead"))
    receiver.wait_for(2)
    base = f"{server_dispatch.url}/stratus/v1/{queue}"

    def failed():
        body = requests.get(f"{base}/failedTasks", timeout=5).json()
        return body.get("tasks")

    listed = poll(failed, "the task in the failed list")
    assert [x["task"]["name"] for x in listed] == [t.name]
    assert listed[0]["state"] == "FAILED"
    history = requests.get(f"{base}/tasks/{t.name.rsplit('/', 1)[1]}", timeout=5).json()
    assert [a["httpStatus"] for a in history["attempts"]] == [500, 500]

    # The Cloud Tasks API does not see it; a retry brings it back and it succeeds.
    with pytest.raises(gexc.NotFound):
        client_dispatch.get_task(name=t.name)
    r = requests.post(f"{base}/tasks/{t.name.rsplit('/', 1)[1]}:retry", timeout=5)
    assert r.status_code == 200, r.text
    seen = receiver.wait_for(3)
    assert seen[2]["headers"]["x-cloudtasks-taskretrycount"] == "0"

