"""Terminal benchmark: raw SSH vs Bastion (recording on) vs webssh, side by side in one run.

Figures: output throughput (MB/s) for 200 MB; keystroke echo round trip p50/p99 over 500 samples; the same
at 50 and 200 concurrent sessions; server RSS per idle session; server CPU seconds. Prints a table with
ratios to raw SSH and to webssh and writes JSON to tests/perf/results/terminal.json.

    .venv/bin/python tests/perf/bench_terminal.py [--bytes 209715200] [--levels 50,200] [--no-webssh]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from pathlib import Path

from common import (BastionSession, Environment, Profile, RawSSH, WebSSHSession, cpu_seconds, machine, rss_kib,
                    summarize, tmpdir)

MB = 1_000_000


async def open_many(cls, env: Environment, n: int) -> list:
    sessions = []
    # bounded: 20 handshakes at a time; webssh loses concurrent logins from one address (its `clients`
    # registry is replaced per request), so its sessions are opened one by one
    step = 1 if cls is WebSSHSession else 20
    for start in range(0, n, step):
        batch = await asyncio.gather(*(cls().open(env) for _ in range(min(step, n - start))))
        sessions.extend(batch)
    await asyncio.gather(*(ready(s) for s in sessions))
    return sessions


async def ready(session) -> None:
    await session.send("echo RE''ADY\r")
    await session.read_until(b"READY", 60)
    await asyncio.sleep(0.05)
    session.clear()


async def throughput(sessions: list, total_bytes: int, pid: int | None) -> dict:
    per = max(1, total_bytes // len(sessions))
    cpu0 = cpu_seconds(pid) if pid else 0.0
    before = [s.total for s in sessions]
    peak = [rss_kib(pid) if pid else 0]
    streaming = True

    async def sample_rss() -> None:  # the server's peak memory while every session streams output
        while streaming and pid:
            peak[0] = max(peak[0], rss_kib(pid))
            await asyncio.sleep(0.05)
    sampler = asyncio.ensure_future(sample_rss())
    t0 = time.perf_counter()
    for s in sessions:
        await s.send(f"head -c {per} /dev/zero | tr '\\0' a; echo; echo DO''NE\r")
    await asyncio.gather(*(s.read_until(b"DONE", 600) for s in sessions))
    elapsed = time.perf_counter() - t0
    streaming = False
    await sampler
    moved = sum(s.total - b for s, b in zip(sessions, before))
    return {"mb_per_s": moved / elapsed / MB, "seconds": elapsed, "bytes": moved,
            "server_cpu_s": (cpu_seconds(pid) - cpu0) if pid else None,
            "peak_rss_mib": peak[0] / 1024 if pid else None}


async def echo_latency(sessions: list, samples: int) -> dict:
    per = max(1, math.ceil(samples / len(sessions)))
    values: list[float] = []

    async def one(s) -> None:
        for i in range(per):
            if i and i % 80 == 0:
                await s.send("\x15")
                await asyncio.sleep(0.05)
            s.clear()
            t0 = time.perf_counter()
            await s.send("x")
            await s.read_until(b"x", 30)
            values.append((time.perf_counter() - t0) * 1000)
        await s.send("\x15")
    await asyncio.gather(*(one(s) for s in sessions))
    return summarize(values)


async def run_system(cls, env: Environment, pid: int | None, args) -> dict:
    result: dict = {}
    sessions = await open_many(cls, env, 1)
    result["echo_1"] = await echo_latency(sessions, args.samples)
    with Profile(pid or 0, args.profile if pid else None, "terminal-throughput-1"):
        result["throughput_1"] = await throughput(sessions, args.bytes, pid)
    for s in sessions:
        await s.close()
    for n in args.levels:
        await asyncio.sleep(1)
        rss0 = rss_kib(pid) if pid else 0
        try:
            sessions = await open_many(cls, env, n)
        except Exception as exc:  # a peer that cannot hold n sessions is reported, not fatal
            result[f"error_{n}"] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        await asyncio.sleep(1)
        if pid:
            result[f"rss_per_session_kib_{n}"] = (rss_kib(pid) - rss0) / n
        result[f"echo_{n}"] = await echo_latency(sessions, args.samples)
        result[f"throughput_{n}"] = await throughput(sessions, args.bytes, pid)
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    return result


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or a != a or b != b:
        return "—"
    return f"{a / b:.2f}×"


def print_table(results: dict, levels: list[int]) -> None:
    systems = [s for s in ("raw SSH", "Bastion", "webssh") if s in results]
    print()
    print(f"{'metric':<34}" + "".join(f"{s:>14}" for s in systems) + f"{'B/raw':>9}{'B/webssh':>10}")
    rows = []
    for n in [1] + levels:
        rows.append((f"throughput MB/s ({n} session{'s' if n > 1 else ''})", f"throughput_{n}", "mb_per_s", True))
        rows.append((f"echo p50 ms ({n})", f"echo_{n}", "p50", False))
        rows.append((f"echo p99 ms ({n})", f"echo_{n}", "p99", False))
        rows.append((f"server CPU s for the bytes ({n})", f"throughput_{n}", "server_cpu_s", False))
        rows.append((f"server peak RSS MiB while streaming ({n})", f"throughput_{n}", "peak_rss_mib", False))
        if n > 1:
            rows.append((f"server RSS KiB per idle session ({n})", f"rss_per_session_kib_{n}", None, False))
    for label, key, field, _ in rows:
        vals = []
        for s in systems:
            entry = results[s].get(key)
            vals.append(entry if field is None else (entry or {}).get(field) if isinstance(entry, dict) else None)
        cells = "".join(f"{(f'{v:.2f}' if isinstance(v, (int, float)) else '—'):>14}" for v in vals)
        b = vals[systems.index("Bastion")] if "Bastion" in systems else None
        r = vals[systems.index("raw SSH")] if "raw SSH" in systems else None
        w = vals[systems.index("webssh")] if "webssh" in systems else None
        print(f"{label:<34}{cells}{ratio(b, r):>9}{ratio(b, w):>10}")
    for s in systems:
        for key, value in results[s].items():
            if key.startswith("error_"):
                print(f"  {s}: {key[6:]} sessions failed: {value}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=200 * 1024 * 1024)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--levels", default="50,200")
    parser.add_argument("--no-webssh", action="store_true")
    parser.add_argument("--profile", type=Path, help="py-spy the server during the 1-session throughput into DIR")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "terminal.json"))
    args = parser.parse_args()
    args.levels = [int(x) for x in args.levels.split(",") if x]
    env = Environment(tmpdir("bastion-bench-"), webssh=not args.no_webssh)
    results: dict = {}
    try:
        print("raw SSH …", flush=True)
        results["raw SSH"] = await run_system(RawSSH, env, None, args)
        print("Bastion …", flush=True)
        results["Bastion"] = await run_system(BastionSession, env, env.bastion_proc.pid, args)
        if not args.no_webssh:
            print("webssh …", flush=True)
            results["webssh"] = await run_system(WebSSHSession, env, env.webssh_proc.pid, args)
    finally:
        env.close()
    print_table(results, args.levels)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "args": {"bytes": args.bytes, "samples": args.samples,
                                                              "levels": args.levels}, "results": results}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
