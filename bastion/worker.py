"""Worker process for one module run: `python -m bastion.worker` (job as JSON on stdin).

Protocol on the original stdout: one JSON object per line (`host` results as they come, `key` for a host key
seen for the first time, then `done` or `error`). The module's own prints go to a pipe whose first 64 KiB
are kept as the run's log and the rest discarded, so a module cannot flood the bastion.
"""
from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import os
import sys
import threading
import traceback
from typing import Any, TextIO

LOG_KEEP = 64 * 1024


def cap(text: Any, limit: int) -> str:
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore") + f"\n[truncated {len(data) - limit} bytes]"


def normalize(value: Any, limit: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        value = {"ok": True, "stdout": value}
    rc = value.get("rc")
    return {"ok": bool(value.get("ok", rc == 0)), "rc": rc if isinstance(rc, int) and not isinstance(rc, bool) else None,
            "stdout": cap(value.get("stdout", ""), limit), "stderr": cap(value.get("stderr", ""), limit),
            "elapsed": float(value.get("elapsed", 0.0)) if isinstance(value.get("elapsed", 0.0), (int, float)) else 0.0}


def _swallow_output() -> list[bytes]:
    """Point fd 1 and 2 at a pipe drained by a thread that keeps the first LOG_KEEP bytes."""
    kept: list[bytes] = []
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def drain() -> None:
        size = 0
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                return
            if size < LOG_KEEP:
                kept.append(chunk[:LOG_KEEP - size])
            size += len(chunk)
    threading.Thread(target=drain, daemon=True).start()
    return kept


def main() -> int:
    proto: TextIO = os.fdopen(os.dup(1), "w", buffering=1)
    lock = threading.Lock()

    def emit(message: dict[str, Any]) -> None:
        if message.get("type") == "host":
            message = {**message, "result": normalize(message.get("result"), limit)}
        with lock:
            proto.write(json.dumps(message) + "\n")
            proto.flush()

    job = json.loads(sys.stdin.read())
    limit = int(job["output_cap"])
    kept = _swallow_output()
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    try:
        import bastion
        from bastion.module_api import HostTarget
        spec = importlib.util.spec_from_file_location(f"bastion_module_{job['module_id']}", job["path"])
        if spec is None or spec.loader is None:
            raise ImportError("module file cannot be loaded")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cls = getattr(module, "Modulehandle", None)
        if not isinstance(cls, type) or not issubclass(cls, bastion.Modulehandle):
            raise TypeError("Modulehandle must subclass bastion.Modulehandle")
        hosts = [HostTarget(**h) for h in job["hosts"]]
        instance = cls(hosts, job["params"], emit=emit, concurrency=int(job["concurrency"]),
                       host_timeout=float(job["host_timeout"]))
        outcome = instance.run()
        if inspect.isawaitable(outcome):
            outcome = asyncio.run(_await(outcome))
        results = outcome if isinstance(outcome, dict) else {}
        for name, value in results.items():
            emit({"type": "host", "host": str(name), "result": value, "final": True})
        emit({"type": "done", "log": cap(b"".join(kept).decode("utf-8", "replace"), LOG_KEEP)})
        return 0
    except BaseException:  # the module's fault, reported to the run document
        emit({"type": "error", "traceback": cap(traceback.format_exc(), 8192),
              "log": cap(b"".join(kept).decode("utf-8", "replace"), LOG_KEEP)})
        return 1


async def _await(awaitable: Any) -> Any:
    return await awaitable


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
