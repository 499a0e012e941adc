"""Fan-out benchmark: one session printing with 0, 10 and 50 monitors; kick latency.

User throughput (and its ratio to 0 monitors), monitor delivery lag p50/p99 (time a marker line reaches a
monitor minus the time it reaches the user), monitor resyncs, and kick latency p50/p99 from the API call to
the user's socket closing. Monitors run in a child process so the user's reader has its own interpreter.
Writes tests/perf/results/hub.json.

    .venv/bin/python tests/perf/bench_hub.py [--bytes 52428800] [--levels 0,10,50] [--kicks 30]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import BastionSession, Environment, MonitorSession, machine, summarize, tmpdir

MB = 1_000_000
MARK = re.compile(rb"MARK(\d+)\.")


class MarkTracker:
    """First arrival time of each MARK<n>. in a byte stream (markers may straddle frames)."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}
        self._tail = b""
        self.done = False

    def __call__(self, data: bytes, at: float) -> None:
        chunk = self._tail + data
        if b"LAGDONE" in chunk:
            self.done = True
        for m in MARK.finditer(chunk):
            self.times.setdefault(int(m.group(1)), at)
        self._tail = chunk[-16:]


async def monitor_worker(port: int, cookie: str, session_id: str, count: int, seconds: float) -> None:
    """Child process: open `count` monitors, record marker arrival times, print them as JSON."""
    class Env:
        bastion_port = port
    Env.cookie = cookie  # type: ignore[attr-defined]
    trackers = []
    monitors = []
    for _ in range(count):
        m = MonitorSession()
        tracker = MarkTracker()
        m.on_bytes = tracker
        await m.open(Env, session_id)  # type: ignore[arg-type]
        trackers.append(tracker)
        monitors.append(m)
    print("READY", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(t.done for t in trackers):
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    print(json.dumps([t.times for t in trackers]), flush=True)
    for m in monitors:
        await m.close()


async def fanout(env: Environment, monitors: int, total_bytes: int) -> dict:
    user = await BastionSession().open(env)
    await user.send("echo RE''ADY\r")
    await user.read_until(b"READY", 60)
    for _ in range(100):
        if user.session_id:
            break
        await asyncio.sleep(0.05)
    child = None
    if monitors:
        child = subprocess.Popen([sys.executable, __file__, "--monitor-worker", str(env.bastion_port), env.cookie,
                                  user.session_id, str(monitors), "120"], stdout=subprocess.PIPE, text=True)
        line = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
        assert line.strip() == "READY", line
    rates = []
    for _ in range(3):  # median of three floods: single runs on two shared cores are noisy
        await asyncio.sleep(0.5)
        user.clear()
        b0 = user.total
        t0 = time.perf_counter()
        await user.send(f"head -c {total_bytes} /dev/zero | tr '\\0' a; echo; echo DO''NE\r")
        await user.read_until(b"DONE", 600)
        rates.append((user.total - b0) / (time.perf_counter() - t0) / MB)
    mbps = sorted(rates)[1]
    await asyncio.sleep(2)  # let monitors drain the flood; lag is measured on steady output
    tracker = MarkTracker()
    user.on_bytes = tracker
    marks = 300
    filler = "x" * 150
    await user.send(f"for i in $(seq 1 {marks}); do echo MARK$i. {filler}; sleep 0.01; done; echo LAG''DONE\r")
    await user.read_until(b"LAGDONE", 120)
    await asyncio.sleep(0.5)
    lags: list[float] = []
    missing = 0
    if child is not None:
        out = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
        child.wait(60)
        for times in json.loads(out):
            for mark, at in tracker.times.items():
                got = times.get(str(mark))
                if got is None:
                    missing += 1
                else:
                    lags.append((got - at) * 1000)
    await user.close()
    return {"user_mb_per_s": mbps, "lag_ms": summarize(lags) if lags else None, "marks_missing": missing}


async def kick_latency(env: Environment, rounds: int, kick_env: Environment | None = None) -> dict:
    """Open a session on `env`, end it through `kick_env`'s API (default: the same node), time until it closes."""
    kick_env = kick_env or env
    values = []
    for _ in range(rounds):
        user = await BastionSession().open(env)
        await user.send("echo RE''ADY\r")
        await user.read_until(b"READY", 60)
        req = urllib.request.Request(f"http://127.0.0.1:{kick_env.bastion_port}/api/sessions/{user.session_id}/kill",
                                     method="POST", data=json.dumps({"reason": "bench"}).encode(),
                                     headers={"Cookie": kick_env.cookie, "X-XSRFToken": kick_env.xsrf,
                                              "Content-Type": "application/json"})
        t0 = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, lambda: urllib.request.urlopen(req, timeout=30).read())
        for _ in range(3000):
            if user.closed_at:
                break
            await asyncio.sleep(0.001)
        values.append((user.closed_at - t0) * 1000)
        await user.close()
    return summarize(values)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=50 * 1024 * 1024)
    parser.add_argument("--levels", default="0,10,50")
    parser.add_argument("--kicks", type=int, default=30)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "hub.json"))
    args = parser.parse_args()
    env = Environment(tmpdir("bastion-hub-"), webssh=False)
    results: dict = {}
    try:
        for n in [int(x) for x in args.levels.split(",")]:
            print(f"{n} monitors …", flush=True)
            results[f"monitors_{n}"] = await fanout(env, n, args.bytes)
        print("kick …", flush=True)
        results["kick_ms"] = await kick_latency(env, args.kicks)
    finally:
        env.close()
    base = results.get("monitors_0", {}).get("user_mb_per_s")
    print(f"\n{'monitors':>9}{'user MB/s':>11}{'vs 0':>8}{'lag p50 ms':>12}{'lag p99 ms':>12}{'missing':>9}")
    for key, r in results.items():
        if not key.startswith("monitors_"):
            continue
        lag = r["lag_ms"] or {}
        print(f"{key[9:]:>9}{r['user_mb_per_s']:>11.2f}{(r['user_mb_per_s'] / base if base else 0):>7.2f}×"
              f"{lag.get('p50', float('nan')):>12.2f}{lag.get('p99', float('nan')):>12.2f}{r['marks_missing']:>9}")
    k = results["kick_ms"]
    print(f"kick latency: p50 {k['p50']:.1f} ms, p99 {k['p99']:.1f} ms over {k['n']} kicks")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--monitor-worker":
        port, cookie, sid, count, seconds = sys.argv[2:7]
        asyncio.run(monitor_worker(int(port), cookie, sid, int(count), float(seconds)))
    else:
        asyncio.run(main())
