"""Property-based HTTP fuzzing of the REST API against a real `stratus serve` (hypothesis).

Every route of the Cloud Tasks v2 REST API and of Stratus' own `/stratus/v1/` API is driven
with generated requests: paths from the route templates with fuzzed segments (percent-encoding,
custom verbs, `..`, empty segments, unicode), natural and odd methods, query strings, and
bodies (valid-ish shapes with fuzzed values, arbitrary JSON, raw bytes). One more property
sends arbitrary bytes straight down a TCP connection.

Properties: no response is 5xx; every error is JSON with the Cloud Tasks error shape
`{"error":{"code","message","status"}}` whose `code` is the HTTP status and whose `status`
is the canonical name of that code; every success is a JSON object with no null in it.
Afterwards `/healthz` answers and a normal CreateQueue / CreateTask / GetTask still works.

The server runs with --no-dispatch, so no task a body names is ever sent anywhere; the URLs
generated point at closed ports on 127.0.0.1 anyway. The run is bounded by max_examples
(STRATUS_FUZZ_EXAMPLES scales them, default 1.0) and a per-example deadline; the requests
sent by method and route class and the status counts are printed at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import string
from collections import Counter
from urllib.parse import quote, urlencode

import tempfile

# Hypothesis keeps caches in a storage directory (default ./.hypothesis): keep it out of the tree.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "stratus-hypothesis")
)

import pytest  # noqa: E402
import requests  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import StratusServer  # noqa: E402

SCALE = float(os.environ.get("STRATUS_FUZZ_EXAMPLES", "1.0"))
TIMEOUT_S = 10.0

PROJECT = "fuzz"
LOCATION = "l"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
QUEUES = ["q", "q2", "fuzz-1"]
TASKS = ["t1", "t2", "x"]

# Canonical status name → HTTP code (google.rpc.Code mapping of the REST error body).
HTTP_OF = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}

SENT: Counter = Counter()  # (method, route class) → requests
STATUSES: Counter = Counter()  # HTTP status → responses


def _settings(examples: int):
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=dt.timedelta(seconds=TIMEOUT_S + 5),
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# --------------------------------------------------------------------------- server


@pytest.fixture(scope="module")
def fuzz_server():
    """A server of its own: no dispatch, zero name-reuse windows so resources can be re-made."""
    server = StratusServer(
        "fuzz", ["--no-dispatch", "--task-tombstone", "0s", "--queue-reuse-block", "0s"]
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def http(fuzz_server):
    s = requests.Session()
    s.trust_env = False  # loopback only, never through a proxy
    s.base = fuzz_server.url
    _seed(s)
    yield s
    s.close()


def _future(days: float = 1) -> str:
    t = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _seed(s: requests.Session) -> None:
    """(Re-)creates the queues and tasks the real IDs in generated paths address."""
    for q in QUEUES:
        name = f"{PARENT}/queues/{q}"
        s.post(f"{s.base}/v2/{PARENT}/queues", json={"name": name}, timeout=TIMEOUT_S)
        s.post(f"{s.base}/v2/{name}:resume", timeout=TIMEOUT_S)
        for t in TASKS:
            body = {
                "task": {
                    "name": f"{name}/tasks/{t}",
                    "httpRequest": {"url": "http://127.0.0.1:9/x"},
                    "scheduleTime": _future(),
                }
            }
            s.post(f"{s.base}/v2/{name}/tasks", json=body, timeout=TIMEOUT_S)


# --------------------------------------------------------------------------- strategies

ID_CHARS = string.ascii_letters + string.digits + "-_"


def _pct(text: str) -> str:
    return quote(text, safe="")


def mostly(percent: int, common: st.SearchStrategy, rare: st.SearchStrategy) -> st.SearchStrategy:
    """`common` in about `percent`% of the examples, else `rare`.

    Hypothesis' own choice among `one_of` branches favours the rare ones and deduplicates
    repeats, so weights are drawn explicitly.
    """
    return st.integers(0, 99).flatmap(lambda n: common if n < percent else rare)


def seg(real: list[str]) -> st.SearchStrategy[str]:
    """A path segment: usually a real ID, otherwise something odd (already URI-safe)."""
    return mostly(85, st.sampled_from(real), st.one_of(
        st.text(ID_CHARS, max_size=12),
        st.text(max_size=12).map(_pct),
        st.sampled_from(
            ["", "..", ".", "%2F", "%2e%2e", "%00", "%25", "%3A", "a%2Fb", "%C3%28", "q:pause",
             "tasks", "queues", ":", "::", "~", "a.b", "_"]
        ),
        st.integers(101, 600).map(lambda n: "a" * n),
    ))


def verb(real: list[str]) -> st.SearchStrategy[str]:
    return mostly(
        90,
        st.one_of(st.just(""), st.sampled_from(real).map(lambda v: ":" + v)),
        st.text(string.ascii_letters, max_size=10).map(lambda v: ":" + v),
    )


# Leaves with the edge cases of each proto3 JSON type.
ODD_STRINGS = st.sampled_from(
    [
        "", "=", "YQ", "YQ==", "YQ===", "_-_-", "!!!", "YWJj\n", "\u0000", "\ud7ff\ue000",
        "0s", "-1s", "3.5s", "0.0000000001s", "315576000001s", "99999999999999999999s", "s",
        "2030-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
        "10000-01-01T00:00:00Z", "2030-02-30T00:00:00Z", "2030-01-01T00:00:00+14:00",
        "NaN", "Infinity", "-Infinity", "1e999", "9223372036854775808", "-0", "0x10",
        "POST", "FULL", "PAUSED", "HTTPS", "post", "http://127.0.0.1:9/x", "https://127.0.0.1:1/",
        "http://[::1]:9/", "ftp://127.0.0.1/", "http://", f"{PARENT}/queues/q",
        f"{PARENT}/queues/q/tasks/t1", "projects/p/locations/l/queues/bad_id", "a,b", "*",
    ]
)
STRINGS = st.one_of(ODD_STRINGS, st.text(max_size=40), st.integers(1_000, 70_000).map(lambda n: "x" * n))
NUMBERS = st.one_of(
    st.integers(-(2**63), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 315_576_000_000, 0.5, 1e308]),
)
JSON_ANY = st.recursive(
    st.none() | st.booleans() | NUMBERS | STRINGS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


def loose(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly the right type, sometimes any JSON value in its place."""
    return mostly(90, valid, JSON_ANY)


def msg(fields: dict) -> st.SearchStrategy:
    """A JSON object with any subset of `fields` (valid-ish values) and rarely an unknown one."""
    obj = st.fixed_dictionaries({}, optional={k: loose(v) for k, v in fields.items()})
    extra = st.dictionaries(st.sampled_from(["colour", "@type", "name_", "Task"]), JSON_ANY, max_size=1)
    return mostly(95, obj, st.tuples(obj, extra).map(lambda p: {**p[0], **p[1]}))


S, I, D, B = STRINGS, NUMBERS, NUMBERS, st.booleans()
ENUM = lambda *names: st.one_of(st.sampled_from(list(names)), st.integers(-3, 12))  # noqa: E731
METHODS = ENUM("HTTP_METHOD_UNSPECIFIED", "POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS")
VIEW = ENUM("VIEW_UNSPECIFIED", "BASIC", "FULL")
HEADERS = st.dictionaries(st.one_of(st.text(string.ascii_letters + "-", min_size=1, max_size=12), st.text(max_size=8)), STRINGS, max_size=4)
URLS = st.one_of(
    st.integers(1, 65535).map(lambda p: f"http://127.0.0.1:{p}/x"),
    st.builds(lambda p, path: f"http://127.0.0.1:{p}/{_pct(path)}", st.integers(1, 20), st.text(max_size=10)),
    ODD_STRINGS,
)
OAUTH = msg({"serviceAccountEmail": S, "scope": S})
OIDC = msg({"serviceAccountEmail": S, "audience": S})
ROUTING = msg({"service": S, "version": S, "instance": S, "host": S})
TASK = msg(
    {
        "name": S,
        "httpRequest": msg({"url": URLS, "httpMethod": METHODS, "headers": HEADERS, "body": S, "oauthToken": OAUTH, "oidcToken": OIDC}),
        "appEngineHttpRequest": msg({"httpMethod": METHODS, "appEngineRouting": ROUTING, "relativeUri": S, "headers": HEADERS, "body": S}),
        "scheduleTime": S,
        "dispatchDeadline": S,
        "dispatchCount": I,
        "view": VIEW,
    }
)
CREATE_TASK = msg({"task": TASK, "responseView": VIEW})
QUEUE = msg(
    {
        "name": S,
        "appEngineRoutingOverride": ROUTING,
        "httpTarget": msg(
            {
                "uriOverride": msg(
                    {
                        "scheme": ENUM("SCHEME_UNSPECIFIED", "HTTP", "HTTPS"),
                        "host": S,
                        "port": st.one_of(I, S),
                        "pathOverride": msg({"path": S}),
                        "queryOverride": msg({"queryParams": S}),
                        "uriOverrideEnforceMode": ENUM("IF_NOT_EXISTS", "ALWAYS", "URI_OVERRIDE_ENFORCE_MODE_UNSPECIFIED"),
                    }
                ),
                "httpMethod": METHODS,
                "headerOverrides": st.lists(msg({"header": msg({"key": S, "value": S})}), max_size=3),
                "oauthToken": OAUTH,
                "oidcToken": OIDC,
            }
        ),
        "rateLimits": msg({"maxDispatchesPerSecond": D, "maxBurstSize": I, "maxConcurrentDispatches": I}),
        "retryConfig": msg({"maxAttempts": I, "maxRetryDuration": S, "minBackoff": S, "maxBackoff": S, "maxDoublings": I}),
        "state": ENUM("STATE_UNSPECIFIED", "RUNNING", "PAUSED", "DISABLED"),
        "purgeTime": S,
        "stackdriverLoggingConfig": msg({"samplingRatio": D}),
    }
)
BODIES = {
    "queue": QUEUE,
    "create_task": CREATE_TASK,
    "batch_create": msg({"requests": st.lists(CREATE_TASK, max_size=4), "requestId": S}),
    "batch_delete": msg({"names": st.lists(st.one_of(S, st.sampled_from([f"{PARENT}/queues/q/tasks/{t}" for t in TASKS])), max_size=4), "requestId": S}),
    "run": msg({"responseView": VIEW}),
    "named": msg({"name": S}),
    "set_iam": msg(
        {
            "policy": msg(
                {
                    "version": I,
                    "bindings": st.lists(msg({"role": S, "members": st.lists(S, max_size=3), "condition": msg({"expression": S, "title": S})}), max_size=3),
                    "etag": S,
                }
            ),
            "updateMask": S,
        }
    ),
    "get_iam": msg({"options": msg({"requestedPolicyVersion": I})}),
    "test_iam": msg({"permissions": st.lists(S, max_size=4)}),
    "cmek": msg({"name": S, "kmsKey": S}),
    "empty": st.just({}),
}


def body(kind: str) -> st.SearchStrategy[bytes]:
    shaped = BODIES[kind].map(lambda v: json.dumps(v).encode())
    return mostly(75, shaped, st.one_of(
        st.just(b""),
        JSON_ANY.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=64),
        st.sampled_from([b"{", b"[]", b"null", b'{"a":' * 200 + b"1" + b"}" * 200, b"[" * 2000 + b"]" * 2000, b'"\\ud800"', b"1e999"]),
    ))


QUERY_KEYS = st.one_of(
    st.sampled_from(["pageSize", "page_size", "pageToken", "filter", "responseView", "response_view", "updateMask", "$alt", "alt"]),
    st.text(max_size=6),
)
QUERY_VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1", "1000", "2147483648", "99999999999999999999", "x", "FULL", "7",
                     "json;enum-encoding=int", "state: PAUSED", "name:projects/p AND state!=RUNNING",
                     "rateLimits,retryConfig.maxAttempts", "*", ""]),
    st.text(max_size=30),
)
QUERY = st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=4).map(urlencode)
ODD_METHODS = st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS", "TRACE", "FUZZ"])


def request_for(route: str, path: st.SearchStrategy, kind: str, methods: list[str]):
    """(route class, method, path, query, body) for one route template."""
    return st.tuples(
        st.just(route),
        mostly(80, st.sampled_from(methods), ODD_METHODS),
        path,
        QUERY,
        body(kind),
    )


P, L = seg([PROJECT]), seg([LOCATION])
Q, T = seg(QUEUES), seg(TASKS)
LOC = st.tuples(P, L).map(lambda x: f"projects/{x[0]}/locations/{x[1]}")
QUEUE_PATH = st.tuples(LOC, Q).map(lambda x: f"{x[0]}/queues/{x[1]}")
TASK_PATH = st.tuples(QUEUE_PATH, T).map(lambda x: f"{x[0]}/tasks/{x[1]}")
QUEUE_VERBS = {"pause": "named", "resume": "named", "purge": "named", "getIamPolicy": "get_iam",
               "setIamPolicy": "set_iam", "testIamPermissions": "test_iam"}

LOCATION_ROUTES = st.one_of(
    request_for("locations", P.map(lambda p: f"/v2/projects/{p}/locations"), "empty", ["GET"]),
    request_for("location", LOC.map(lambda n: f"/v2/{n}"), "empty", ["GET"]),
    request_for("cmekConfig", LOC.map(lambda n: f"/v2/{n}/cmekConfig"), "cmek", ["GET", "PATCH"]),
    request_for("operation", st.tuples(LOC, seg(["op-1", "0"])).map(lambda x: f"/v2/{x[0]}/operations/{x[1]}"), "empty", ["GET"]),
)
QUEUE_ROUTES = st.one_of(
    request_for("queues", LOC.map(lambda n: f"/v2/{n}/queues"), "queue", ["GET", "POST"]),
    request_for("queue", QUEUE_PATH.map(lambda n: f"/v2/{n}"), "queue", ["GET", "PATCH", "DELETE"]),
    *[
        request_for(f"queue:{v}", st.tuples(QUEUE_PATH, verb([v])).map(lambda x: f"/v2/{x[0]}{x[1]}"), kind, ["POST"])
        for v, kind in QUEUE_VERBS.items()
    ],
)
TASK_ROUTES = st.one_of(
    request_for("tasks", QUEUE_PATH.map(lambda n: f"/v2/{n}/tasks"), "create_task", ["GET", "POST"]),
    request_for("tasks:batchCreate", st.tuples(QUEUE_PATH, verb(["batchCreate"])).map(lambda x: f"/v2/{x[0]}/tasks{x[1]}"), "batch_create", ["POST"]),
    request_for("tasks:batchDelete", st.tuples(QUEUE_PATH, verb(["batchDelete"])).map(lambda x: f"/v2/{x[0]}/tasks{x[1]}"), "batch_delete", ["POST"]),
    request_for("task", TASK_PATH.map(lambda n: f"/v2/{n}"), "empty", ["GET", "DELETE"]),
    request_for("task:run", st.tuples(TASK_PATH, verb(["run"])).map(lambda x: f"/v2/{x[0]}{x[1]}"), "run", ["POST"]),
)
STRATUS_ROUTES = st.one_of(
    request_for("stratus:failedTasks", QUEUE_PATH.map(lambda n: f"/stratus/v1/{n}/failedTasks"), "empty", ["GET"]),
    request_for("stratus:task", TASK_PATH.map(lambda n: f"/stratus/v1/{n}"), "empty", ["GET"]),
    request_for("stratus:retry", st.tuples(TASK_PATH, verb(["retry"])).map(lambda x: f"/stratus/v1/{x[0]}{x[1]}"), "empty", ["POST"]),
)
OFF_ROUTES = st.one_of(
    request_for("off-template /v2", st.lists(seg(["projects", "locations", "queues", "tasks", PROJECT]), max_size=12).map(lambda s: "/v2/" + "/".join(s)), "empty", ["GET", "POST", "PATCH", "DELETE"]),
    request_for("off-template", st.lists(st.text(string.ascii_letters + string.digits + "%:._~-", max_size=8), max_size=6).map(lambda s: "/" + "/".join(s)), "empty", ["GET", "POST"]),
)


# --------------------------------------------------------------------------- checks


def send(http: requests.Session, route: str, method: str, path: str, query: str, data: bytes) -> requests.Response:
    url = f"{http.base}{path}" + (f"?{query}" if query else "")
    SENT[(method, route)] += 1
    r = http.request(method, url, data=data, headers={"content-type": "application/json"}, timeout=TIMEOUT_S)
    STATUSES[r.status_code] += 1
    return r


def has_null(v) -> bool:
    if v is None:
        return True
    if isinstance(v, list):
        return any(has_null(x) for x in v)
    if isinstance(v, dict):
        return any(has_null(x) for x in v.values())
    return False


def check(r: requests.Response, method: str, path: str) -> None:
    what = f"{method} {path} → {r.status_code}: {r.text[:300]!r}"
    assert r.status_code < 500, what
    if method == "HEAD" and not r.content:
        return
    if r.status_code == 405 and not r.content:
        # Method routing of /healthz (outside the API), answered by the HTTP layer.
        assert path.startswith("/healthz"), what
        return
    try:
        v = r.json()
    except ValueError:
        raise AssertionError(f"not JSON: {what}") from None
    assert isinstance(v, dict), what
    if r.status_code >= 400:
        err = v.get("error")
        assert isinstance(err, dict), what
        assert err.get("code") == r.status_code, what
        assert isinstance(err.get("message"), str) and err["message"].strip(), what
        assert HTTP_OF.get(err.get("status")) == r.status_code, what
    else:
        assert r.status_code == 200, what
        assert not has_null(v), what


def run_one(http, req) -> None:
    route, method, path, query, data = req
    r = send(http, route, method, path, query, data)
    check(r, method, path)
    # Keep the addressed resources alive (fuzzed calls delete, pause and purge them).
    if sum(SENT.values()) % 30 == 0:
        _seed(http)


# --------------------------------------------------------------------------- properties


@_settings(1000)
@given(req=LOCATION_ROUTES)
def test_fuzz_location_routes(http, req):
    run_one(http, req)


@_settings(3000)
@given(req=QUEUE_ROUTES)
def test_fuzz_queue_routes(http, req):
    run_one(http, req)


@_settings(3000)
@given(req=TASK_ROUTES)
def test_fuzz_task_routes(http, req):
    run_one(http, req)


@_settings(1000)
@given(req=STRATUS_ROUTES)
def test_fuzz_stratus_routes(http, req):
    run_one(http, req)


@_settings(800)
@given(req=OFF_ROUTES)
def test_fuzz_off_template_paths(http, req):
    run_one(http, req)


@_settings(300)
@given(
    data=st.one_of(
        st.binary(max_size=256),
        st.builds(
            lambda m, p, rest: m + b" " + p + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + rest,
            st.sampled_from([b"GET", b"POST", b"PATCH", b"\x00", b"G\xffT"]),
            st.sampled_from([b"/v2/", b"/healthz", b"/v2/projects/p/locations/l/queues", b"*", b"%%", b"/\xff"]),
            st.binary(max_size=128),
        ),
    )
)
def test_fuzz_raw_tcp(fuzz_server, data):
    """Arbitrary bytes down a connection: whatever comes back is not a 5xx."""
    SENT[("raw", "tcp")] += 1
    with socket.create_connection(("127.0.0.1", fuzz_server.port), timeout=2) as c:
        got = b""
        try:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            # The server answered and closed first (a refused request line): read what it said.
            pass
        try:
            while len(got) < 65536:
                chunk = c.recv(4096)
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
    if got.startswith(b"HTTP/1.1 "):
        status = int(got[9:12])
        STATUSES[status] += 1
        assert status < 500, got[:300]


def test_server_still_healthy(http, capsys):
    """After the fuzz: health answers, a normal CreateQueue / CreateTask / GetTask works."""
    r = http.get(f"{http.base}/healthz", timeout=TIMEOUT_S)
    assert r.status_code == 200 and r.text.strip() == "ok"
    queue = f"{PARENT}/queues/after-fuzz"
    r = http.post(f"{http.base}/v2/{PARENT}/queues", json={"name": queue}, timeout=TIMEOUT_S)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == queue
    task = {"task": {"name": f"{queue}/tasks/a1", "httpRequest": {"url": "http://127.0.0.1:9/x"}, "scheduleTime": _future()}}
    r = http.post(f"{http.base}/v2/{queue}/tasks", json=task, timeout=TIMEOUT_S)
    assert r.status_code == 200, r.text
    r = http.get(f"{http.base}/v2/{queue}/tasks/a1", timeout=TIMEOUT_S)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == f"{queue}/tasks/a1"

    total = sum(SENT.values())
    api = total - SENT[("raw", "tcp")]
    if api >= 200:
        # The fuzz must have reached the service: successes and refusals both.
        assert STATUSES[200] > 0 and STATUSES[400] > 0, STATUSES
    by_route = Counter()
    by_method = Counter()
    for (method, route), n in SENT.items():
        by_route[route] += n
        by_method[method] += n
    lines = [
        f"HTTP fuzz: {total} requests",
        "  by method: " + ", ".join(f"{m} {n}" for m, n in by_method.most_common()),
        "  by route class: " + ", ".join(f"{k} {n}" for k, n in sorted(by_route.items())),
        "  statuses: " + ", ".join(f"{s} {n}" for s, n in sorted(STATUSES.items())),
    ]
    with capsys.disabled():
        print()
        for line in lines:
            print(line)
