"""Recently resolved browser logins, so that live control (ending a session) does not wait on the database.

Every request resolves its login in the store as usual; only when the store does not answer (after its
timeout) does a login resolved in the last STALE seconds still count, until its own expiry. Logging out or
disabling the user drops it on this node.
"""
from __future__ import annotations

import time
from collections import OrderedDict

from .store import Login, User

STALE = 300.0
MAX_ENTRIES = 10_000


class RecentLogins:
    """A bounded map login id → (user, login, resolved at)."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[User, Login, float]] = OrderedDict()

    def remember(self, login_id: str, user: User, login: Login) -> None:
        self._entries[login_id] = (user, login, time.monotonic())
        self._entries.move_to_end(login_id)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def get(self, login_id: str, *, max_age: float) -> tuple[User, Login] | None:
        """A login resolved within max_age seconds and not expired, or None."""
        entry = self._entries.get(login_id)
        if entry is None:
            return None
        user, login, at = entry
        if time.monotonic() - at > max_age or login.expires_at < time.time():
            return None
        return user, login

    def forget(self, login_id: str) -> None:
        self._entries.pop(login_id, None)

    def forget_user(self, user_id: str) -> None:
        for key in [k for k, (u, _, _) in self._entries.items() if u.id == user_id]:
            del self._entries[key]
