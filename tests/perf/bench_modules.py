"""Module benchmark: `uptime` on 50 hosts through the ssh platform, the ansible platform and plain
`ansible all -m command -a uptime` on the same inventory (the peer), side by side; then 20 concurrent runs
of 10 hosts. 50 "hosts" = 50 loopback addresses served by 4 sshd processes (one sshd takes ≤ 16 addresses).
Writes tests/perf/results/modules.json.

    .venv/bin/python tests/perf/bench_modules.py [--hosts 50]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, Environment, machine, tmpdir
from scenario import inventory_steps, run_steps_sync
from sshd import make_sshd

UPTIME = '''import bastion


class Modulehandle(bastion.Modulehandle):
    name = "Uptime ({platform})"
    description = "uptime on every host"
    platform = "{platform}"
    category = "Bench"
    timeout = 300
    params = []

    {body}
'''
SSH_BODY = 'async def run(self):\n        return await self.ssh(["uptime"])'
ANSIBLE_BODY = 'def run(self):\n        return self.ansible("ansible.builtin.command", {"argv": ["uptime"]})'


def start_hosts(work: Path, count: int) -> list:
    servers = []
    addresses = [f"127.0.1.{i}" for i in range(10, 10 + count)]
    for start in range(0, count, 13):
        server = make_sshd(work / f"sshd{start}", addresses=addresses[start:start + 13])
        if servers:  # one key pair for all, so one credential serves every host
            shutil.copy(servers[0].root / "client_key", server.root / "client_key")
            shutil.copy(servers[0].root / "client_key.pub", server.root / "authorized_keys")
            server.client_key = servers[0].client_key
        servers.append(server.start())
    return servers


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "modules.json"))
    args = parser.parse_args()
    work = tmpdir("bastion-mod-")
    work.chmod(0o755)  # sshd reads authorized_keys as the login user
    (work / "modules").mkdir()
    (work / "modules" / "Mid_1101.py").write_text(UPTIME.format(platform="ssh", body=SSH_BODY))
    (work / "modules" / "Mid_1102.py").write_text(UPTIME.format(platform="ansible", body=ANSIBLE_BODY))
    servers = start_hosts(work, args.hosts)
    # log in as a plain account: root's shell start-up on this machine (pyenv init) costs 0.15 CPU-s per login,
    # which would measure the machine's dotfiles rather than the fan-out
    from sshd import PASSWORD_USER, ensure_password_user
    login = PASSWORD_USER if ensure_password_user() else servers[0].username
    env = Environment(work, webssh=False, bastion_env={"BASTION_MODULES_DIR": str(work / "modules"),
                                                       "BASTION_MODULES_MAX_RUNS": "20"})
    results: dict = {}
    try:
        endpoints = [ep for server in servers for ep in server.endpoints]
        ids = run_steps_sync(env.call, inventory_steps(name="fleet-h", username=login, private_key=servers[0].client_key,
                                                       endpoints=endpoints, grant_to="me", grant_whole_category=True))
        host_ids = ids["host_ids"]
        deadline = time.monotonic() + 30  # the registry picks the modules up
        while {"1101", "1102"} - {m["id"] for m in env.call("GET", "/api/modules")["items"]}:
            if time.monotonic() > deadline:
                raise RuntimeError("the registry did not pick the modules up")
            await asyncio.sleep(0.1)

        def run(module_id: str, hosts: list[str]) -> tuple[float, dict]:
            t0 = time.perf_counter()
            r = env.call("POST", f"/api/modules/{module_id}/runs", {"host_ids": hosts, "params": {}})
            while True:
                doc = env.call("GET", f"/api/runs/{r['run_id']}")
                if doc["status"] in ("ok", "partial", "failed", "timeout"):
                    return time.perf_counter() - t0, doc
                time.sleep(0.05)

        run("1101", host_ids)  # warm-up; pins every host key
        seconds, doc = run("1101", host_ids)
        results["ssh_platform"] = {"seconds": seconds, "status": doc["status"],
                                   "ok_hosts": sum(1 for r in doc["results"].values() if r["ok"])}
        print(f"ssh platform: {seconds:.2f} s ({results['ssh_platform']['ok_hosts']} ok)", flush=True)
        seconds, doc = run("1102", host_ids)
        results["ansible_platform"] = {"seconds": seconds, "status": doc["status"],
                                       "ok_hosts": sum(1 for r in doc["results"].values() if r["ok"]), "error": doc["error"][-300:]}
        print(f"ansible platform: {seconds:.2f} s ({results['ansible_platform']['ok_hosts']} ok)", flush=True)
        # the peer: plain ansible on the same inventory
        inv = work / "inventory.ini"
        keyfile = work / "peer_key"
        keyfile.write_text(servers[0].client_key)
        keyfile.chmod(0o600)
        inv.write_text("[all]\n" + "\n".join(f"h{i} ansible_host={a} ansible_port={p}" for i, (a, p) in enumerate(endpoints)) + "\n")
        bindir = str(Path(sys.executable).parent)
        peer_env = {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"], "ANSIBLE_HOST_KEY_CHECKING": "False",
                    "ANSIBLE_PIPELINING": "True", "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3"}
        t0 = time.perf_counter()
        peer = subprocess.run([str(Path(bindir) / "ansible"), "all", "-i", str(inv), "-m", "command", "-a", "uptime",
                               "-f", str(args.hosts), "-u", login, "--private-key", str(keyfile)],
                              env=peer_env, capture_output=True, text=True, timeout=900)
        seconds = time.perf_counter() - t0
        results["plain_ansible"] = {"seconds": seconds, "rc": peer.returncode,
                                    "ok_hosts": peer.stdout.count("| CHANGED |")}
        print(f"plain ansible: {seconds:.2f} s ({results['plain_ansible']['ok_hosts']} ok)", flush=True)
        # 20 concurrent runs of 10 hosts
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        docs = await asyncio.gather(*(loop.run_in_executor(None, run, "1101", host_ids[(i * 10) % len(host_ids):][:10])
                                      for i in range(20)))
        results["concurrent_20x10"] = {"seconds": time.perf_counter() - t0,
                                       "statuses": sorted({d[1]["status"] for d in docs}),
                                       "failed_hosts": sum(1 for d in docs for r in d[1]["results"].values() if not r["ok"])}
        print(f"20 concurrent runs x 10 hosts: {results['concurrent_20x10']}", flush=True)
    finally:
        env.close()
        for s in servers:
            s.stop()
    ssh, ans, peer = (results[k]["seconds"] for k in ("ssh_platform", "ansible_platform", "plain_ansible"))
    print(f"\n{'way':<28}{'seconds':>9}{'vs plain ansible':>18}")
    for label, value in (("Bastion ssh platform", ssh), ("Bastion ansible platform", ans), ("plain ansible -f N", peer)):
        print(f"{label:<28}{value:>9.2f}{peer / value:>17.1f}×")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "hosts": args.hosts, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    asyncio.run(main())
