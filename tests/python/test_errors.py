"""Error answers through the official Python client (REST): verbatim texts of spec §2.1 and
INVALID_ARGUMENT for CreateTask validation (spec §3.2, §3.3, §5; checklist #20)."""

from __future__ import annotations

import datetime as dt

import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from stratus_helpers import (
    QUEUE_NOT_FOUND,
    TASK_ID_HELP,
    URL_REQUIRED,
    URL_SCHEME,
    create_queue,
    help_links,
    http_task,
    queue_mismatch_message,
    queue_name,
    rpc_error,
    task_id_message,
    unique,
    utcnow,
)


@pytest.fixture
def queue(client) -> str:
    return create_queue(client).name


def test_get_queue_not_found_text(client):
    with rpc_error(gexc.NotFound, "NOT_FOUND", QUEUE_NOT_FOUND) as info:
        client.get_queue(name=queue_name(unique("never")))
    # The client's own message ends with the server's text.
    assert str(info.value).endswith(QUEUE_NOT_FOUND), str(info.value)


@pytest.mark.parametrize("task_id", ["bad!id", "has.dot", "x" * 501])
def test_invalid_task_id(client, queue, task_id):
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT", task_id_message(task_id)) as info:
        client.create_task(parent=queue, task=http_task(name=f"{queue}/tasks/{task_id}"))
    assert help_links(info.value) == [TASK_ID_HELP]


def test_task_id_limits_accepted(client, queue):
    for task_id in ["a", "A-z_0-9", "y" * 500]:
        t = client.create_task(parent=queue, task=http_task(name=f"{queue}/tasks/{task_id}"))
        assert t.name.endswith(f"/tasks/{task_id}")


def test_task_in_other_queue(client, queue):
    other = create_queue(client).name
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT", queue_mismatch_message(queue, other)):
        client.create_task(parent=queue, task=http_task(name=f"{other}/tasks/t1"))


def test_url_required(client, queue):
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT", URL_REQUIRED):
        client.create_task(parent=queue, task=http_task(url=""))


def test_ftp_url(client, queue):
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT", URL_SCHEME):
        client.create_task(parent=queue, task=http_task(url="ftp://example.com/x"))


INVALID_TASKS = {
    "get_with_body": lambda: http_task(http_method=tasks_v2.HttpMethod.GET, http_body=b"payload"),
    "head_with_body": lambda: http_task(http_method=tasks_v2.HttpMethod.HEAD, http_body=b"payload"),
    "delete_with_body": lambda: http_task(http_method=tasks_v2.HttpMethod.DELETE, http_body=b"payload"),
    "ftp_url": lambda: http_task(url="ftp://example.com/x"),
    "deadline_5s": lambda: http_task(dispatch_deadline=dt.timedelta(seconds=5)),
    "deadline_14s": lambda: http_task(dispatch_deadline=dt.timedelta(seconds=14)),
    "deadline_1801s": lambda: http_task(dispatch_deadline=dt.timedelta(seconds=1801)),
    "schedule_plus_31_days": lambda: http_task(schedule_time=utcnow() + dt.timedelta(days=31)),
    "no_target": lambda: tasks_v2.Task(),
}


@pytest.mark.parametrize("case", sorted(INVALID_TASKS))
def test_invalid_create_task_arguments(client, queue, case):
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT"):
        client.create_task(parent=queue, task=INVALID_TASKS[case]())
    assert list(client.list_tasks(parent=queue)) == []  # nothing was stored


def test_boundary_values_accepted(client, queue):
    for seconds in (15, 1800):
        t = client.create_task(parent=queue, task=http_task(dispatch_deadline=dt.timedelta(seconds=seconds)))
        assert t.dispatch_deadline == dt.timedelta(seconds=seconds)
    when = utcnow() + dt.timedelta(days=29)
    assert client.create_task(parent=queue, task=http_task(schedule_time=when)).schedule_time > utcnow()
    # Body with POST, PUT and PATCH is fine.
    for method in (tasks_v2.HttpMethod.POST, tasks_v2.HttpMethod.PUT, tasks_v2.HttpMethod.PATCH):
        t = client.create_task(
            request={
                "parent": queue,
                "task": http_task(http_method=method, http_body=b"b"),
                "response_view": tasks_v2.Task.View.FULL,
            }
        )
        assert t.http_request.body == b"b"


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_dispatches_per_second", 501),
        ("max_dispatches_per_second", -1),
        ("max_concurrent_dispatches", 5001),
    ],
)
def test_invalid_rate_limits(client, field, value):
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT"):
        create_queue(client, rate_limits=tasks_v2.RateLimits(**{field: value}))


@pytest.mark.parametrize(
    "retry",
    [
        {"max_attempts": -2},
        {"max_doublings": -1},
        {"min_backoff": dt.timedelta(seconds=10), "max_backoff": dt.timedelta(seconds=5)},
    ],
    ids=["max_attempts_-2", "max_doublings_-1", "min_gt_max_backoff"],
)
def test_invalid_retry_config(client, retry):
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT"):
        create_queue(client, retry_config=tasks_v2.RetryConfig(**retry))
