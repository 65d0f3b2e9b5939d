"""TLS on the API port (--tls-cert/--tls-key): the official client over gRPC with TLS
credentials and over REST with https, the OIDC issuer defaulting to https, dispatch working,
and plain HTTP refused. The certificate is made here for 127.0.0.1 (cryptography)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from pathlib import Path

import grpc
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from conftest import StratusServer
from test_dispatch import Receiver

LOC = "projects/tls/locations/local"


def _self_signed(dir: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stratus-test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = dir / "cert.pem", dir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    dir = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(dir)
    server = StratusServer("tls", ["--tls-cert", str(cert), "--tls-key", str(key)], tls_ca=cert)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_grpc_with_tls_credentials(tls_server):
    creds = grpc.ssl_channel_credentials(root_certificates=tls_server.tls_ca.read_bytes())
    channel = grpc.secure_channel(f"127.0.0.1:{tls_server.port}", creds)
    client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    rx = Receiver()
    try:
        q = client.create_queue(
            parent=LOC, queue=tasks_v2.Queue(name=f"{LOC}/queues/grpc-tls")
        )
        t = client.create_task(
            parent=q.name,
            task=tasks_v2.Task(
                http_request=tasks_v2.HttpRequest(
                    url=f"{rx.url}/tls", http_method=tasks_v2.HttpMethod.POST, body=b"over tls"
                )
            ),
        )
        got = rx.wait_for(1)
        assert got[0]["body"] == b"over tls"
        assert got[0]["headers"]["x-cloudtasks-taskname"] == t.name.rsplit("/", 1)[1]
    finally:
        rx.close()
        channel.close()


def test_rest_over_https(tls_server, monkeypatch):
    # The REST transport verifies with requests' CA bundle: point it at the test CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_server.tls_ca))
    client = tasks_v2.CloudTasksClient(
        transport="rest",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=tls_server.url),
    )
    q = client.create_queue(parent=LOC, queue=tasks_v2.Queue(name=f"{LOC}/queues/rest-tls"))
    assert client.get_queue(name=q.name).state == tasks_v2.Queue.State.RUNNING
    # The OIDC issuer defaults to the https URL of the listen address.
    discovery = requests.get(
        f"{tls_server.url}/.well-known/openid-configuration",
        verify=str(tls_server.tls_ca),
        timeout=5,
    ).json()
    assert discovery["issuer"] == f"https://127.0.0.1:{tls_server.port}"


def test_alpn_offers_h2_and_http1(tls_server):
    ctx = ssl.create_default_context(cafile=str(tls_server.tls_ca))
    for proto in (["h2"], ["http/1.1"]):
        ctx.set_alpn_protocols(proto)
        with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                assert s.selected_alpn_protocol() == proto[0]


def test_plain_http_is_refused(tls_server):
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=5)
