"""Raw REST checks with `requests`: the wire details the official clients rely on but that
the Python client hides (spec §4, §7, §8.1-§8.4). The requests copy what the Node and Rust
official clients send (captures in spec §8.2)."""

from __future__ import annotations

import re

import pytest
import requests

from stratus_helpers import PARENT, QUEUE_NOT_FOUND, queue_name, unique

ALT = {"$alt": "json;enum-encoding=int"}
JSON_CT = "application/json; charset=UTF-8"
WHOLE_SECOND_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
FRACTION_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


@pytest.fixture
def http(server):
    s = requests.Session()
    s.headers["Content-Type"] = "application/json"
    base = f"{server.url}/v2/"

    def call(method: str, path: str, *, params=None, json=None) -> requests.Response:
        return s.request(method, base + path, params={**ALT, **(params or {})}, json=json, timeout=20)

    yield call
    s.close()


def _queue(http) -> str:
    name = queue_name(unique("w"))
    r = http("POST", f"{PARENT}/queues", json={"name": name})
    assert r.status_code == 200, r.text
    return name


def test_healthz(server):
    r = requests.get(f"{server.url}/healthz", timeout=5)
    assert r.status_code == 200


def test_queue_json_shape(http):
    name = queue_name(unique("w"))
    r = http("POST", f"{PARENT}/queues", json={"name": name})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == JSON_CT
    q = r.json()
    assert q["name"] == name
    assert q["state"] in ("RUNNING", 1)
    assert q["rateLimits"] == {"maxDispatchesPerSecond": 500, "maxBurstSize": 100, "maxConcurrentDispatches": 1000}
    assert q["retryConfig"] == {"maxAttempts": 100, "minBackoff": "0.100s", "maxBackoff": "3600s", "maxDoublings": 16}
    assert "purgeTime" not in q
    purged = http("POST", f"{name}:purge", json={}).json()
    assert FRACTION_UTC.fullmatch(purged["purgeTime"]), purged["purgeTime"]


def test_task_json_shape(http):
    q = _queue(http)
    r = http(
        "POST",
        f"{q}/tasks",
        json={
            "task": {"httpRequest": {"url": "https://example.com/x", "httpMethod": 1, "body": "aGVsbG8=", "headers": {"content-type": "text/plain"}}},
            "responseView": 2,
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == JSON_CT
    t = r.json()
    assert t["view"] in ("FULL", 2)
    assert WHOLE_SECOND_UTC.fullmatch(t["createTime"]), t["createTime"]
    assert FRACTION_UTC.fullmatch(t["scheduleTime"]), t["scheduleTime"]
    assert t["dispatchDeadline"] == "600s"
    assert t["httpRequest"]["body"] == "aGVsbG8="
    assert t["httpRequest"]["headers"] == {"content-type": "text/plain", "User-Agent": "Google-Cloud-Tasks"}
    assert t["httpRequest"]["httpMethod"] in ("POST", 1)
    assert "dispatchCount" not in t and "responseCount" not in t  # omitted while 0
    basic = http("GET", t["name"]).json()
    assert "body" not in basic["httpRequest"]
    assert basic["view"] in ("BASIC", 1)


def test_update_mask_snake_case_and_name_in_body(http):
    """gRPC and Node send snake_case masks; Node and Rust keep `name` in the body."""
    q = _queue(http)
    r = http(
        "PATCH",
        q,
        params={"updateMask": "rate_limits.max_dispatches_per_second"},
        json={"name": q, "rateLimits": {"maxDispatchesPerSecond": 7, "maxConcurrentDispatches": 9}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["rateLimits"]["maxDispatchesPerSecond"] == 7
    assert r.json()["rateLimits"]["maxConcurrentDispatches"] == 1000


def test_rust_style_empty_list_params(http):
    """The Rust client always sends pageSize=0&pageToken=&responseView=0: unset values."""
    q = _queue(http)
    for _ in range(3):
        assert http("POST", f"{q}/tasks", json={"task": {"httpRequest": {"url": "https://example.com"}}}).status_code == 200
    r = http("GET", f"{q}/tasks", params={"responseView": "0", "pageSize": "0", "pageToken": ""})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["tasks"]) == 3
    assert "nextPageToken" not in body
    r = http("GET", f"{PARENT}/queues", params={"pageSize": "0", "pageToken": "", "filter": ""})
    assert r.status_code == 200, r.text


def test_error_body_shape(http):
    r = http("GET", queue_name(unique("missing")))
    assert r.status_code == 404
    assert r.headers["content-type"] == JSON_CT
    assert r.json() == {"error": {"code": 404, "message": QUEUE_NOT_FOUND, "status": "NOT_FOUND"}}


def test_unknown_path_is_json_404(server):
    r = requests.get(f"{server.url}/v2/no/such/thing", timeout=5)
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == 404 and err["status"] == "NOT_FOUND"
