"""`bastion run`: a small API client that seals a command envelope with the user's token key."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

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


def run_command(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("BASTION_URL", "http://127.0.0.1:8022")
    token = args.key or os.environ.get("BASTION_TOKEN", "")
    if not token.startswith("bst_"):
        print("bastion: give an API token with --key or $BASTION_TOKEN (create one on the Account page)", file=sys.stderr)
        return 2
    params: dict[str, Any] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"bastion: --param {item!r}: expected K=V", file=sys.stderr)
            return 2
        params[key] = value
    try:
        me = _call(url, token, "GET", "/api/me")["user"]["username"]
        hosts = {h["name"]: h["id"] for h in _call(url, token, "GET", "/api/hosts?limit=500")["items"]}
        wanted = [h.strip() for h in args.hosts.split(",") if h.strip()]
        missing = [h for h in wanted if h not in hosts]
        if missing:
            print(f"bastion: unknown or ungranted host(s): {', '.join(missing)}", file=sys.stderr)
            return 2
        envelope = protocol.seal(protocol.token_envelope_key(token), protocol.token_key_id(token),
                                 protocol.new_payload(args.module_id, [hosts[h] for h in wanted], params, me))
        run = _call(url, token, "POST", "/api/commands", {"envelope": envelope})
        deadline = time.monotonic() + args.timeout
        while True:
            run = _call(url, token, "GET", f"/api/runs/{run['id']}")
            _progress(len([h for h in run["results"] if h in run["host_names"]]), len(run["host_names"]), run["status"])
            if run["status"] in ("ok", "partial", "failed", "timeout"):
                break
            if time.monotonic() > deadline:
                sys.stderr.write("\n")
                print(f"bastion: run {run['id']} still {run['status']} after {args.timeout:g} s", file=sys.stderr)
                return 3
            time.sleep(0.3)
        sys.stderr.write("\n")
    except APIError as exc:
        print(f"bastion: {exc}", file=sys.stderr)
        return 2
    _table(run)
    return 0 if run["status"] == "ok" else 1
