"""Queue RPCs through the official Python client (REST): Create/Get/List/Update/Delete,
Pause/Resume/Purge (spec §2, §2.1, §3.1, §7)."""

from __future__ import annotations

import datetime as dt

import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from stratus_helpers import (
    ENTITY_NOT_FOUND,
    LOCATION,
    PARENT,
    QUEUE_ALREADY_EXISTS,
    QUEUE_EXISTED_TOO_RECENTLY,
    QUEUE_NAME_FORMAT,
    QUEUE_NAME_HELP,
    QUEUE_NOT_FOUND,
    TASK_GONE,
    create_queue,
    help_links,
    http_task,
    queue_name,
    rpc_error,
    unique,
    utcnow,
)

State = tasks_v2.Queue.State


def assert_default_config(q: tasks_v2.Queue) -> None:
    assert q.rate_limits.max_dispatches_per_second == 500
    assert q.rate_limits.max_burst_size == 100
    assert q.rate_limits.max_concurrent_dispatches == 1000
    assert q.retry_config.max_attempts == 100
    assert q.retry_config.min_backoff == dt.timedelta(milliseconds=100)
    assert q.retry_config.max_backoff == dt.timedelta(seconds=3600)
    assert q.retry_config.max_doublings == 16
    assert q.retry_config.max_retry_duration == dt.timedelta(0)


def test_create_queue_echoes_defaults(client):
    name = queue_name(unique("q"))
    q = client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=name))
    assert q.name == name
    assert q.state == State.RUNNING
    assert_default_config(q)
    assert "purge_time" not in q  # unset until the first purge


def test_create_queue_keeps_given_config(client):
    q = create_queue(
        client,
        rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=20, max_concurrent_dispatches=30),
        retry_config=tasks_v2.RetryConfig(
            max_attempts=5, min_backoff=dt.timedelta(seconds=2), max_backoff=dt.timedelta(seconds=60), max_doublings=3
        ),
    )
    assert q.rate_limits.max_dispatches_per_second == 20
    assert q.rate_limits.max_concurrent_dispatches == 30
    assert q.rate_limits.max_burst_size > 0  # chosen by the server from the rate
    assert q.retry_config.max_attempts == 5
    assert q.retry_config.min_backoff == dt.timedelta(seconds=2)
    assert q.retry_config.max_backoff == dt.timedelta(seconds=60)
    assert q.retry_config.max_doublings == 3


def test_create_queue_twice_conflicts(client):
    q = create_queue(client)
    with rpc_error(gexc.Conflict, "ALREADY_EXISTS", QUEUE_ALREADY_EXISTS):
        client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=q.name))


def test_create_queue_malformed_name(client):
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT", QUEUE_NAME_FORMAT) as info:
        client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=f"{PARENT}/queues/bad_id!"))
    assert help_links(info.value) == [QUEUE_NAME_HELP]


def test_get_queue(client):
    created = create_queue(client)
    got = client.get_queue(name=created.name)
    assert got == created
    assert got.state == State.RUNNING
    assert_default_config(got)


def test_get_queue_missing(client):
    with rpc_error(gexc.NotFound, "NOT_FOUND", QUEUE_NOT_FOUND):
        client.get_queue(name=queue_name(unique("missing")))


def _fresh_parent() -> str:
    """A location of its own (unique project) so a listing sees only this test's queues."""
    return f"projects/{unique('proj')}/locations/{LOCATION}"


def test_list_queues_pages(client):
    parent = _fresh_parent()
    ids = sorted(unique(f"q{i}") for i in range(5))
    for qid in ids:
        create_queue(client, parent=parent, queue_id=qid)

    pager = client.list_queues(request={"parent": parent, "page_size": 2})
    pages = list(pager.pages)
    assert len(pages) == 3
    assert [len(p.queues) for p in pages] == [2, 2, 1]
    # Raw page tokens: opaque and non-empty except on the last page.
    tokens = [p.next_page_token for p in pages]
    assert tokens[0] and tokens[1] and tokens[0] != tokens[1]
    assert tokens[2] == ""
    names = [q.name for p in pages for q in p.queues]
    assert names == [queue_name(i, parent) for i in ids]  # lexicographic order

    # A raw token fetched by hand gives the second page.
    second = client.list_queues(request={"parent": parent, "page_size": 2, "page_token": tokens[0]})
    assert [q.name for q in second.queues] == names[2:4]
    assert second.next_page_token  # more to come

    # The item iterator walks all pages.
    assert [q.name for q in client.list_queues(request={"parent": parent, "page_size": 2})] == names
    # Without page_size everything fits in one page.
    only = list(client.list_queues(parent=parent).pages)
    assert len(only) == 1 and len(only[0].queues) == 5


def test_list_queues_empty_parent(client):
    pages = list(client.list_queues(parent=_fresh_parent()).pages)
    assert len(pages) == 1
    assert list(pages[0].queues) == []
    assert pages[0].next_page_token == ""


def test_list_queues_bad_page_token(client):
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT"):
        client.list_queues(request={"parent": PARENT, "page_token": "not-a-token"})


@pytest.mark.parametrize("bad_filter", ["state: BOGUS", "no operator here"])
def test_list_queues_bad_filter(client, bad_filter):
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT"):
        client.list_queues(request={"parent": PARENT, "filter": bad_filter})


def test_list_queues_negative_page_size(client):
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT"):
        client.list_queues(request={"parent": PARENT, "page_size": -1})


def test_list_queues_filter_state(client):
    parent = _fresh_parent()
    running = [create_queue(client, parent=parent).name for _ in range(2)]
    paused = create_queue(client, parent=parent).name
    client.pause_queue(name=paused)

    got = [q.name for q in client.list_queues(request={"parent": parent, "filter": "state: PAUSED"})]
    assert got == [paused]
    got = [q.name for q in client.list_queues(request={"parent": parent, "filter": "state: RUNNING"})]
    assert got == sorted(running)
    assert len(list(client.list_queues(parent=parent))) == 3
    # `=` and `!=` work like `:` (spec §2.1 ListQueues).
    got = [q.name for q in client.list_queues(request={"parent": parent, "filter": "state = PAUSED"})]
    assert got == [paused]
    got = [q.name for q in client.list_queues(request={"parent": parent, "filter": "state != PAUSED"})]
    assert got == sorted(running)


def test_list_queues_token_with_changed_filter(client):
    parent = _fresh_parent()
    for _ in range(3):
        create_queue(client, parent=parent)
    first = client.list_queues(request={"parent": parent, "page_size": 1})
    token = first.next_page_token
    assert token
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT"):
        client.list_queues(
            request={"parent": parent, "page_size": 1, "page_token": token, "filter": "state: PAUSED"}
        )


def test_update_queue_mask_replaces_only_masked_field(client):
    q = create_queue(
        client,
        rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=20, max_concurrent_dispatches=30),
        retry_config=tasks_v2.RetryConfig(max_attempts=5),
    )
    body = tasks_v2.Queue(
        name=q.name,
        rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=7, max_concurrent_dispatches=99),
        retry_config=tasks_v2.RetryConfig(max_attempts=9),
    )
    # snake_case here; the REST client sends updateMask=rateLimits.maxDispatchesPerSecond.
    updated = client.update_queue(queue=body, update_mask={"paths": ["rate_limits.max_dispatches_per_second"]})
    assert updated.name == q.name
    assert updated.rate_limits.max_dispatches_per_second == 7
    assert updated.rate_limits.max_concurrent_dispatches == 30
    assert updated.retry_config.max_attempts == 5
    assert updated.retry_config.min_backoff == q.retry_config.min_backoff
    assert updated.retry_config.max_backoff == q.retry_config.max_backoff
    assert updated.retry_config.max_doublings == q.retry_config.max_doublings
    assert updated.state == State.RUNNING
    # max_burst_size is output only and recomputed from the new rate: the same as a queue
    # created with that rate gets (not the stale value of the old rate).
    fresh = create_queue(client, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=7))
    assert updated.rate_limits.max_burst_size == fresh.rate_limits.max_burst_size
    assert client.get_queue(name=q.name) == updated


def test_update_queue_mask_two_paths(client):
    q = create_queue(client)
    body = tasks_v2.Queue(
        name=q.name,
        rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=3, max_concurrent_dispatches=4),
        retry_config=tasks_v2.RetryConfig(max_attempts=6, max_doublings=2),
    )
    updated = client.update_queue(
        queue=body,
        update_mask={"paths": ["rate_limits.max_concurrent_dispatches", "retry_config.max_attempts"]},
    )
    assert updated.rate_limits.max_dispatches_per_second == 500
    assert updated.rate_limits.max_concurrent_dispatches == 4
    assert updated.retry_config.max_attempts == 6
    assert updated.retry_config.max_doublings == 16


def test_update_queue_without_mask_replaces_all_mutable_fields(client):
    q = create_queue(
        client,
        rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=20, max_concurrent_dispatches=30),
        retry_config=tasks_v2.RetryConfig(max_attempts=5, max_doublings=3),
    )
    # No mask: every mutable field is replaced; fields absent from the body fall back to the
    # defaults. `state` is output only here and is ignored.
    updated = client.update_queue(
        queue=tasks_v2.Queue(
            name=q.name, state=State.PAUSED, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=10)
        )
    )
    assert updated.state == State.RUNNING
    assert updated.rate_limits.max_dispatches_per_second == 10
    assert updated.rate_limits.max_concurrent_dispatches == 1000
    assert updated.retry_config.max_attempts == 100
    assert updated.retry_config.max_doublings == 16
    assert client.get_queue(name=q.name) == updated


def test_update_queue_unknown_mask_path(client):
    q = create_queue(client)
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT"):
        client.update_queue(queue=tasks_v2.Queue(name=q.name), update_mask={"paths": ["no_such_field"]})


def test_update_queue_upserts_missing_queue(client):
    name = queue_name(unique("upsert"))
    with rpc_error(gexc.NotFound, "NOT_FOUND", QUEUE_NOT_FOUND):
        client.get_queue(name=name)
    q = client.update_queue(
        queue=tasks_v2.Queue(name=name, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=10))
    )
    assert q.name == name
    assert q.state == State.RUNNING
    assert q.rate_limits.max_dispatches_per_second == 10
    assert q.rate_limits.max_concurrent_dispatches == 1000
    assert q.retry_config.max_attempts == 100
    assert client.get_queue(name=name) == q


def test_pause_and_resume(client):
    q = create_queue(client)
    paused = client.pause_queue(name=q.name)
    assert paused.name == q.name
    assert paused.state == State.PAUSED
    assert client.get_queue(name=q.name).state == State.PAUSED
    # Paused queues still accept tasks.
    client.create_task(parent=q.name, task=http_task())
    assert client.pause_queue(name=q.name).state == State.PAUSED  # idempotent
    resumed = client.resume_queue(name=q.name)
    assert resumed.state == State.RUNNING
    assert client.get_queue(name=q.name).state == State.RUNNING
    assert client.resume_queue(name=q.name).state == State.RUNNING  # idempotent


def test_pause_resume_purge_missing_queue(client):
    name = queue_name(unique("missing"))
    for rpc in (client.pause_queue, client.resume_queue, client.purge_queue):
        with rpc_error(gexc.NotFound, "NOT_FOUND", QUEUE_NOT_FOUND):
            rpc(name=name)


def test_purge_queue(client):
    q = create_queue(client)
    old = [client.create_task(parent=q.name, task=http_task()) for _ in range(2)]
    before = utcnow()
    purged = client.purge_queue(name=q.name)
    after = utcnow()
    assert purged.name == q.name
    assert "purge_time" in purged
    assert before - dt.timedelta(seconds=2) <= purged.purge_time <= after + dt.timedelta(seconds=2)
    assert client.get_queue(name=q.name).purge_time == purged.purge_time
    assert list(client.list_tasks(parent=q.name)) == []
    for t in old:
        with rpc_error(gexc.NotFound, "NOT_FOUND"):
            client.get_task(name=t.name)
    later = client.create_task(parent=q.name, task=http_task())
    assert [t.name for t in client.list_tasks(parent=q.name)] == [later.name]
    assert client.get_task(name=later.name).name == later.name


def test_delete_queue_then_recreate_is_blocked(client):
    q = create_queue(client)
    client.create_task(parent=q.name, task=http_task())  # non-empty queues can be deleted
    client.delete_queue(name=q.name)
    with rpc_error(gexc.NotFound, "NOT_FOUND", QUEUE_NOT_FOUND):
        client.get_queue(name=q.name)
    assert q.name not in [x.name for x in client.list_queues(parent=PARENT)]
    # FAILED_PRECONDITION on REST is a 400, so the Python client raises BadRequest.
    with rpc_error(gexc.BadRequest, "FAILED_PRECONDITION", QUEUE_EXISTED_TOO_RECENTLY):
        client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=q.name))
    # A task on the deleted queue: the queue-not-found text.
    with rpc_error(gexc.NotFound, "NOT_FOUND", QUEUE_NOT_FOUND):
        client.create_task(parent=q.name, task=http_task())


def test_update_queue_on_recently_deleted_name(client):
    q = create_queue(client)
    client.delete_queue(name=q.name)
    with rpc_error(gexc.BadRequest, "FAILED_PRECONDITION", contains="existed too recently"):
        client.update_queue(queue=tasks_v2.Queue(name=q.name))


def test_delete_queue_missing(client):
    with rpc_error(gexc.NotFound, "NOT_FOUND", ENTITY_NOT_FOUND):
        client.delete_queue(name=queue_name(unique("missing")))


def test_zero_window_server_allows_immediate_reuse(client_zero):
    """`--queue-reuse-block 0s --task-tombstone 0s`: names are free again right away."""
    q = create_queue(client_zero)
    t = client_zero.create_task(parent=q.name, task=http_task(name=f"{q.name}/tasks/again"))
    client_zero.delete_task(name=t.name)
    again = client_zero.create_task(parent=q.name, task=http_task(name=t.name))
    assert again.name == t.name
    client_zero.delete_queue(name=q.name)
    re = client_zero.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=q.name))
    assert re.name == q.name and re.state == State.RUNNING
    assert list(client_zero.list_tasks(parent=q.name)) == []


def test_default_server_task_tombstone_text(client):
    """Control for the zero-window test: on the default server the same steps are refused."""
    q = create_queue(client)
    t = client.create_task(parent=q.name, task=http_task(name=f"{q.name}/tasks/again"))
    client.delete_task(name=t.name)
    with rpc_error(gexc.NotFound, "NOT_FOUND", TASK_GONE):
        client.get_task(name=t.name)
