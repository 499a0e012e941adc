"""Access requests and expiring grants on both stores (SQLite and the MongoDB implementation)."""
from __future__ import annotations

import pytest

from bastion.errors import Conflict
from bastion.store import Grant
from bastion.store.records import AccessRequest
from test_store_contract import store  # noqa: F401 - the two-backend fixture


async def test_access_requests_round_trip_and_filters(store) -> None:  # noqa: F811
    first = await store.create_access_request(AccessRequest(user_id="u1", username="alice", host_id="h1",
                                                            host_name="web1", minutes=30, reason="r1", created_at=10.0))
    second = await store.create_access_request(AccessRequest(user_id="u2", username="bob", app_id="a1", app_name="db",
                                                             minutes=5, reason="r2", created_at=20.0))
    assert [r.id for r in (await store.list_access_requests()).items] == [second.id, first.id]  # newest first
    assert [r.id for r in (await store.list_access_requests(user_id="u1")).items] == [first.id]
    loaded = await store.get_access_request(first.id)
    loaded.status, loaded.expires_at, loaded.break_glass, loaded.review_status = "approved", 99.5, True, "pending"
    await store.save(loaded)
    stale = await store.get_access_request(first.id)
    stale.version -= 1
    with pytest.raises(Conflict):  # two nodes expiring the same access: one wins
        await store.save(stale)
    again = await store.get_access_request(first.id)
    assert again.status == "approved" and again.expires_at == 99.5 and again.break_glass is True
    assert [r.id for r in (await store.list_access_requests(status="approved")).items] == [first.id]
    assert [r.id for r in (await store.list_access_requests(review_status="pending")).items] == [first.id]
    assert (await store.list_access_requests(status="pending")).total == 1


async def test_temporary_grant_keeps_its_expiry(store) -> None:  # noqa: F811
    grant = await store.create_grant(Grant(user_id="u1", host_id="h1", expires_at=1234.5, request_id="r1"))
    (loaded,) = await store.grants_of_user("u1")
    assert loaded.id == grant.id and loaded.expires_at == 1234.5 and loaded.request_id == "r1"
