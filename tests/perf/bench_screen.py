"""What the terminal emulator (pyte) costs per turn, and why watchers' snapshots run off the event loop.

Feeds a flood's tail (what the emulator keeps after trimming: 32 KiB) and renders a 200x50 screen, for plain and
coloured output; prints a table and writes tests/perf/results/screen.json.

    .venv/bin/python tests/perf/bench_screen.py
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bastion.commands import ScreenTracker  # noqa: E402
from bastion.sessions.replay import SnapshotScreen  # noqa: E402

RUNS = 15


def flood(kind: str) -> bytes:
    if kind == "plain":
        return (b"x" * 99 + b"\r\n") * 700
    return b"".join(b"\x1b[3%dm%s\x1b[0m " % (i % 8, b"word%d" % i) for i in range(9000))


def main() -> None:
    rows = []
    for kind in ("plain", "coloured"):
        data = flood(kind)
        catch, render = [], []
        tracker = ScreenTracker(200, 50)
        for _ in range(RUNS):
            tracker.feed(data)
            t0 = time.perf_counter()
            tracker.catch_up()
            t1 = time.perf_counter()
            tracker.snapshot()
            t2 = time.perf_counter()
            catch.append((t1 - t0) * 1000)
            render.append((t2 - t1) * 1000)
        # what the loop pays per watcher resync now: queueing the output and cutting (the rest is in a thread)
        shadow = SnapshotScreen(200, 50)
        loop_cost = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            for i in range(0, len(data), 16384):
                shadow.feed(data[i:i + 16384])
            cut = shadow.cut()
            loop_cost.append((time.perf_counter() - t0) * 1000)
            shadow.render(cut)
        rows.append({"output": kind, "bytes_fed": len(data), "catch_up_ms_p50": round(statistics.median(catch), 2),
                     "render_ms_p50": round(statistics.median(render), 2),
                     "on_loop_ms_p50_now": round(statistics.median(loop_cost), 3)})
    print(f"{'output':<10} {'catch-up ms':>12} {'render ms':>10} {'on the loop now (ms)':>22}")
    for r in rows:
        print(f"{r['output']:<10} {r['catch_up_ms_p50']:>12} {r['render_ms_p50']:>10} {r['on_loop_ms_p50_now']:>22}")
    out = ROOT / "tests" / "perf" / "results" / "screen.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": RUNS, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
