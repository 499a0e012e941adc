"""Dashboard figures: sessions per day, the busiest users and hosts, blocked commands per day (UTC days)."""
from __future__ import annotations

import time
from collections import Counter
from typing import Any

from .export import pages
from .store import Store

DAY = 86400
MAX_SCANNED = 20_000  # records read for one answer: a busy fleet's figures are then marked partial


def _day(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


async def dashboard_stats(store: Store, days: int, now: float | None = None, top: int = 5) -> dict[str, Any]:
    """Counts over the last `days` UTC days (today included), from the sessions and commands stores."""
    now = now or time.time()
    start = (int(now) // DAY - (days - 1)) * DAY
    labels = [_day(start + i * DAY) for i in range(days)]
    sessions: Counter[str] = Counter()
    users: Counter[str] = Counter()
    hosts: Counter[str] = Counter()
    blocked: Counter[str] = Counter()
    scanned = total_sessions = total_blocked = 0
    async for items, total_sessions in pages(lambda lim, off: store.list_sessions(since=start, limit=lim, offset=off),
                                             MAX_SCANNED):
        for s in items:
            sessions[_day(s.started_at)] += 1
            users[s.username] += 1
            hosts[s.host_name] += 1
        scanned += len(items)
    async for items, total_blocked in pages(lambda lim, off: store.search_commands(blocked=True, since=start, limit=lim,
                                                                                   offset=off), MAX_SCANNED):
        for c in items:
            blocked[_day(c.ts)] += 1
    return {
        "days": labels,
        "sessions": [sessions[d] for d in labels],
        "blocked": [blocked[d] for d in labels],
        "top_users": [{"name": n, "sessions": k} for n, k in users.most_common(top)],
        "top_hosts": [{"name": n, "sessions": k} for n, k in hosts.most_common(top)],
        "partial": total_sessions > MAX_SCANNED or total_blocked > MAX_SCANNED,
    }
