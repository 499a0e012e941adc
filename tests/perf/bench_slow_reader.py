"""Slow-reader benchmark: a Bastion session whose client stops reading while the host prints 200 MB.

Samples, over a soak window, the server's RSS growth and the bytes the session has read from the host
(`bytes_out` of the live session), i.e. what the pass/fail test (tests/test_terminal.py
test_slow_reader_memory_stays_bounded) only bounds generously. A paused session should stop reading the host:
bytes_out flat, RSS flat. Writes tests/perf/results/slow_reader.json.

    .venv/bin/python tests/perf/bench_slow_reader.py [--seconds 8] [--interval 0.25]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from common import BastionSession, Environment, machine, rss_kib, tmpdir

MIB = 1024 * 1024


async def soak(env: Environment, seconds: float, interval: float) -> dict:
    user = await BastionSession().open(env)
    await user.send("stty -echo; echo RE''ADY\r")
    await user.read_until(b"READY", 60)
    pid = env.bastion_proc.pid
    rss0 = rss_kib(pid)
    user.stop_reading()
    await user.send("head -c 209715200 /dev/zero | tr '\\0' 'x'\r")
    samples = []
    started = time.monotonic()
    for _ in range(int(seconds / interval) + 1):  # bounded
        doc = await asyncio.get_running_loop().run_in_executor(None, env.call, "GET", f"/api/sessions/{user.session_id}")
        samples.append({"t": round(time.monotonic() - started, 3), "rss_growth_kib": rss_kib(pid) - rss0,
                        "bytes_out": doc.get("bytes_out") or 0})
        await asyncio.sleep(interval)
    await user.ws.close()
    half = samples[len(samples) // 2]
    last = samples[-1]
    return {
        "samples": samples,
        "peak_rss_growth_kib": max(s["rss_growth_kib"] for s in samples),
        "final_rss_growth_kib": last["rss_growth_kib"],
        "bytes_out_final": last["bytes_out"],
        # after the buffers filled, a paused session reads (almost) nothing more from the host
        "bytes_out_second_half_mib_per_s": (last["bytes_out"] - half["bytes_out"]) / MIB / max(1e-9, last["t"] - half["t"]),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "slow_reader.json"))
    args = parser.parse_args()
    env = Environment(tmpdir("bastion-slow-"), webssh=False)
    try:
        result = await soak(env, args.seconds, args.interval)
    finally:
        env.close()
    print(f"\n{'slow reader, ' + str(args.seconds) + ' s soak':<40}{'value':>12}")
    print(f"{'peak server RSS growth (MiB)':<40}{result['peak_rss_growth_kib'] / 1024:>12.1f}")
    print(f"{'final server RSS growth (MiB)':<40}{result['final_rss_growth_kib'] / 1024:>12.1f}")
    print(f"{'bytes read from the host (MiB)':<40}{result['bytes_out_final'] / MIB:>12.1f}")
    print(f"{'host read rate, 2nd half (MiB/s)':<40}{result['bytes_out_second_half_mib_per_s']:>12.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": result}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
