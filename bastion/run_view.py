"""How a run reads in the API and on its page: durations, aggregated progress, and only the newer results.

A page polling a 500-host run asks `?since=<seq>` and receives the results stamped after that number (plus the
host list once), not the whole document again on every poll.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

from .store import Run

FINAL_STATUSES = ("ok", "partial", "failed", "timeout", "cancelled")


def duration(run: Run, now: float | None = None) -> float | None:
    """Seconds from start to end (to now while it runs); None before it started."""
    if not run.started_at:
        return None
    end = run.ended_at or (now if now is not None else time.time())
    return round(max(0.0, end - run.started_at), 3)


def progress(run: Run) -> dict[str, int]:
    """Counts of hosts by outcome, for the progress bar."""
    ok = failed = cancelled = 0
    names = set(run.host_names)
    for name, r in run.results.items():
        if name not in names or not isinstance(r, dict):
            continue
        if r.get("ok"):
            ok += 1
        elif r.get("cancelled"):
            cancelled += 1
        else:
            failed += 1
    total = len(run.host_names)
    return {"total": total, "done": ok + failed + cancelled, "ok": ok, "failed": failed, "cancelled": cancelled,
            "waiting": max(0, total - ok - failed - cancelled)}


def run_view(run: Run, since: int | None = None, *, with_results: bool = True) -> dict[str, Any]:
    """The API's view of a run; with `since`, only results stamped after it (host names only when since is 0)."""
    doc = {f.name: getattr(run, f.name) for f in dataclasses.fields(run) if f.name not in ("results", "version")}
    doc["duration"] = duration(run)
    doc["progress"] = progress(run)
    doc["final"] = run.status in FINAL_STATUSES
    if with_results:
        if since is None:
            doc["results"] = dict(run.results)
        else:
            doc["results"] = {h: r for h, r in run.results.items() if isinstance(r, dict) and r.get("seq", 0) > since}
            if since > 0:
                doc.pop("host_names")
                doc.pop("host_ids")
    return doc
