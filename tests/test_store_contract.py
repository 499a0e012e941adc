"""One contract suite for every Store implementation: SQLite (embedded) and MongoDB (nx-27017 or real)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator

import pytest

from bastion.errors import Conflict
from bastion.store import App, Event, Grant, Host, Session, Store, User
from bastion.store.mongo import MongoStore
from bastion.store.sqlite import SQLiteStore
from conftest import mongo_db_url


@pytest.fixture(params=["sqlite", "mongodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s: Store = SQLiteStore(tmp_path / "contract.db")
    else:
        s = MongoStore(mongo_db_url(request.getfixturevalue("mongo_base_url")))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_user_roundtrip_and_unique_name(store: Store) -> None:
    user = await store.create_user(User(username="alice", password_hash="h", roles=["user", "auditor"]))
    got = await store.get_user(user.id)
    assert got == user and isinstance(got, User)
    assert (await store.get_user_by_name("alice")).id == user.id
    assert await store.get_user_by_name("nobody") is None
    with pytest.raises(Conflict, match="username already exists"):
        await store.create_user(User(username="alice"))
    assert await store.count_users() == 1


async def test_bool_and_float_survive_whole_document_writes(store: Store) -> None:
    """nx-27017 stores $set bools as 0/1: we replace whole documents, so bools stay bools."""
    user = await store.create_user(User(username="bob"))
    user.disabled = True
    await store.save(user)
    again = await store.get_user(user.id)
    assert again.disabled is True and again.version == 1
    assert isinstance(again.created_at, float)


async def test_optimistic_version_conflict(store: Store) -> None:
    user = await store.create_user(User(username="carol"))
    stale = await store.get_user(user.id)
    user.roles = ["admin"]
    await store.save(user)
    stale.roles = ["auditor"]
    with pytest.raises(Conflict):
        await store.save(stale)
    assert (await store.get_user(user.id)).roles == ["admin"]


async def test_rename_onto_existing_name_conflicts(store: Store) -> None:
    await store.create_app(App(name="web"))
    db = await store.create_app(App(name="db"))
    db.name = "web"
    with pytest.raises(Conflict):
        await store.save(db)


async def test_paging_and_sorting(store: Store) -> None:
    for name in ["delta", "alpha", "charlie", "bravo", "echo"]:
        await store.create_app(App(name=name))
    page = await store.list_apps(limit=2, offset=1)
    assert page.total == 5
    assert [a.name for a in page.items] == ["bravo", "charlie"]


async def test_events_newest_first_with_filters(store: Store) -> None:
    base = time.time() - 100
    for i in range(6):
        await store.add_event(Event(ts=base + i, action="login.failed" if i % 2 else "login.ok", actor=f"u{i % 3}"))
    page = await store.list_events(limit=10)
    assert [e.ts for e in page.items] == sorted((e.ts for e in page.items), reverse=True)
    failed = await store.list_events(action="login.failed")
    assert failed.total == 3 and all(e.action == "login.failed" for e in failed.items)
    ranged = await store.list_events(since=base + 2, until=base + 4)
    assert sorted(e.ts for e in ranged.items) == [base + 2, base + 3]
    assert (await store.list_events(actor="u1")).total == 2


async def test_hosts_grants_and_cascade(store: Store) -> None:
    app = await store.create_app(App(name="pay"))
    host = await store.create_host(Host(name="h1", address="127.0.0.1", app_id=app.id, credential_id="c"))
    user = await store.create_user(User(username="dan"))
    grant = await store.create_grant(Grant(user_id=user.id, host_id=host.id))
    with pytest.raises(Conflict, match="already exists"):
        await store.create_grant(Grant(user_id=user.id, host_id=host.id))
    assert [g.id for g in await store.grants_of_user(user.id)] == [grant.id]
    assert (await store.list_hosts(app_id=app.id)).total == 1
    with pytest.raises(Conflict, match="still has hosts"):
        await store.delete_app(app.id)
    await store.delete_host(host.id)
    assert await store.grants_of_user(user.id) == []


async def test_sessions_live_filter_and_end(store: Store) -> None:
    s1 = await store.create_session(Session(host_id="h", user_id="u", node="n1"))
    await store.create_session(Session(host_id="h", user_id="v", node="n2"))
    assert (await store.list_sessions(live=True)).total == 2
    ended = await store.end_session(s1, "kicked", ended_by="auditor", note="policy", size=10, sha256="ab")
    assert ended.live is False and ended.end_reason == "kicked" and ended.ended_at > 0
    again = await store.end_session(s1, "exit")  # idempotent: the first reason stays
    assert again.end_reason == "kicked"
    assert [s.user_id for s in (await store.list_sessions(live=True)).items] == ["v"]
    assert (await store.list_sessions(live=False, end_reason="kicked")).total == 1
    assert [s.node for s in await store.live_sessions_of_node("n2")] == ["n2"]


async def test_query_values_are_never_operators(store: Store) -> None:
    await store.create_user(User(username="erin"))
    # A dict where a scalar belongs is refused before it can reach the driver.
    with pytest.raises(ValueError):
        await store.get_user_by_name({"$ne": None})  # type: ignore[arg-type]
    assert await store.get_user("../../etc/passwd") is None


async def test_failure_counters_and_logins(store: Store) -> None:
    from bastion.store import Failure, Login
    f = await store.put_failure(Failure(id="user:x", count=1, first_at=time.time()))
    f.count = 2
    f.locked_until = time.time() + 60
    await store.put_failure(f)
    assert [x.id for x in await store.list_locked()] == ["user:x"]
    await store.create_login(Login(id="L1", user_id="u", expires_at=time.time() - 1))
    await store.create_login(Login(id="L2", user_id="u", expires_at=time.time() + 60))
    await store.create_login(Login(id="L3", user_id="other", expires_at=time.time() + 60))
    assert await store.purge_expired_logins() == 1
    assert await store.get_login("L2") is not None
    assert [login.id for login in await store.logins_of_user("u")] == ["L2"]
    assert await store.delete_logins_of_user("u") == 1
    assert await store.logins_of_user("u") == []


async def test_settings_are_written_once(store: Store) -> None:
    from bastion.store import Setting
    assert await store.get_setting("canary") is None
    created = await store.create_setting("canary", "sealed-value")
    assert isinstance(created, Setting) and (await store.get_setting("canary")).value == "sealed-value"
    with pytest.raises(Conflict):
        await store.create_setting("canary", "another")
    assert (await store.get_setting("canary")).value == "sealed-value"


async def test_login_rules_roundtrip_order_and_unique_name(store: Store) -> None:
    from bastion.store import LoginRule
    late = await store.create_login_rule(LoginRule(name="office", action="allow", networks=["10.0.0.0/8"], days=[0, 1],
                                                   start="08:00", end="18:00", timezone="Europe/Paris", priority=20))
    first = await store.create_login_rule(LoginRule(name="block", scope="role", scope_value="auditor", priority=10,
                                                    enabled=False))
    rules = await store.list_login_rules()
    assert [r.id for r in rules] == [first.id, late.id]
    assert rules[1] == late and rules[1].days == [0, 1] and rules[0].enabled is False
    with pytest.raises(Conflict):
        await store.create_login_rule(LoginRule(name="office"))
    late.enabled = False
    await store.save(late)
    assert (await store.get_login_rule(late.id)).enabled is False
    assert (await store.delete_login_rule(first.id)).name == "block"
    assert [r.name for r in await store.list_login_rules()] == ["office"]


async def test_a_cancelled_call_stays_cancelled(store: Store) -> None:
    """A caller cancelled just as its call completes is cancelled, not handed the result. (Python 3.11's
    asyncio.wait_for, in our stores and inside PyMongo, returned the result instead: a periodic job cancelled at
    shutdown then slept on, and shutdown waited for it forever.)"""
    await store.create_user(User(username="alice"))
    cancelled, lost_at, finished = 0, [], False
    for steps in range(200):  # cancel after 0, 1, 2, ... loop steps, until the call completes before the cancel
        call = asyncio.get_running_loop().create_task(store.get_user_by_name("alice"))
        for _ in range(steps):
            # Not a wait for anything: the loop is kept busy a moment per step (as under CI load), so the database's
            # reply is already in when the cancel lands - one step of the sweep hits the moment it used to be lost.
            time.sleep(0.003)
            await asyncio.sleep(0)
        if call.done():
            finished = True
            break
        call.cancel()
        try:
            await call
            lost_at.append(steps)
        except asyncio.CancelledError:
            cancelled += 1
    assert not lost_at, f"the cancellation was lost (the call returned its result) after {lost_at} loop steps"
    assert finished and cancelled, (finished, cancelled)  # the sweep cancelled calls in flight, up to a finished one
