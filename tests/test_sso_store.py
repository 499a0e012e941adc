"""Store contract for what single sign-on and passkeys keep, on SQLite and on MongoDB (nx-27017 or real):
a pending sign-in and a passkey challenge are handed out once, expired ones are not, settings are replaced."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator

import pytest

from bastion.errors import Conflict
from bastion.store import Passkey, PasskeyChallenge, SsoState, Store
from bastion.store.mongo import MongoStore
from bastion.store.sqlite import SQLiteStore
from conftest import mongo_db_url


@pytest.fixture(params=["sqlite", "mongodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store = (SQLiteStore(tmp_path / "sso.db") if request.param == "sqlite"
                else MongoStore(mongo_db_url(request.getfixturevalue("mongo_base_url"))))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_sso_state_is_taken_once(store: Store) -> None:
    await store.create_sso_state(SsoState(id="s" * 43, provider="corp", nonce="n", expires_at=time.time() + 60))
    results = await asyncio.gather(*(store.take_sso_state("s" * 43) for _ in range(5)))
    assert [r.provider for r in results if r] == ["corp"]  # one winner among parallel callbacks
    assert await store.take_sso_state("s" * 43) is None
    await store.create_sso_state(SsoState(id="old" * 10, provider="corp", expires_at=time.time() - 1))
    assert await store.take_sso_state("old" * 10) is None  # expired: refused (and gone)
    await store.create_sso_state(SsoState(id="x" * 30, expires_at=time.time() - 5))
    assert await store.purge_expired_sso_states() == 1


async def test_passkey_challenge_is_taken_once_and_credentials_are_unique(store: Store) -> None:
    await store.create_passkey_challenge(PasskeyChallenge(id="c" * 32, purpose="login", challenge="abc",
                                                          expires_at=time.time() + 60))
    assert (await store.take_passkey_challenge("c" * 32)).challenge == "abc"
    assert await store.take_passkey_challenge("c" * 32) is None
    key = await store.create_passkey(Passkey(user_id="u1", credential_id="cred-1", public_key="pk", sign_count=3))
    assert (await store.passkey_by_credential("cred-1")).id == key.id
    assert await store.passkey_by_credential("cred-2") is None
    with pytest.raises(Conflict):
        await store.create_passkey(Passkey(user_id="u2", credential_id="cred-1"))
    assert [k.id for k in await store.passkeys_of_user("u1")] == [key.id]


async def test_put_setting_creates_then_replaces(store: Store) -> None:
    await store.put_setting("sso-mapping:oidc:corp", "d1")
    await store.put_setting("sso-mapping:oidc:corp", "d2")
    assert (await store.get_setting("sso-mapping:oidc:corp")).value == "d2"
