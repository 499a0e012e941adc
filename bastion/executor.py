"""Executor pool for module runs, owned by the bastion process (no separate server).

Each run is one worker process (`python -m bastion.worker`) in its own process group: a module that hangs
is killed at its timeout (SIGKILL to the group, reaped: no zombies, slot freed, status `timeout`), one that
crashes ends `failed` with a truncated traceback; neither can touch live terminal sessions. Concurrency is
bounded; per-host output is capped; per-host results stream into the run document as they arrive.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from .errors import Conflict
from .module_api import result
from .store import Host, ModuleState, Run

if TYPE_CHECKING:
    from .audit import Audit
    from .hostkeys import HostKeyTrust
    from .inventory import Inventory
    from .store import Store

log = logging.getLogger(__name__)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What a module worker inherits from the bastion's environment: only what programs need to run and to speak
# the right language. Everything else (BASTION_* settings and secrets, cloud keys, proxy credentials, tokens)
# stays in the bastion process; a module gets its hosts' credentials in its job, nothing more.
WORKER_ENV_KEEP = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM",
                   "SSL_CERT_FILE", "SSL_CERT_DIR")
WORKER_ENV_PREFIXES = ("LC_",)


def worker_environment(parent: dict[str, str] | None = None) -> dict[str, str]:
    """A scrubbed environment for a module worker (an allow-list, so new secrets never leak by default)."""
    parent = dict(os.environ if parent is None else parent)
    env = {k: v for k, v in parent.items() if k in WORKER_ENV_KEEP or k.startswith(WORKER_ENV_PREFIXES)}
    env.setdefault("PATH", os.defpath)
    env["PYTHONPATH"] = ROOT  # the worker imports bastion from this tree, never from a caller-supplied path
    return env


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (from /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # the command name (field 2) may hold spaces and parentheses: the fields after its last ")" are fixed
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


class Executor:
    """Runs module jobs in worker processes with bounded concurrency."""

    def __init__(self, store: "Store", inventory: "Inventory", audit: "Audit", trust: "HostKeyTrust", *, max_runs: int,
                 output_cap: int, host_concurrency: int = 50) -> None:
        self.store = store
        self.inventory = inventory
        self.audit = audit
        self.trust = trust
        self.output_cap = output_cap
        self.host_concurrency = host_concurrency
        self._slots = asyncio.Semaphore(max_runs)
        self._tasks: set[asyncio.Task] = set()
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._live: dict[str, Run] = {}  # runs queued or running on this node, by id
        self._cancelled: dict[str, str] = {}  # run id -> who cancelled it
        self.finished: dict[str, int] = {}

    def submit(self, run: Run, module: ModuleState, path: str, hosts: list[Host], params: dict[str, Any]) -> None:
        self._live[run.id] = run
        task = asyncio.get_running_loop().create_task(self._execute(run, module, path, hosts, params))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def live_run(self, run_id: str) -> Run | None:
        """The in-memory run while it is queued or running on this node (fresher than the store)."""
        return self._live.get(run_id)

    def cancel(self, run_id: str, actor: str) -> str:
        """Cancel a queued or running run of this node: "cancelled", "already" (being cancelled) or "absent"."""
        if run_id in self._cancelled:
            return "already"
        if run_id not in self._live:
            return "absent"
        self._cancelled[run_id] = actor
        proc = self._procs.get(run_id)
        if proc is not None:
            self._kill(proc)
        return "cancelled"

    def _stamp(self, run: Run, host: str, outcome: Any) -> None:
        """Store one host's result with the next sequence number (an identical repeat is not a change)."""
        if not isinstance(outcome, dict):
            outcome = result(False, stderr="the worker sent a malformed result")
        previous = run.results.get(host)
        if previous is not None and {k: v for k, v in previous.items() if k != "seq"} == outcome:
            return
        run.seq += 1
        run.results[host] = {**outcome, "seq": run.seq}

    async def _save(self, run: Run) -> None:
        for _ in range(3):
            try:
                await self.store.save(run)
                return
            except Conflict:
                current = await self.store.get_run(run.id)
                if current is None:
                    return
                run.version = current.version

    async def _job(self, module: ModuleState, path: str, hosts: list[Host], params: dict[str, Any]) -> dict[str, Any]:
        targets = []
        # a fleet shares a few credentials: read and open each once, not once per host
        creds: dict[str, tuple[str, str, str]] = {}
        for host in hosts:
            if host.credential_id not in creds:
                cred = await self.store.get_credential(host.credential_id)
                creds[host.credential_id] = ((cred.username, cred.kind, self.inventory.open_secret(cred)) if cred
                                             else ("", "password", ""))
            username, kind, secret = creds[host.credential_id]
            targets.append({"id": host.id, "name": host.name, "address": host.address, "port": host.port,
                            "username": username, "kind": kind, "secret": secret, "host_key": host.host_key})
        return {"module_id": module.id, "path": path, "hosts": targets, "params": params, "output_cap": self.output_cap,
                "concurrency": self.host_concurrency, "host_timeout": max(1.0, min(float(module.timeout), 300.0))}

    async def _execute(self, run: Run, module: ModuleState, path: str, hosts: list[Host], params: dict[str, Any]) -> None:
        try:
            async with self._slots:
                if run.id not in self._cancelled:
                    run.status, run.started_at = "running", time.time()
                    await self._save(run)
                    try:
                        await self._run_worker(run, module, path, hosts, params)
                    except Exception as exc:
                        log.exception("run %s failed in the executor", run.id)
                        run.status, run.error = "failed", f"executor error: {type(exc).__name__}"
                await self._finish(run, module, hosts)
        finally:
            self._live.pop(run.id, None)
            self._cancelled.pop(run.id, None)

    async def _finish(self, run: Run, module: ModuleState, hosts: list[Host]) -> None:
        # a host without a result waited from the start until now: that is its duration
        waited = time.time() - run.started_at if run.started_at else 0.0
        if run.id in self._cancelled:
            # a cancel wins over whatever the killed worker's end looked like; finished hosts keep their results
            run.status, run.cancelled_by = "cancelled", self._cancelled[run.id]
            run.error = f"cancelled by {run.cancelled_by}"
            for host in hosts:
                if host.name not in run.results:
                    self._stamp(run, host.name, {**result(False, stderr="cancelled before this host finished",
                                                          elapsed=waited), "cancelled": True})
        for host in hosts:
            if host.name not in run.results:
                self._stamp(run, host.name, {**result(False, stderr=run.error or "no result", elapsed=waited),
                                             "missing": True})
        if run.status == "running":
            oks = [r.get("ok") for r in run.results.values()]
            run.status = "ok" if oks and all(oks) else "partial" if any(oks) else "failed"
        run.ended_at = time.time()
        await self._save(run)
        self.finished[run.status] = self.finished.get(run.status, 0) + 1
        await self.audit.record("module.run_finished", actor=run.username, target=module.name,
                                run=run.id, status=run.status, hosts=len(hosts), ok=run.status == "ok")

    async def _run_worker(self, run: Run, module: ModuleState, path: str, hosts: list[Host], params: dict[str, Any]) -> None:
        job = await self._job(module, path, hosts, params)
        env = worker_environment()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bastion.worker", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, env=env, cwd=ROOT,
            limit=4 * self.output_cap + 1024 * 1024)
        self._procs[run.id] = proc
        if run.id in self._cancelled:  # cancelled while the worker was starting
            self._kill(proc)
        by_id = {h.id: h for h in hosts}
        proc.stdin.write(json.dumps(job).encode())
        await proc.stdin.drain()
        proc.stdin.close()
        del job
        deadline = time.monotonic() + module.timeout
        finished = False
        last_save = 0.0
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), remaining)
                except ValueError:  # a line over the limit: the worker misbehaves
                    run.status, run.error = "failed", "worker sent an oversized message"
                    break
                if not line:
                    break
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                kind = message.get("type")
                if kind == "host" and isinstance(message.get("host"), str):
                    self._stamp(run, message["host"][:200], message.get("result", {}))
                    if time.monotonic() - last_save > 0.2:
                        last_save = time.monotonic()
                        await self._save(run)
                elif kind == "key" and message.get("host_id") in by_id:
                    await self.trust.pin(by_id[message["host_id"]], str(message.get("key", "")), run.username)
                elif kind == "done":
                    finished = True
                    run.log = str(message.get("log", ""))[:65536]
                elif kind == "error":
                    finished = True
                    run.status, run.error = "failed", str(message.get("traceback", ""))[-8192:]
                    run.log = str(message.get("log", ""))[:65536]
        except asyncio.TimeoutError:
            run.status, run.error = "timeout", f"the module did not finish within {module.timeout} s and was killed"
        finally:
            self._kill(proc)
            await proc.wait()
            self._procs.pop(run.id, None)
        if not finished and run.status == "running":
            stderr = (await proc.stderr.read())[-8192:].decode("utf-8", "replace") if proc.stderr else ""
            run.status = "failed"
            run.error = f"the worker exited with code {proc.returncode} before finishing" + (f": {stderr}" if stderr else "")

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        """SIGKILL the worker's whole process group (it leads its own session) and everything it started."""
        # Found before the group dies: once the worker is gone its children are re-parented and cannot be traced.
        # Tools such as ansible-runner's pexpect start their children in sessions of their own.
        strays = descendants(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def worker_pid(self, run_id: str) -> int | None:
        """The process id of a run's worker while it runs (its process group id too)."""
        proc = self._procs.get(run_id)
        return proc.pid if proc is not None else None

    def running(self) -> int:
        return len(self._procs)

    async def shutdown(self) -> None:
        for proc in list(self._procs.values()):
            self._kill(proc)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
