"""Cross-node benchmark: monitor delivery lag p50/p99 and kick latency, within one node and from node B to a
session on node A (shared MongoDB store on nx-27017, real redis-server hub). Writes results/multinode.json.

    .venv/bin/python tests/perf/bench_multinode.py [--marks 300] [--kicks 30]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

from bench_hub import MarkTracker, kick_latency
from common import ADMIN_PASSWORD, BastionAPI, BastionSession, MonitorSession, machine, summarize, tmpdir
from procs import free_port, init_bastion, serve_bastion, start_nx, stop_process, wait_port
from sshd import make_sshd

SECRET = "bench-multinode-shared-secret-000000"


async def lag(user_env: BastionAPI, mon_env: BastionAPI, marks: int) -> dict:
    user = await BastionSession().open(user_env)
    await user.send("echo RE''ADY\r")
    await user.read_until(b"READY", 60)
    mon = MonitorSession()
    tracker_m = MarkTracker()
    mon.on_bytes = tracker_m
    await mon.open(mon_env, user.session_id)
    await asyncio.sleep(0.5)
    tracker_u = MarkTracker()
    user.on_bytes = tracker_u
    await user.send(f"for i in $(seq 1 {marks}); do echo MARK$i. {'x' * 150}; sleep 0.01; done; echo LAG''DONE\r")
    await user.read_until(b"LAGDONE", 120)
    await asyncio.sleep(0.5)
    values = [(tracker_m.times[m] - t) * 1000 for m, t in tracker_u.times.items() if m in tracker_m.times]
    missing = len(tracker_u.times) - len(values)
    await mon.close()
    await user.close()
    return {"lag_ms": summarize(values), "missing": missing}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--marks", type=int, default=300)
    parser.add_argument("--kicks", type=int, default=30)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "multinode.json"))
    args = parser.parse_args()
    work = tmpdir("bastion-multi-")
    work.chmod(0o755)
    sshd = make_sshd(work / "sshd").start()
    from sshd import PASSWORD_USER, ensure_password_user
    login = PASSWORD_USER if ensure_password_user() else sshd.username
    redis_port, nx_port = free_port(), free_port()
    redis = subprocess.Popen([shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(redis_port), "--bind",
                              "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    (work / "nx").mkdir(exist_ok=True)
    nx = None
    procs = []
    results: dict = {}
    try:
        wait_port("127.0.0.1", redis_port, proc=redis)
        nx = start_nx(work / "nx", nx_port)
        envs = []
        for name in ("node-a", "node-b"):
            port = free_port()
            env = {**os.environ, "BASTION_SERVER_PORT": str(port), "BASTION_SERVER_DATA_DIR": str(work / name),
                   "BASTION_SERVER_NODE_ID": name, "BASTION_SERVER_SECRET": SECRET,
                   "BASTION_DATABASE_URL": f"mongodb://127.0.0.1:{nx_port}/bench",
                   "BASTION_HUB_URL": f"redis://127.0.0.1:{redis_port}/0", "BASTION_TERMINAL_RECORDS_DIR": str(work / "records"),
                   "BASTION_TERMINAL_MAX_SESSIONS_PER_USER": "1000", "BASTION_TERMINAL_NOTIFY_MONITORED": "false",
                   "BASTION_LOG_LEVEL": "WARNING"}
            envs.append((env, port))
        init_bastion(envs[0][0], ADMIN_PASSWORD)
        nodes = []
        for env, port in envs:
            procs.append(serve_bastion(env, work / f"{env['BASTION_SERVER_NODE_ID']}.log"))
            node = BastionAPI(port)
            node.login()
            nodes.append(node)
        a, b = nodes
        b.host_id = a.seed_host(sshd, login)["host_id"]
        print("lag within node A …", flush=True)
        results["lag_single_node"] = await lag(a, a, args.marks)
        print("lag A → B …", flush=True)
        results["lag_cross_node"] = await lag(a, b, args.marks)
        print("kick within node A …", flush=True)
        results["kick_single_node_ms"] = await kick_latency(a, args.kicks)
        print("kick from B to A …", flush=True)
        results["kick_cross_node_ms"] = await kick_latency(a, args.kicks, kick_env=b)
    finally:
        for proc in procs:
            stop_process(proc)
        stop_process(redis)
        stop_process(nx)
        sshd.stop()
    s, c = results["lag_single_node"]["lag_ms"], results["lag_cross_node"]["lag_ms"]
    ks, kc = results["kick_single_node_ms"], results["kick_cross_node_ms"]
    print(f"\n{'':<26}{'p50 ms':>9}{'p99 ms':>9}")
    print(f"{'monitor lag, one node':<26}{s['p50']:>9.2f}{s['p99']:>9.2f}")
    print(f"{'monitor lag, B watches A':<26}{c['p50']:>9.2f}{c['p99']:>9.2f}   p99 ratio {c['p99'] / s['p99']:.2f}×")
    print(f"{'kick, one node':<26}{ks['p50']:>9.2f}{ks['p99']:>9.2f}")
    print(f"{'kick, from B to A':<26}{kc['p50']:>9.2f}{kc['p99']:>9.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
