"""`bastion run`: a small API client that seals a command envelope with the user's token key."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import quote
from typing import Any, Callable

from . import protocol


class APIError(Exception):
    pass


def _call(url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(url.rstrip("/") + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                          "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise APIError(f"{exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise APIError(f"cannot reach {url}: {exc.reason}") from None


def _progress(done: int, total: int, status: str) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} hosts  {status:<8}")
    sys.stderr.flush()


def _table(run: dict[str, Any]) -> None:
    rows = [(name, run["results"].get(name, {})) for name in run["host_names"]]
    width = max([len("HOST")] + [len(n) for n, _ in rows])
    print(f"{'HOST':<{width}}  {'RESULT':<7} {'RC':>4} {'TIME':>7}  OUTPUT")
    for name, r in rows:
        out = (r.get("stdout") or r.get("stderr") or "").strip().splitlines()
        first = out[0] if out else ""
        rc = "-" if r.get("rc") is None else str(r.get("rc"))
        print(f"{name:<{width}}  {'ok' if r.get('ok') else 'FAILED':<7} {rc:>4} {r.get('elapsed', 0):>6.2f}s  {first}")
        for line in out[1:]:
            print(f"{'':<{width}}  {'':<7} {'':>4} {'':>7}  {line}")
    if run.get("error"):
        print(f"\nrun error: {run['error'].strip().splitlines()[-1] if run['error'].strip() else ''}")


FINAL = ("ok", "partial", "failed", "timeout", "cancelled")


def _credentials(args: argparse.Namespace) -> tuple[str, str] | None:
    url = args.url or os.environ.get("BASTION_URL", "http://127.0.0.1:8022")
    token = args.key or os.environ.get("BASTION_TOKEN", "")
    if not token.startswith("bst_"):
        print("bastion: give an API token with --key or $BASTION_TOKEN (create one on the Account page)", file=sys.stderr)
        return None
    return url, token


def _params(items: list[str]) -> dict[str, Any] | None:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"bastion: --param {item!r}: expected K=V", file=sys.stderr)
            return None
        params[key] = value
    return params


def _follow(url: str, token: str, run_id: str, timeout: float, *, cancel_on_interrupt: bool = True) -> dict[str, Any] | None:
    """Poll a run until it ends, showing progress; None when it is still going after `timeout` seconds.

    Ctrl-C cancels the run (the hosts that finished keep their results) and goes on waiting for its end.
    """
    deadline = time.monotonic() + timeout
    seq, names, results = 0, [], {}
    while True:
        try:
            # only the results stamped since the last poll, and the host list once: a 500-host run stays cheap
            run = _call(url, token, "GET", f"/api/runs/{run_id}?since={seq}")
            names = run.get("host_names", names)
            for name, res in run["results"].items():
                results[name] = res
                seq = max(seq, int(res.get("seq", 0)))
            run["host_names"], run["results"] = names, results
            _progress(run["progress"]["done"], run["progress"]["total"], run["status"])
            if run["status"] in FINAL:
                sys.stderr.write("\n")
                return run
            if time.monotonic() > deadline:
                sys.stderr.write("\n")
                print(f"bastion: run {run_id} still {run['status']} after {timeout:g} s", file=sys.stderr)
                return None
            time.sleep(0.3)
        except KeyboardInterrupt:
            if not cancel_on_interrupt:
                raise
            cancel_on_interrupt = False
            sys.stderr.write("\ncancelling the run...\n")
            try:
                _call(url, token, "POST", f"/api/runs/{run_id}/cancel", {})
            except APIError as exc:
                print(f"bastion: {exc}", file=sys.stderr)


def _follow_to_table(url: str, token: str, start: Callable[[], str], timeout: float, success: str, *,
                     cancel_on_interrupt: bool = True) -> int:
    """Start a run (or act on one) with `start()` → its id, follow it to the end and print the table.
    Exit 0 when it ends `success`, 1 otherwise, 2 on a refused request, 3 when it is still going at `timeout`."""
    try:
        run = _follow(url, token, start(), timeout, cancel_on_interrupt=cancel_on_interrupt)
    except APIError as exc:
        print(f"bastion: {exc}", file=sys.stderr)
        return 2
    if run is None:
        return 3
    _table(run)
    return 0 if run["status"] == success else 1


def run_command(args: argparse.Namespace) -> int:
    """`bastion run`: seal, submit, follow, print the table."""
    creds = _credentials(args)
    params = _params(args.param)
    if creds is None or params is None:
        return 2
    url, token = creds

    def start() -> str:
        me = _call(url, token, "GET", "/api/me")["user"]["username"]
        hosts = {h["name"]: h["id"] for h in _call(url, token, "GET", "/api/hosts?limit=500")["items"]}
        wanted = [h.strip() for h in args.hosts.split(",") if h.strip()]
        missing = [h for h in wanted if h not in hosts]
        if missing:
            raise APIError(f"unknown or ungranted host(s): {', '.join(missing)}")
        envelope = protocol.seal(protocol.token_envelope_key(token), protocol.token_key_id(token),
                                 protocol.new_payload(args.module_id, [hosts[h] for h in wanted], params, me))
        run = _call(url, token, "POST", "/api/commands", {"envelope": envelope})
        sys.stderr.write(f"run {run['id']}\n")
        return run["id"]
    return _follow_to_table(url, token, start, args.timeout, "ok")


def cancel_command(args: argparse.Namespace) -> int:
    """`bastion cancel RUN_ID`: cancel, wait for the end, print the table."""
    creds = _credentials(args)
    if creds is None:
        return 2
    url, token = creds
    run_id = quote(args.run_id, safe="")

    def start() -> str:
        _call(url, token, "POST", f"/api/runs/{run_id}/cancel", {})
        return run_id
    return _follow_to_table(url, token, start, args.timeout, "cancelled", cancel_on_interrupt=False)


def rerun_command(args: argparse.Namespace) -> int:
    """`bastion rerun RUN_ID`: a new run on the failed hosts, followed like `bastion run`."""
    creds = _credentials(args)
    params = _params(args.param)
    if creds is None or params is None:
        return 2
    url, token = creds

    def start() -> str:
        run = _call(url, token, "POST", f"/api/runs/{quote(args.run_id, safe='')}/rerun", {"params": params})
        sys.stderr.write(f"run {run['id']} (re-run of {args.run_id} on {len(run['host_names'])} host(s))\n")
        return run["id"]
    return _follow_to_table(url, token, start, args.timeout, "ok")
