"""Shared helpers of the compatibility suite: unique names, task builders, error checks."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid

import pytest
from google.cloud import tasks_v2

PROJECT = "stratus-py"
LOCATION = "local"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
TARGET_URL = "https://example.com/handler"

# Verbatim wire texts (spec §2.1, recorded from the real service).
QUEUE_NOT_FOUND = (
    "Queue does not exist. If you just created the queue, wait at least a minute for the "
    "queue to initialize."
)
QUEUE_ALREADY_EXISTS = "Queue already exists"
QUEUE_EXISTED_TOO_RECENTLY = (
    "The queue cannot be created because a queue with this name existed too recently."
)
ENTITY_NOT_FOUND = "Requested entity was not found."
TASK_ALREADY_EXISTS = "Requested entity already exists"
TASK_EXISTED_TOO_RECENTLY = (
    "The task cannot be created because a task with this name existed too recently."
)
TASK_GONE = (
    "The task no longer exists, though a task with this name existed recently. The task "
    "either successfully completed or was deleted."
)
QUEUE_NAME_FORMAT = (
    'Queue name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/'
    '<QUEUE_ID>".'
)
QUEUE_NAME_HELP = (
    "Definition of queue name",
    "https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues#Queue.FIELDS.name",
)
TASK_ID_HELP = (
    "Definition of task ID",
    "https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks#Task.FIELDS.name",
)
URL_SCHEME = "HttpTarget.url must start with 'http://' or 'https://'."
URL_REQUIRED = "HttpRequest.url is required."


def task_id_message(task_id: str) -> str:
    return (
        f'Task ID "{task_id}" can contain only letters ([A-Za-z]), numbers ([0-9]), hyphens '
        "(-), or underscores (_). Task ID must between 1 and 500 characters."
    )


def queue_mismatch_message(parent: str, task_queue: str) -> str:
    return (
        f"The queue name from request ('{parent}') must be the same as the queue name in the "
        f"named task ('{task_queue}')."
    )


# Canonical gRPC code name → HTTP status (spec §4).
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def unique(prefix: str) -> str:
    """A fresh resource ID (valid as a queue, task or project ID)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def queue_name(queue_id: str, parent: str = PARENT) -> str:
    return f"{parent}/queues/{queue_id}"


def create_queue(client, parent: str = PARENT, queue_id: str | None = None, **fields) -> tasks_v2.Queue:
    name = queue_name(queue_id or unique("q"), parent)
    return client.create_queue(parent=parent, queue=tasks_v2.Queue(name=name, **fields))


def http_task(name: str = "", url: str = TARGET_URL, **fields) -> tasks_v2.Task:
    """An HTTP-target task; `http_*` keyword arguments go to its HttpRequest."""
    req = {"url": url, "http_method": tasks_v2.HttpMethod.POST}
    for key in list(fields):
        if key.startswith("http_"):
            req[key[len("http_"):]] = fields.pop(key)
    if "method" in req:
        req["http_method"] = req.pop("method")
    return tasks_v2.Task(name=name, http_request=tasks_v2.HttpRequest(**req), **fields)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@contextlib.contextmanager
def rpc_error(exc_cls, status: str, message: str | None = None, contains: str | None = None):
    """Expects the block to raise exactly `exc_cls` for a REST error whose JSON body is
    `{"error": {"code": <http>, "message": ..., "status": <status>}}` (spec §4)."""
    with pytest.raises(exc_cls) as info:
        yield info
    err = info.value
    assert type(err) is exc_cls, f"expected {exc_cls.__name__}, got {type(err).__name__}: {err}"
    assert err.code == HTTP_STATUS[status], err
    assert err.response is not None, "the error carries no HTTP response"
    assert err.response.headers.get("content-type", "").startswith("application/json"), (
        err.response.headers
    )
    body = err.response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error.get("code") == HTTP_STATUS[status], error
    assert error.get("status") == status, error
    if message is not None:
        assert error.get("message") == message, error
    if contains is not None:
        assert contains in error.get("message", ""), error


def help_links(err) -> list[tuple[str, str]]:
    """(description, url) of every google.rpc.Help link in a REST error's details."""
    links = []
    for detail in err.response.json()["error"].get("details", []):
        if detail.get("@type") == "type.googleapis.com/google.rpc.Help":
            links += [(link.get("description"), link.get("url")) for link in detail.get("links", [])]
    return links


def poll(fn, what: str, timeout: float = 20.0):
    """Calls `fn` until it returns something truthy (every 20 ms, at most `timeout` seconds)
    and returns that; fails the test with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}; last value {last!r}")
