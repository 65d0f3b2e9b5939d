"""Task RPCs through the official Python client (REST): Create/Get/List/Delete/Run
(spec §2.1, §3.2, §6.5 stored headers, §7 views and dedup)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from stratus_helpers import (
    ENTITY_NOT_FOUND,
    QUEUE_NOT_FOUND,
    TARGET_URL,
    TASK_ALREADY_EXISTS,
    TASK_EXISTED_TOO_RECENTLY,
    TASK_GONE,
    create_queue,
    http_task,
    queue_name,
    rpc_error,
    unique,
    utcnow,
)

View = tasks_v2.Task.View
BODY = b'{"hello":"world"}'
SLACK = dt.timedelta(seconds=2)


@pytest.fixture
def queue(client) -> str:
    """A fresh queue for the test; returns its name."""
    return create_queue(client).name


def test_create_task_generated_name_basic_view(client, queue):
    before = utcnow()
    t = client.create_task(
        parent=queue,
        task=http_task(http_headers={"content-type": "application/json"}, http_body=BODY),
    )
    after = utcnow()
    m = re.fullmatch(re.escape(queue) + r"/tasks/(\d+)", t.name)
    assert m, t.name  # a generated, decimal task ID
    assert t.view == View.BASIC
    req = t.http_request
    assert req.url == TARGET_URL
    assert req.http_method == tasks_v2.HttpMethod.POST
    assert req.body == b""  # BASIC omits the body ...
    assert dict(req.headers) == {  # ... but keeps the headers, user keys verbatim
        "content-type": "application/json",
        "User-Agent": "Google-Cloud-Tasks",
    }
    assert t.dispatch_deadline == dt.timedelta(seconds=600)
    assert before - SLACK <= t.schedule_time <= after + SLACK  # absent = now
    assert before - SLACK <= t.create_time <= after + SLACK
    assert t.create_time.microsecond == 0  # whole seconds
    assert t.dispatch_count == 0 and t.response_count == 0
    assert "first_attempt" not in t and "last_attempt" not in t


def test_generated_names_differ(client, queue):
    names = {client.create_task(parent=queue, task=http_task()).name for _ in range(3)}
    assert len(names) == 3


def test_create_task_with_name(client, queue):
    name = f"{queue}/tasks/{unique('named')}"
    t = client.create_task(parent=queue, task=http_task(name=name))
    assert t.name == name
    assert client.get_task(name=name).name == name


def test_create_task_with_schedule_time(client, queue):
    when = (utcnow() + dt.timedelta(hours=1)).replace(microsecond=123456)
    t = client.create_task(parent=queue, task=http_task(schedule_time=when))
    assert t.schedule_time == when  # µs precision kept
    assert client.get_task(name=t.name).schedule_time == when


def test_create_task_past_schedule_time_becomes_now(client, queue):
    before = utcnow()
    t = client.create_task(parent=queue, task=http_task(schedule_time=before - dt.timedelta(days=3)))
    assert before - SLACK <= t.schedule_time <= utcnow() + SLACK


def test_create_task_with_oidc_token(client, queue):
    oidc = tasks_v2.OidcToken(service_account_email="sa@p.iam.gserviceaccount.com", audience="https://aud.example")
    t = client.create_task(parent=queue, task=http_task(http_oidc_token=oidc))
    assert t.http_request.oidc_token.service_account_email == "sa@p.iam.gserviceaccount.com"
    assert t.http_request.oidc_token.audience == "https://aud.example"
    assert "oauth_token" not in t.http_request
    got = client.get_task(name=t.name)
    assert got.http_request.oidc_token == t.http_request.oidc_token


def test_create_task_with_explicit_deadline_and_method(client, queue):
    t = client.create_task(
        parent=queue,
        task=http_task(http_method=tasks_v2.HttpMethod.PUT, dispatch_deadline=dt.timedelta(seconds=30)),
    )
    assert t.http_request.http_method == tasks_v2.HttpMethod.PUT
    assert t.dispatch_deadline == dt.timedelta(seconds=30)


def test_create_task_full_view_returns_body(client, queue):
    t = client.create_task(
        request={"parent": queue, "task": http_task(http_body=BODY), "response_view": View.FULL}
    )
    assert t.view == View.FULL
    assert t.http_request.body == BODY
    assert t.http_request.headers["User-Agent"] == "Google-Cloud-Tasks"


def test_get_task_basic_vs_full(client, queue):
    t = client.create_task(parent=queue, task=http_task(http_body=BODY, http_headers={"X-Custom": "v"}))
    basic = client.get_task(name=t.name)  # default view: BASIC
    assert basic.view == View.BASIC
    assert basic.http_request.body == b""
    assert basic.http_request.headers["X-Custom"] == "v"
    explicit_basic = client.get_task(request={"name": t.name, "response_view": View.BASIC})
    assert explicit_basic == basic
    full = client.get_task(request={"name": t.name, "response_view": View.FULL})
    assert full.view == View.FULL
    assert full.http_request.body == BODY
    assert full.http_request.headers["X-Custom"] == "v"
    assert full.name == basic.name and full.schedule_time == basic.schedule_time
    assert full.create_time == basic.create_time


def test_get_task_never_existed(client, queue):
    with rpc_error(gexc.NotFound, "NOT_FOUND", ENTITY_NOT_FOUND):
        client.get_task(name=f"{queue}/tasks/nope")


def test_list_tasks_pages(client, queue):
    created = {client.create_task(parent=queue, task=http_task(http_body=BODY)).name for _ in range(5)}
    pages = list(client.list_tasks(request={"parent": queue, "page_size": 2}).pages)
    assert len(pages) == 3
    assert [len(p.tasks) for p in pages] == [2, 2, 1]
    tokens = [p.next_page_token for p in pages]
    assert tokens[0] and tokens[1] and tokens[2] == ""
    names = [t.name for p in pages for t in p.tasks]
    assert len(names) == 5 and set(names) == created
    for p in pages:
        for t in p.tasks:
            assert t.view == View.BASIC and t.http_request.body == b""
    # A raw token fetched by hand continues the listing.
    second = client.list_tasks(request={"parent": queue, "page_size": 2, "page_token": tokens[0]})
    assert [t.name for t in second.tasks] == names[2:4]
    # FULL view in listings carries the body.
    full = list(client.list_tasks(request={"parent": queue, "response_view": View.FULL}))
    assert len(full) == 5
    assert all(t.view == View.FULL and t.http_request.body == BODY for t in full)


def test_list_tasks_missing_queue(client):
    with rpc_error(gexc.NotFound, "NOT_FOUND", QUEUE_NOT_FOUND):
        list(client.list_tasks(parent=queue_name(unique("missing"))))


def test_delete_task_then_get(client, queue):
    t = client.create_task(parent=queue, task=http_task())
    client.delete_task(name=t.name)
    with rpc_error(gexc.NotFound, "NOT_FOUND", TASK_GONE):
        client.get_task(name=t.name)
    assert list(client.list_tasks(parent=queue)) == []
    with rpc_error(gexc.NotFound, "NOT_FOUND"):
        client.delete_task(name=t.name)


def test_delete_task_never_existed(client, queue):
    with rpc_error(gexc.NotFound, "NOT_FOUND", ENTITY_NOT_FOUND):
        client.delete_task(name=f"{queue}/tasks/nope")


def test_create_duplicate_name_conflicts(client, queue):
    name = f"{queue}/tasks/{unique('dup')}"
    client.create_task(parent=queue, task=http_task(name=name))
    with rpc_error(gexc.Conflict, "ALREADY_EXISTS", TASK_ALREADY_EXISTS):
        client.create_task(parent=queue, task=http_task(name=name))


def test_create_after_delete_conflicts(client, queue):
    name = f"{queue}/tasks/{unique('tomb')}"
    client.create_task(parent=queue, task=http_task(name=name))
    client.delete_task(name=name)
    with rpc_error(gexc.Conflict, "ALREADY_EXISTS", TASK_EXISTED_TOO_RECENTLY):
        client.create_task(parent=queue, task=http_task(name=name))


def test_create_task_missing_queue(client):
    with rpc_error(gexc.NotFound, "NOT_FOUND", QUEUE_NOT_FOUND):
        client.create_task(parent=queue_name(unique("missing")), task=http_task())


def test_run_task_refused_without_dispatcher(client, queue):
    t = client.create_task(parent=queue, task=http_task())
    # This server runs with --no-dispatch, so RunTask answers FAILED_PRECONDITION (a 400 on
    # REST, hence BadRequest). RunTask on a dispatching server is in test_dispatch.py.
    with rpc_error(gexc.BadRequest, "FAILED_PRECONDITION"):
        client.run_task(name=t.name)
    # The refused RunTask left the task alone.
    got = client.get_task(name=t.name)
    assert got.dispatch_count == 0
    assert got.schedule_time == t.schedule_time


def test_run_task_missing(client, queue):
    with rpc_error(gexc.NotFound, "NOT_FOUND", ENTITY_NOT_FOUND):
        client.run_task(name=f"{queue}/tasks/nope")
