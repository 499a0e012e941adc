"""Fleet benchmark: `uptime` on 50 and on 500 hosts, in one run, through
- Bastion's ssh platform, and a bare asyncssh fan-out script (the floor; same key, 50 hosts at a time);
- Bastion's ansible platform, and plain `ansible all -f 50`;
- Bastion's salt platform, and plain `salt-ssh`;
with the bastion process's peak RSS during each Bastion run.

500 "hosts" = 32 sshd processes × 16 loopback addresses (one sshd listens on at most 16); the 50-host runs use the
first 50. Bastion runs are timed from the POST to the moment the API reports the run finished (polled every 50 ms
with `?since=`); the peers are timed as whole commands (interpreter start included), like the worker process.
Writes tests/perf/results/fleet.json and prints a table.

    .venv/bin/python tests/perf/bench_fleet.py [--sizes 50,500] [--skip ansible,salt] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import ROOT, Environment, machine, tmpdir

from bastion.salt_platform import cache_root
from scenario import inventory_steps, run_steps_sync
from sshd import PASSWORD_USER, ensure_password_user, make_sshd

HERE = Path(__file__).resolve().parent
FINAL = ("ok", "partial", "failed", "timeout", "cancelled")
MODULE = '''import bastion


class Modulehandle(bastion.Modulehandle):
    name = "Uptime ({platform})"
    description = "uptime on every host"
    platform = "{platform}"
    category = "Bench"
    timeout = 1800
    params = []

    {body}
'''
BODIES = {
    "ssh": 'async def run(self):\n        return await self.ssh(["uptime"])',
    "ansible": 'def run(self):\n        return self.ansible("ansible.builtin.command", {"argv": ["uptime"]})',
    "salt": 'def run(self):\n        return self.salt("cmd.run_all", {"cmd": ["uptime"], "python_shell": False})',
}
MODULE_IDS = {"ssh": "1201", "ansible": "1202", "salt": "1203"}


def addresses(count: int) -> list[str]:
    return [f"127.3.{i // 200}.{i % 200 + 10}" for i in range(count)]


def start_hosts(work: Path, count: int, per_sshd: int = 16) -> list:
    """`count` hosts on ceil(count / 16) sshd processes, one key pair for all."""
    servers = []
    addrs = addresses(count)
    for start in range(0, count, per_sshd):
        server = make_sshd(work / f"sshd{start:03d}", addresses=addrs[start:start + per_sshd])
        if servers:
            shutil.copy(servers[0].root / "client_key", server.root / "client_key")
            shutil.copy(servers[0].root / "client_key.pub", server.root / "authorized_keys")
            server.client_key = servers[0].client_key
        servers.append(server.start())
    return servers


class PeakRSS:
    """Samples a process's resident memory (and its descendants', separately) every 20 ms while running."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self.workers_peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _sample(self) -> None:
        from bastion.executor import descendants
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self._rss(self.pid))
            self.workers_peak_kib = max(self.workers_peak_kib, sum(self._rss(p) for p in descendants(self.pid)))
            self._stop.wait(0.02)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def bastion_run(env: Environment, module_id: str, host_ids: list[str], timeout: float) -> dict[str, Any]:
    """One run through the API, timed from POST to the poll that sees it finished."""
    with PeakRSS(env.bastion_proc.pid) as rss:
        t0 = time.perf_counter()
        made = env.call("POST", f"/api/modules/{module_id}/runs", {"host_ids": host_ids, "params": {}})
        seq, results, doc = 0, {}, {}
        while time.perf_counter() - t0 < timeout:
            doc = env.call("GET", f"/api/runs/{made['run_id']}?since={seq}")
            for name, r in doc["results"].items():
                results[name] = r
                seq = max(seq, r.get("seq", 0))
            if doc["status"] in FINAL:
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
    ok = sum(1 for r in results.values() if r.get("ok"))
    slowest = max((r.get("elapsed", 0) for r in results.values()), default=0)
    first_error = next((r.get("stderr", "") for r in results.values() if not r.get("ok")), "")
    return {"seconds": round(seconds, 3), "status": doc.get("status", "unfinished"), "ok_hosts": ok,
            "hosts": len(host_ids), "queued_s": round(doc["started_at"] - doc["created_at"], 3) if doc.get("started_at") else None,
            "worker_s": doc.get("duration"), "slowest_host_s": round(slowest, 3),
            "bastion_peak_rss_mib": round(rss.peak_kib / 1024, 1), "workers_peak_rss_mib": round(rss.workers_peak_kib / 1024, 1),
            "first_error": (doc.get("error") or first_error)[-300:]}


def timed(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess | None]:
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, None
    return time.perf_counter() - t0, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,500")
    parser.add_argument("--skip", default="", help="comma-separated: ansible, salt")
    parser.add_argument("--repeat", type=int, default=3, help="ssh platform and floor: best of N (default 3)")
    parser.add_argument("--timeout", type=float, default=1500, help="seconds allowed to one measurement")
    parser.add_argument("--out", default=str(HERE / "results" / "fleet.json"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    platforms = [p for p in ("ssh", "ansible", "salt") if p not in skip]
    work = tmpdir("bastion-fleet-")
    work.chmod(0o755)  # sshd reads authorized_keys as the login user
    (work / "modules").mkdir()
    for platform in platforms:
        (work / "modules" / f"Mid_{MODULE_IDS[platform]}.py").write_text(MODULE.format(platform=platform, body=BODIES[platform]))
    t_fixture = time.perf_counter()
    servers = start_hosts(work, max(sizes))
    fixture_s = time.perf_counter() - t_fixture
    print(f"{max(sizes)} hosts on {len(servers)} sshd processes in {fixture_s:.1f} s", flush=True)
    # a plain account: root's shell start-up here (pyenv init) would measure the machine's dotfiles
    login = PASSWORD_USER if ensure_password_user() else servers[0].username
    env = Environment(work, webssh=False, bastion_env={"BASTION_MODULES_DIR": str(work / "modules"),
                                                       "BASTION_MODULES_MAX_RUNS": "4"})
    bindir = Path(sys.executable).parent
    keyfile = work / "peer_key"
    keyfile.write_text(servers[0].client_key)
    keyfile.chmod(0o600)
    endpoints = [ep for server in servers for ep in server.endpoints]
    host_key = (servers[0].host_key_path.parent / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    results: dict[str, Any] = {"fixture": {"hosts": len(endpoints), "sshd_processes": len(servers), "seconds": round(fixture_s, 1)}}
    try:
        ids = run_steps_sync(env.call, inventory_steps(name="f", username=login, private_key=servers[0].client_key,
                                                       endpoints=endpoints, grant_to="me", grant_whole_category=True))
        host_ids = ids["host_ids"]
        deadline = time.monotonic() + 30
        while {MODULE_IDS[p] for p in platforms} - {m["id"] for m in env.call("GET", "/api/modules")["items"]}:
            if time.monotonic() > deadline:
                raise RuntimeError("the registry did not pick the modules up")
            time.sleep(0.1)
        warm = bastion_run(env, MODULE_IDS["ssh"], host_ids, args.timeout)  # pins every host key (trust on first use)
        print(f"warm-up (pins {len(host_ids)} keys): {warm['seconds']:.2f} s, {warm['ok_hosts']} ok", flush=True)
        for size in sizes:
            chosen = host_ids[:size]
            row: dict[str, Any] = {}
            hosts_file = work / f"hosts{size}.json"
            hosts_file.write_text(json.dumps(endpoints[:size]))
            runs = [bastion_run(env, MODULE_IDS["ssh"], chosen, args.timeout) for _ in range(args.repeat)]
            row["ssh_platform"] = min(runs, key=lambda r: r["seconds"]) | {"all_seconds": [r["seconds"] for r in runs]}
            print(f"[{size}] ssh platform: {row['ssh_platform']['all_seconds']} ({row['ssh_platform']['ok_hosts']} ok)", flush=True)
            floors = []
            for _ in range(args.repeat):
                seconds, done = timed([sys.executable, str(HERE / "fanout_floor.py"), str(hosts_file), str(keyfile), login, "50"],
                                      args.timeout)
                floors.append({"seconds": round(seconds, 3), "ok_hosts": int(done.stdout.strip() or 0) if done else 0})
            row["asyncssh_floor"] = min(floors, key=lambda r: r["seconds"]) | {"all_seconds": [r["seconds"] for r in floors]}
            print(f"[{size}] asyncssh floor: {row['asyncssh_floor']['all_seconds']} ({row['asyncssh_floor']['ok_hosts']} ok)", flush=True)
            if "ansible" in platforms:
                row["ansible_platform"] = bastion_run(env, MODULE_IDS["ansible"], chosen, args.timeout)
                print(f"[{size}] ansible platform: {row['ansible_platform']['seconds']} s", flush=True)
                inv = work / f"inventory{size}.ini"
                inv.write_text("[all]\n" + "\n".join(f"h{i} ansible_host={a} ansible_port={p}"
                                                     for i, (a, p) in enumerate(endpoints[:size])) + "\n")
                peer_env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "ANSIBLE_HOST_KEY_CHECKING": "False",
                            "ANSIBLE_PIPELINING": "True", "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3"}
                seconds, done = timed([str(bindir / "ansible"), "all", "-i", str(inv), "-m", "command", "-a", "uptime", "-f", "50",
                                       "-u", login, "--private-key", str(keyfile)], args.timeout, peer_env)
                row["plain_ansible"] = {"seconds": round(seconds, 3), "ok_hosts": done.stdout.count("| CHANGED |") if done else 0,
                                        "finished": done is not None}
                print(f"[{size}] plain ansible -f 50: {seconds:.2f} s", flush=True)
            if "salt" in platforms:
                if size == sizes[0]:
                    # every "host" here shares one file system: deploy salt's thin bundle once, on one host, before
                    # 50 concurrent first contacts unpack it into the same directory at once
                    bastion_run(env, MODULE_IDS["salt"], chosen[:1], args.timeout)
                row["salt_platform"] = bastion_run(env, MODULE_IDS["salt"], chosen, args.timeout)
                print(f"[{size}] salt platform: {row['salt_platform']['seconds']} s ({row['salt_platform']['ok_hosts']} ok)", flush=True)
                sconf = work / f"salt{size}"
                sconf.mkdir(exist_ok=True)
                (sconf / "roster").write_text("#!yaml\n" + "".join(
                    f"h{i}: {json.dumps({'host': a, 'port': p, 'user': login, 'priv': str(keyfile), 'set_path': '/usr/local/bin:/usr/bin:/bin'})}\n"
                    for i, (a, p) in enumerate(endpoints[:size])))
                # the platform's cache: the same thin bundle, so neither redeploys the other's
                (sconf / "master").write_text(json.dumps({"root_dir": cache_root(), "cachedir": "cache", "pki_dir": "pki",
                                                          "sock_dir": "sock", "log_file": "master.log", "ssh_log_file": "ssh.log"}))
                cmd = [str(bindir / "salt-ssh"), "-c", str(sconf), "--roster-file", str(sconf / "roster"), "--ignore-host-keys",
                       "--out", "json", "--static", "--no-color", "--log-level", "quiet", "--max-procs", "50", "*", "cmd.run_all", "uptime"]
                seconds, done = timed(cmd, args.timeout)
                ok = 0
                if done is not None:
                    try:
                        ok = sum(1 for r in json.loads(done.stdout or "{}").values() if isinstance(r, dict) and r.get("retcode") == 0)
                    except ValueError:
                        ok = 0
                row["plain_salt_ssh"] = {"seconds": round(seconds, 3), "ok_hosts": ok, "finished": done is not None}
                print(f"[{size}] plain salt-ssh: {seconds:.2f} s ({ok} ok)", flush=True)
            row["ssh_vs_floor"] = round(row["ssh_platform"]["seconds"] / row["asyncssh_floor"]["seconds"], 2)
            results[str(size)] = row
    finally:
        env.close()
        for s in servers:
            s.stop()
    load = os.getloadavg()
    print(f"\nmachine load average (1/5/15 min) at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} — shared with other work")
    print(f"{'hosts':>6}  {'way':<26}{'seconds':>9}{'ok':>6}{'bastion peak RSS':>18}")
    for size in sizes:
        row = results[str(size)]
        for key, label in (("ssh_platform", "Bastion ssh platform"), ("asyncssh_floor", "bare asyncssh fan-out"),
                           ("ansible_platform", "Bastion ansible platform"), ("plain_ansible", "plain ansible -f 50"),
                           ("salt_platform", "Bastion salt platform"), ("plain_salt_ssh", "plain salt-ssh")):
            if key in row:
                r = row[key]
                rss = f"{r['bastion_peak_rss_mib']:.0f} MiB" if "bastion_peak_rss_mib" in r else ""
                print(f"{size:>6}  {label:<26}{r['seconds']:>9.2f}{r['ok_hosts']:>6}{rss:>18}")
        print(f"{size:>6}  ssh platform / floor: {row['ssh_vs_floor']:.2f}×")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "load_average_at_end": load, "shared_machine": True,
                               "sizes": sizes, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
