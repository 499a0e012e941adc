"""Operator endpoints: /healthz (store, hub, recorder disk) and /metrics (Prometheus text format)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path

from bastion.errors import BastionError

from .base import BaseHandler, public

MIN_FREE_BYTES = 256 * 1024 * 1024


def _disk_facts(records: Path) -> tuple[int, bool]:
    records.mkdir(parents=True, exist_ok=True, mode=0o700)
    return shutil.disk_usage(records).free, os.access(records, os.W_OK)


class HealthHandler(BaseHandler):
    @public
    async def get(self) -> None:
        checks: dict[str, dict[str, object]] = {}
        started = time.monotonic()
        try:
            await self.store.ping()
            checks["store"] = {"ok": True}
        except BastionError as exc:
            checks["store"] = {"ok": False, "error": exc.message}
        try:
            await self.hub.ping()
            checks["hub"] = {"ok": True, "backend": self.hub.backend}
        except BastionError as exc:
            checks["hub"] = {"ok": False, "backend": self.hub.backend, "error": exc.message}
        try:  # a hung disk must not hang the loop: the check runs in the I/O pool
            free, writable = await asyncio.get_running_loop().run_in_executor(
                self.services.io, _disk_facts, Path(self.config.records_dir))
            checks["recordings"] = {"ok": writable and free >= MIN_FREE_BYTES, "free_bytes": free, "writable": writable}
        except OSError as exc:
            checks["recordings"] = {"ok": False, "error": exc.strerror or type(exc).__name__}
        ok = all(c["ok"] for c in checks.values())
        self.set_status(200 if ok else 503)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"ok": ok, "node": self.config.node_id, "checks": checks,
                                "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}))


class MetricsHandler(BaseHandler):
    @public
    async def get(self) -> None:
        # Counters of this node; numbers only, nothing secret. Put it behind the proxy's access rules if needed.
        live = self.hub.live()
        metrics = self.services.sessions.metrics
        node = self.config.node_id
        lines = [
            "# HELP bastion_live_sessions Live terminal sessions owned by this node.",
            "# TYPE bastion_live_sessions gauge",
            f'bastion_live_sessions{{node="{node}"}} {len(live)}',
            "# HELP bastion_monitors Monitor sockets attached to this node's sessions.",
            "# TYPE bastion_monitors gauge",
            f'bastion_monitors{{node="{node}"}} {sum(s.watcher_count for s in live)}',
            "# HELP bastion_bytes_proxied_total Terminal output bytes sent to users by this node.",
            "# TYPE bastion_bytes_proxied_total counter",
            f'bastion_bytes_proxied_total{{node="{node}"}} {metrics.bytes_closed + sum(s.bytes_out for s in live)}',
            "# HELP bastion_kicks_total Sessions of this node ended by auditors or admins.",
            "# TYPE bastion_kicks_total counter",
            f'bastion_kicks_total{{node="{node}"}} {metrics.kicks}',
            "# HELP bastion_sessions_started_total Terminal sessions started on this node.",
            "# TYPE bastion_sessions_started_total counter",
            f'bastion_sessions_started_total{{node="{node}"}} {metrics.started}',
            "# HELP bastion_journal_pending Commands and audit events waiting for the database.",
            "# TYPE bastion_journal_pending gauge",
            f'bastion_journal_pending{{node="{node}"}} {self.services.journal.pending}',
            "# HELP bastion_runs_total Module runs finished on this node, by status.",
            "# TYPE bastion_runs_total counter",
        ]
        for status in ("ok", "partial", "failed", "timeout"):
            lines.append(f'bastion_runs_total{{node="{node}",status="{status}"}} {self.services.executor.finished.get(status, 0)}')
        lines += [
            "# HELP bastion_runs_running Module runs executing now on this node.",
            "# TYPE bastion_runs_running gauge",
            f'bastion_runs_running{{node="{node}"}} {self.services.executor.running()}',
        ]
        try:
            failed = (await self.store.list_events(action="login.failed", limit=1)).total
            lines += ["# HELP bastion_failed_logins Failed logins in the audit log (all nodes).",
                      "# TYPE bastion_failed_logins gauge", f"bastion_failed_logins {failed}"]
        except BastionError:
            pass
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish("\n".join(lines) + "\n")


default_handlers = [
    (r"/healthz", HealthHandler),
    (r"/metrics", MetricsHandler),
]
