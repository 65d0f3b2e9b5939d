"""BatchCreateTasks / BatchDeleteTasks (long-running operations) and the Operations
GetOperation mixin through the official Python client (REST) (spec §2, §2.1 Batch*)."""

from __future__ import annotations

import re

import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.rpc import code_pb2

from stratus_helpers import (
    LOCATION,
    PROJECT,
    TASK_GONE,
    create_queue,
    http_task,
    rpc_error,
    unique,
)

CreateState = tasks_v2.BatchCreateTasksMetadata.State
DeleteState = tasks_v2.BatchDeleteTasksMetadata.State
OPERATION_NAME = re.compile(rf"projects/{PROJECT}/locations/{LOCATION}/operations/[^/]+")


@pytest.fixture
def queue(client) -> str:
    return create_queue(client).name


def _create_requests(queue: str, tasks: list[tasks_v2.Task]) -> list[dict]:
    return [{"parent": queue, "task": t} for t in tasks]


def test_batch_create_tasks(client, queue):
    named = f"{queue}/tasks/{unique('b')}"
    op = client.batch_create_tasks(
        request={
            "parent": queue,
            "requests": _create_requests(queue, [http_task(), http_task(name=named), http_task(http_body=b"x")]),
        }
    )
    result = op.result(timeout=30)
    assert isinstance(result, tasks_v2.BatchCreateTasksResponse)
    assert len(result.tasks) == 3
    assert result.tasks[1].name == named
    assert all(t.name.startswith(f"{queue}/tasks/") for t in result.tasks)
    assert len({t.name for t in result.tasks}) == 3
    assert op.done()
    meta = op.metadata
    assert isinstance(meta, tasks_v2.BatchCreateTasksMetadata)
    assert meta.state == CreateState.SUCCEEDED
    assert len(meta.failed_requests) == 0
    assert "start_time" in meta and "end_time" in meta
    # The tasks really exist.
    listed = {t.name for t in client.list_tasks(parent=queue)}
    assert listed == {t.name for t in result.tasks}

    # Operations.GetOperation mixin on the returned operation name.
    name = op.operation.name
    assert OPERATION_NAME.fullmatch(name), name
    got = client.get_operation(request={"name": name})
    assert got.name == name
    assert got.done
    assert got.response.type_url.endswith("google.cloud.tasks.v2.BatchCreateTasksResponse")
    assert got.metadata.type_url.endswith("google.cloud.tasks.v2.BatchCreateTasksMetadata")
    response = tasks_v2.BatchCreateTasksResponse.deserialize(got.response.value)
    assert [t.name for t in response.tasks] == [t.name for t in result.tasks]


def test_batch_create_duplicate_lands_in_failed_requests(client, queue):
    existing = f"{queue}/tasks/{unique('exists')}"
    client.create_task(parent=queue, task=http_task(name=existing))
    op = client.batch_create_tasks(
        request={
            "parent": queue,
            "requests": _create_requests(queue, [http_task(), http_task(name=existing), http_task()]),
        }
    )
    result = op.result(timeout=30)
    assert len(result.tasks) == 2
    assert existing not in [t.name for t in result.tasks]
    meta = op.metadata
    assert meta.state == CreateState.PARTIALLY_SUCCEEDED
    assert list(meta.failed_requests.keys()) == [1]  # keyed by the request index
    assert meta.failed_requests[1].code == code_pb2.ALREADY_EXISTS
    assert meta.failed_requests[1].message == "Requested entity already exists"
    assert len(list(client.list_tasks(parent=queue))) == 3


def test_batch_create_parent_mismatch(client, queue):
    other = create_queue(client).name
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT"):
        client.batch_create_tasks(request={"parent": queue, "requests": _create_requests(other, [http_task()])})


def test_batch_create_too_many(client, queue):
    with rpc_error(gexc.BadRequest, "INVALID_ARGUMENT"):
        client.batch_create_tasks(request={"parent": queue, "requests": _create_requests(queue, [http_task()] * 101)})


def test_batch_delete_tasks(client, queue):
    tasks = [client.create_task(parent=queue, task=http_task()) for _ in range(3)]
    op = client.batch_delete_tasks(parent=queue, names=[t.name for t in tasks[:2]])
    op.result(timeout=30)  # google.protobuf.Empty
    assert op.done()
    meta = op.metadata
    assert isinstance(meta, tasks_v2.BatchDeleteTasksMetadata)
    assert meta.state == DeleteState.SUCCEEDED
    assert len(meta.failed_requests) == 0
    assert [t.name for t in client.list_tasks(parent=queue)] == [tasks[2].name]
    for t in tasks[:2]:
        with rpc_error(gexc.NotFound, "NOT_FOUND", TASK_GONE):
            client.get_task(name=t.name)

    name = op.operation.name
    assert OPERATION_NAME.fullmatch(name), name
    got = client.get_operation(request={"name": name})
    assert got.name == name and got.done
    assert got.metadata.type_url.endswith("google.cloud.tasks.v2.BatchDeleteTasksMetadata")


def test_batch_delete_partial_failure(client, queue):
    t = client.create_task(parent=queue, task=http_task())
    missing = f"{queue}/tasks/nope"
    op = client.batch_delete_tasks(parent=queue, names=[missing, t.name])
    op.result(timeout=30)
    meta = op.metadata
    assert meta.state == DeleteState.PARTIALLY_SUCCEEDED
    assert list(meta.failed_requests.keys()) == [0]
    assert meta.failed_requests[0].code == code_pb2.NOT_FOUND
    assert list(client.list_tasks(parent=queue)) == []


def test_batch_delete_all_fail_is_aborted(client, queue):
    op = client.batch_delete_tasks(parent=queue, names=[f"{queue}/tasks/a", f"{queue}/tasks/b"])
    with pytest.raises(gexc.Aborted):
        op.result(timeout=30)
    assert op.metadata.state == DeleteState.FAILED
    assert sorted(op.metadata.failed_requests.keys()) == [0, 1]


def test_get_operation_unknown(client):
    with rpc_error(gexc.NotFound, "NOT_FOUND"):
        client.get_operation(request={"name": f"projects/{PROJECT}/locations/{LOCATION}/operations/nope"})
