"""API tokens with the official Python client, the way an application passes them: REST with
`google.oauth2.credentials.Credentials(token=...)` and gRPC with access-token call credentials
(over loopback with `grpc.local_channel_credentials()`, which gRPC allows to carry tokens
without TLS). Errors come back as the client's usual exceptions: Unauthenticated (401),
PermissionDenied (403) and ResourceExhausted (429)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import google.auth.exceptions
import grpc
import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.oauth2.credentials import Credentials

from conftest import StratusServer, _stratus_bin

A = "projects/tenant-a/locations/local"
B = "projects/tenant-b/locations/local"


def _token(cfg: Path, project: str, role: str, name: str, *extra: str) -> str:
    out = subprocess.run(
        [str(_stratus_bin()), "tokens", "create", "--project", project, "--role", role,
         "--name", name, "--config", str(cfg), *extra],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


@pytest.fixture(scope="module")
def tenants(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("auth") / "stratus.toml"
    tokens = {
        "a_admin": _token(cfg, "tenant-a", "admin", "a-admin"),
        "a_enqueuer": _token(cfg, "tenant-a", "enqueuer", "a-enqueuer"),
        "a_viewer": _token(cfg, "tenant-a", "viewer", "a-viewer"),
        "b_admin": _token(cfg, "tenant-b", "admin", "b-admin"),
        "slow": _token(cfg, "tenant-a", "viewer", "slow", "--rate-limit", "1"),
    }
    server = StratusServer("auth", ["--config", str(cfg), "--no-dispatch"])
    try:
        server.start()
        yield server, tokens
    finally:
        server.stop()


def rest_client(server, token: str | None) -> tasks_v2.CloudTasksClient:
    creds = Credentials(token=token) if token else AnonymousCredentials()
    return tasks_v2.CloudTasksClient(
        transport="rest", credentials=creds, client_options=ClientOptions(api_endpoint=server.url)
    )


def grpc_client(server, token: str) -> tuple[tasks_v2.CloudTasksClient, grpc.Channel]:
    creds = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(), grpc.access_token_call_credentials(token)
    )
    channel = grpc.secure_channel(f"127.0.0.1:{server.port}", creds)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel)), channel


def test_rest_client_with_a_token(tenants):
    server, t = tenants
    admin = rest_client(server, t["a_admin"])
    q = admin.create_queue(parent=A, queue=tasks_v2.Queue(name=f"{A}/queues/rest"))
    enq = rest_client(server, t["a_enqueuer"])
    task = enq.create_task(
        parent=q.name,
        task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url="http://127.0.0.1:9/x")),
    )
    viewer = rest_client(server, t["a_viewer"])
    assert viewer.get_task(name=task.name).name == task.name
    with pytest.raises(exceptions.Forbidden) as e:
        viewer.create_task(
            parent=q.name,
            task=tasks_v2.Task(http_request=tasks_v2.HttpRequest(url="http://127.0.0.1:9/x")),
        )
    assert "cloudtasks.tasks.create" in str(e.value)
    with pytest.raises(exceptions.Forbidden):
        enq.delete_queue(name=q.name)
    # Tenant B sees nothing of tenant A, whether it exists or not.
    other = rest_client(server, t["b_admin"])
    with pytest.raises(exceptions.Forbidden):
        other.get_queue(name=q.name)
    with pytest.raises(exceptions.Forbidden):
        other.list_tasks(parent=q.name)
    # A 401 makes the REST transport try to refresh its credentials before giving up, so the
    # application sees google-auth's refresh error; the wire answer is UNAUTHENTICATED.
    for token in (None, "stratus_not-a-token"):
        with pytest.raises((exceptions.Unauthorized, google.auth.exceptions.GoogleAuthError)):
            rest_client(server, token).list_queues(parent=A)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = requests.get(f"{server.url}/v2/{A}/queues", headers=headers, timeout=5)
        assert r.status_code == 401
        assert r.json()["error"]["status"] == "UNAUTHENTICATED"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_grpc_client_with_a_token(tenants):
    server, t = tenants
    admin, ch = grpc_client(server, t["a_admin"])
    try:
        q = admin.create_queue(parent=A, queue=tasks_v2.Queue(name=f"{A}/queues/grpc"))
        assert [x.name for x in admin.list_queues(parent=A)].count(q.name) == 1
        with pytest.raises(exceptions.PermissionDenied):
            admin.list_queues(parent=B)
    finally:
        ch.close()
    viewer, ch = grpc_client(server, t["a_viewer"])
    try:
        with pytest.raises(exceptions.PermissionDenied):
            viewer.pause_queue(name=q.name)
        assert viewer.get_queue(name=q.name).state == tasks_v2.Queue.State.RUNNING
    finally:
        ch.close()
    wrong, ch = grpc_client(server, "stratus_not-a-token")
    try:
        with pytest.raises(exceptions.Unauthenticated):
            wrong.get_queue(name=q.name)
    finally:
        ch.close()


def test_rate_limit_is_resource_exhausted(tenants):
    server, t = tenants
    slow = rest_client(server, t["slow"])
    codes = []
    for _ in range(5):
        try:
            list(slow.list_queues(parent=A))
            codes.append(200)
        except exceptions.TooManyRequests as e:
            assert "slow" in str(e)
            codes.append(429)
    assert codes[:2] == [200, 200], codes
    assert 429 in codes, codes
