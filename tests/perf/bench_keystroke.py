"""Keystroke benchmark: raw asyncssh vs Bastion side by side in one run, in a real bash with echo on.

Each round at a fresh prompt: the first key right after the prompt arrives (latency to its echo), the
rest of `echo k''N` one key at a time (keystroke echo), then Enter as soon as the last key's echo is
back (Enter → the command's output). At 1 session and at N concurrent sessions. Also the bastion's CPU
per keystroke. Prints a table with ratios and the issue's targets; writes tests/perf/results/keystroke.json.

    .venv/bin/python tests/perf/bench_keystroke.py [--rounds 300] [--levels 50]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from pathlib import Path

from common import BastionSession, Environment, Profile, RawSSH, RelayedSSH, cpu_seconds, machine, summarize, tmpdir

PROMPT = b"P> "


async def ready(session) -> None:
    """A known, short prompt (one write by bash), and the buffer cleared at it."""
    await session.send("PS1='P> '; echo RE''ADY\r")
    await session.read_until(b"READY", 60)
    await session.read_until(PROMPT, 30)


async def rounds(session, count: int, tag: int, out: dict[str, list[float]]) -> int:
    """`count` rounds at the prompt; returns the number of keys sent."""
    keys = 0
    for i in range(count):
        word = f"echo k''{tag}x{i}"
        t0 = time.perf_counter()
        await session.send(word[0])
        await session.read_until(word[0].encode(), 30)
        out["first"].append((time.perf_counter() - t0) * 1000)
        for ch in word[1:]:
            t0 = time.perf_counter()
            await session.send(ch)
            await session.read_until(ch.encode(), 30)
            out["echo"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await session.send("\r")
        await session.read_until(f"k{tag}x{i}\r\n".encode(), 30)
        out["enter"].append((time.perf_counter() - t0) * 1000)
        await session.read_until(PROMPT, 30)
        keys += len(word) + 1
    return keys


async def measure(cls, env: Environment, n: int, total_rounds: int, pid: int | None) -> dict:
    sessions = []
    for start in range(0, n, 20):  # bounded: 20 handshakes at a time
        sessions.extend(await asyncio.gather(*(cls().open(env) for _ in range(min(20, n - start)))))
    await asyncio.gather(*(ready(s) for s in sessions))
    out: dict[str, list[float]] = {"first": [], "echo": [], "enter": []}
    per = max(1, math.ceil(total_rounds / n))
    cpu0 = cpu_seconds(pid) if pid else 0.0
    keys = sum(await asyncio.gather(*(rounds(s, per, t, out) for t, s in enumerate(sessions))))
    cpu = (cpu_seconds(pid) - cpu0) if pid else None
    await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    result = {name: summarize(values) for name, values in out.items()}
    result["keys"] = keys
    if cpu is not None:
        result["server_cpu_ms_per_key"] = cpu * 1000 / keys
    return result


def print_table(results: dict, levels: list[int]) -> list[str]:
    raw, bastion, relay = results["raw SSH"], results["Bastion"], results.get("relay", {})
    lines = [f"{'metric (ms)':<34}{'raw SSH':>10}{'relay':>10}{'Bastion':>10}{'B/raw':>8}  target"]
    verdicts = []
    for n in levels:
        r, b, y = raw[str(n)], bastion[str(n)], relay.get(str(n))
        for label, key, field in (("Enter → output p50", "enter", "p50"), ("Enter → output p99", "enter", "p99"),
                                  ("first key after prompt p50", "first", "p50"),
                                  ("first key after prompt p99", "first", "p99"),
                                  ("keystroke echo p50", "echo", "p50"), ("keystroke echo p99", "echo", "p99")):
            rv, bv = r[key][field], b[key][field]
            target = ""
            if n == 1 and (key, field) == ("enter", "p50"):
                target = f"≤ {rv + 1:.2f} ({'met' if bv <= rv + 1 else 'MISSED'})"
            elif n == 1 and (key, field) == ("enter", "p99"):
                target = f"≤ {2 * rv + 2:.2f} ({'met' if bv <= 2 * rv + 2 else 'MISSED'})"
            elif n == 1 and (key, field) == ("echo", "p50"):
                target = f"≤ {1.5 * rv:.2f} ({'met' if bv <= 1.5 * rv else 'MISSED'})"
            elif n > 1 and (key, field) == ("enter", "p50"):
                target = f"≤ {1.5 * rv:.2f} ({'met' if bv <= 1.5 * rv else 'MISSED'})"
            if target:
                verdicts.append(f"{label} ({n}): {target}")
            yv = f"{y[key][field]:>10.2f}" if y else f"{'—':>10}"
            lines.append(f"{label + f' ({n})':<34}{rv:>10.2f}{yv}{bv:>10.2f}{bv / rv:>7.2f}×  {target}")
        cpu = b.get("server_cpu_ms_per_key")
        if cpu is not None:
            lines.append(f"{f'server CPU ms per key ({n})':<34}{'':>10}{cpu:>10.3f}")
    print("\n".join(lines))
    return verdicts


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="Enter samples per level (split over sessions)")
    parser.add_argument("--levels", default="50", help="concurrent sessions besides 1, comma-separated")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "keystroke.json"))
    parser.add_argument("--profile", type=Path, help="py-spy the bastion during its rounds into DIR")
    parser.add_argument("--no-relay", action="store_true", help="skip the socat relay peer (raw SSH via one C hop)")
    args = parser.parse_args()
    levels = [1] + [int(x) for x in args.levels.split(",") if x]
    env = Environment(tmpdir("bastion-keys-"), webssh=False)
    results: dict = {"raw SSH": {}, "Bastion": {}, "relay": {}}
    try:
        for n in levels:  # side by side per level, so both see the same machine state
            print(f"{n} session(s): raw SSH …", flush=True)
            results["raw SSH"][str(n)] = await measure(RawSSH, env, n, args.rounds, None)
            if not args.no_relay:
                print(f"{n} session(s): raw SSH via a socat relay …", flush=True)
                results["relay"][str(n)] = await measure(RelayedSSH, env, n, args.rounds, None)
            print(f"{n} session(s): Bastion …", flush=True)
            with Profile(env.bastion_proc.pid, args.profile, f"keystroke-{n}"):
                results["Bastion"][str(n)] = await measure(BastionSession, env, n, args.rounds, env.bastion_proc.pid)
    finally:
        env.close()
    print()
    verdicts = print_table(results, levels)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "args": {"rounds": args.rounds, "levels": levels},
                               "results": results, "targets": verdicts}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
