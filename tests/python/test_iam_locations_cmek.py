"""IAM (Get/Set/TestIamPermissions), the Locations mixin and CMEK config through the
official Python client (REST) (spec §2, §2.1 stub candidates)."""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.iam.v1 import policy_pb2

from stratus_helpers import LOCATION, PROJECT, create_queue, queue_name, rpc_error, unique

ROLE = "roles/cloudtasks.enqueuer"
MEMBER = "serviceAccount:sa@p.iam.gserviceaccount.com"


def test_get_iam_policy_empty(client):
    q = create_queue(client)
    policy = client.get_iam_policy(request={"resource": q.name})
    assert isinstance(policy, policy_pb2.Policy)
    assert list(policy.bindings) == []
    assert policy.version == 0


def test_get_iam_policy_missing_queue(client):
    with rpc_error(gexc.NotFound, "NOT_FOUND"):
        client.get_iam_policy(request={"resource": queue_name(unique("missing"))})


def test_set_iam_policy_echoes_bindings(client):
    q = create_queue(client)
    policy = client.set_iam_policy(
        request={"resource": q.name, "policy": {"bindings": [{"role": ROLE, "members": [MEMBER]}]}}
    )
    assert [(b.role, list(b.members)) for b in policy.bindings] == [(ROLE, [MEMBER])]
    assert policy.etag  # set by the server
    got = client.get_iam_policy(request={"resource": q.name})
    assert got == policy

    # Writing back with the current etag works and changes the etag; a stale one is refused.
    again = client.set_iam_policy(
        request={
            "resource": q.name,
            "policy": {"bindings": [{"role": ROLE, "members": [MEMBER, "user:a@example.com"]}], "etag": policy.etag},
        }
    )
    assert list(again.bindings[0].members) == [MEMBER, "user:a@example.com"]
    assert again.etag and again.etag != policy.etag
    with rpc_error(gexc.Conflict, "ABORTED"):
        client.set_iam_policy(
            request={"resource": q.name, "policy": {"bindings": [], "etag": policy.etag}}
        )


def test_set_iam_policy_missing_queue(client):
    with rpc_error(gexc.NotFound, "NOT_FOUND"):
        client.set_iam_policy(
            request={"resource": queue_name(unique("missing")), "policy": {"bindings": [{"role": ROLE, "members": [MEMBER]}]}}
        )


def test_test_iam_permissions(client):
    q = create_queue(client)
    perms = ["cloudtasks.tasks.create", "cloudtasks.queues.get"]
    got = client.test_iam_permissions(request={"resource": q.name, "permissions": perms})
    assert list(got.permissions) == perms


def test_test_iam_permissions_missing_queue_is_empty(client):
    got = client.test_iam_permissions(
        request={"resource": queue_name(unique("missing")), "permissions": ["cloudtasks.tasks.create"]}
    )
    assert list(got.permissions) == []


def test_list_locations(client):
    got = client.list_locations(request={"name": "projects/p"})
    names = [loc.name for loc in got.locations]
    assert "projects/p/locations/local" in names
    local = next(loc for loc in got.locations if loc.name == "projects/p/locations/local")
    assert local.location_id == "local"


def test_get_location(client):
    loc = client.get_location(request={"name": f"projects/{PROJECT}/locations/{LOCATION}"})
    assert loc.name == f"projects/{PROJECT}/locations/{LOCATION}"
    assert loc.location_id == LOCATION


def test_cmek_config_roundtrip(client):
    # A project of its own: the CMEK config is per location, shared by every test otherwise.
    name = f"projects/{unique('cmek')}/locations/{LOCATION}/cmekConfig"
    empty = client.get_cmek_config(name=name)
    assert empty.name == name
    assert empty.kms_key == ""
    key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
    updated = client.update_cmek_config(
        cmek_config={"name": name, "kms_key": key}, update_mask={"paths": ["kms_key"]}
    )
    assert updated.name == name
    assert updated.kms_key == key
    got = client.get_cmek_config(name=name)
    assert got.name == name and got.kms_key == key
