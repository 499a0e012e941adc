"""SSH gateway benchmark: the OpenSSH client straight to sshd vs through Bastion's gateway, in one run.

Figures: throughput of `cat` of a 200 MB file (exec, stdout to /dev/null), keystroke echo round trip p50/p99 in an
interactive PTY session (300 samples), and `scp` of the 200 MB file from the host. The gateway records and
extracts as it always does. Prints a table with ratios and writes tests/perf/results/gateway.json.

    .venv/bin/python tests/perf/bench_gateway.py [--bytes 209715200] [--samples 300]
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import subprocess
import termios
import time
from pathlib import Path

from common import Environment, Profile, cpu_seconds, machine, summarize, tmpdir

MB = 1_000_000
RESULTS = Path(__file__).resolve().parent / "results" / "gateway.json"


def ssh_base(identity: Path, known: Path) -> list[str]:
    return ["-F", "/dev/null", "-i", str(identity), "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR"]


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def echo_samples(args: list[str], samples: int) -> list[float]:
    """Round trip of one typed character to its echo, in an interactive PTY session."""
    master, slave = pty.openpty()

    def controlling() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=controlling)
    os.close(slave)
    out = bytearray()

    def read_until(needle: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no {needle!r} on the terminal; last: {bytes(out[-200:])!r}")
            ready, _, _ = select.select([master], [], [], left)
            if ready:
                out.extend(os.read(master, 65536))

    try:
        read_until(b"$ ", 30)
        os.write(master, b"stty -echoctl; echo RE''ADY\r")
        read_until(b"READY\r\n")
        read_until(b"$ ")
        values = []
        for i in range(samples):
            if i % 50 == 0 and i:
                os.write(master, b"\x15")  # Ctrl-U: keep the line short
                time.sleep(0.05)
                while select.select([master], [], [], 0.2)[0]:
                    os.read(master, 65536)
            out.clear()
            char = b"0123456789"[i % 10:i % 10 + 1]  # digits: never in the prompt or a redraw of it
            start = time.perf_counter()
            os.write(master, char)
            read_until(char, 10)
            values.append((time.perf_counter() - start) * 1000)
        return values
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bytes", type=int, default=200 * 1024 * 1024)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--profile", type=Path, help="py-spy the bastion during the gateway's cat/scp/echo into DIR")
    parser.add_argument("--only", choices=("cat", "scp", "echo"), action="append", help="measure only these")
    opts = parser.parse_args()
    work = tmpdir("bench-gateway-")
    from procs import free_port
    gw_port = free_port()
    env = Environment(work, webssh=False, bastion_env={"BASTION_GATEWAY_LISTEN": f"127.0.0.1:{gw_port}",
                                                       "BASTION_GATEWAY_MAX_DOWNLOAD_BYTES": str(4 * opts.bytes)})
    try:
        sshd = env.sshd
        # the admin's grant with download permission, the admin's key on the account
        grants = env.call("GET", "/api/grants")["items"]
        me = env.call("GET", "/api/me")["user"]["id"]
        for g in grants:
            env.call("DELETE", f"/api/grants/{g['id']}")
        env.call("POST", "/api/grants", {"user_id": me, "host_id": env.host_id, "upload": True, "download": True})
        key = work / "gw_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        env.call("POST", "/api/me/ssh-keys", {"name": "bench", "public_key": Path(str(key) + ".pub").read_text()})
        info = env.call("GET", "/api/gateway")
        known = work / "known_hosts"
        host_pub = (sshd.root / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        known.write_text(f"[127.0.0.1]:{info['port']} {info['public_key']}\n"
                         f"[{sshd.address}]:{sshd.port} {' '.join(host_pub)}\n")
        direct_key = sshd.root / "client_key"
        direct_key.chmod(0o600)
        data = work / "payload.txt"
        with open(data, "wb") as fh:  # text, as a log file would be (base64 lines)
            import base64
            chunk = base64.encodebytes(os.urandom(3 * 1024 * 1024 // 4 * 3))
            written = 0
            while written < opts.bytes:
                part = chunk[:opts.bytes - written]
                fh.write(part)
                written += len(part)
        data.chmod(0o644)
        login = env.login_name
        # Two peers show what any extra hop costs on this machine: `relay` is socat, a TCP relay in C that decrypts
        # nothing (the floor of any proxy process in the path); `jump` is OpenSSH's own ProxyJump through the same
        # sshd (two SSH hops in C: ssh -W to sshd, which forwards to itself), recording nothing.
        relay_port = env.relay_port()  # stopped with the environment
        with open(known, "a") as fh:
            fh.write(f"[127.0.0.1]:{relay_port} {' '.join(host_pub)}\n")
        to_host = [*ssh_base(direct_key, known), "-p", str(sshd.port)]
        jump_cmd = " ".join(["ssh", *to_host, "-W", "%h:%p", f"{login}@{sshd.address}"])
        paths = {  # name: (ssh arguments before the command, scp arguments before the source)
            "direct": (["ssh", *to_host, f"{login}@{sshd.address}"],
                       ["scp", *ssh_base(direct_key, known), "-q", "-P", str(sshd.port)], f"{login}@{sshd.address}"),
            "relay": (["ssh", *ssh_base(direct_key, known), "-p", str(relay_port), f"{login}@127.0.0.1"],
                      ["scp", *ssh_base(direct_key, known), "-q", "-P", str(relay_port)], f"{login}@127.0.0.1"),
            "jump": (["ssh", *to_host, "-o", f"ProxyCommand={jump_cmd}", f"{login}@{sshd.address}"],
                     ["scp", *to_host[:-2], "-q", "-P", str(sshd.port), "-o", f"ProxyCommand={jump_cmd}"],
                     f"{login}@{sshd.address}"),
            "gateway": (["ssh", *ssh_base(key, known), "-p", str(info["port"]), "admin@bench@127.0.0.1"],
                        ["scp", *ssh_base(key, known), "-q", "-P", str(info["port"])], "admin@bench@127.0.0.1"),
        }
        results: dict = {"machine": machine(), "bytes": opts.bytes, "load_before": os.getloadavg(),
                         "peers": "relay = socat TCP relay (no decryption); jump = OpenSSH ProxyJump via the same sshd"}
        wanted = set(opts.only or ("cat", "scp", "echo"))

        def profiled(name: str, what: str) -> Profile:
            return Profile(env.bastion_proc.pid, opts.profile if name == "gateway" else None, what)

        nan = {"p50": float("nan"), "p99": float("nan")}
        for name, (base, scp_base, source) in paths.items():
            timed([*base, "true"])  # warm up (first login pins the host key)
            r = results.setdefault(name, {"cat_MBps": float("nan"), "scp_MBps": float("nan"), "echo_ms": nan})
            if "cat" in wanted:
                with profiled(name, "cat"):
                    cpu = cpu_seconds(env.bastion_proc.pid)
                    r["cat_MBps"] = opts.bytes / MB / min(timed([*base, f"cat {data}"]) for _ in range(2))
                    if name == "gateway":  # the bastion's CPU per 200 MB: where a faster gateway has to save
                        r["cat_cpu_s_per_200MB"] = (cpu_seconds(env.bastion_proc.pid) - cpu) / 2 * 200 * MB / opts.bytes
            if "scp" in wanted:
                with profiled(name, "scp"):
                    r["scp_MBps"] = opts.bytes / MB / min(timed([*scp_base, f"{source}:{data}", str(work / f"scp-{name}")])
                                                           for _ in range(2))
            if "echo" in wanted:
                with profiled(name, "echo"):
                    r["echo_ms"] = summarize(echo_samples([base[0], "-tt", *base[1:]], opts.samples))
        results["load_after"] = os.getloadavg()
        d = results["direct"]
        for name in paths:
            r = results[name]
            r["ratios"] = {"cat": r["cat_MBps"] / d["cat_MBps"], "scp": r["scp_MBps"] / d["scp_MBps"],
                           "echo_p50": r["echo_ms"]["p50"] / d["echo_ms"]["p50"],
                           "echo_p99": r["echo_ms"]["p99"] / d["echo_ms"]["p99"]}
        print(f"{'':10} {'cat MB/s':>16} {'scp MB/s':>16} {'echo p50 ms':>18} {'echo p99 ms':>18}")
        for name in paths:
            r, x = results[name], results[name]["ratios"]
            print(f"{name:10} {r['cat_MBps']:8.1f} ({x['cat']:4.2f}×) {r['scp_MBps']:8.1f} ({x['scp']:4.2f}×) "
                  f"{r['echo_ms']['p50']:10.2f} ({x['echo_p50']:4.2f}×) {r['echo_ms']['p99']:10.2f} ({x['echo_p99']:4.2f}×)")
        print(f"bastion CPU-s per 200 MB of cat: {results['gateway'].get('cat_cpu_s_per_200MB', float('nan')):.2f}")
        print(f"load average before {results['load_before'][0]:.1f}, after {results['load_after'][0]:.1f}")
        if opts.only or opts.profile:
            return  # partial or profiled runs are not the published figures
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        env.close()


if __name__ == "__main__":
    main()
