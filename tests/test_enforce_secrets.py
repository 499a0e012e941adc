"""Secrets on disk: umask 077, private database files and recording directories, a sealed canary that stops a
wrong server secret at start-up, and module workers with a scrubbed environment."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.executor import worker_environment
from client import TerminalClient
from conftest import BastionApp, free_port, seed_inventory, stop_process, wait_port, wait_ready, wait_ready
from test_modules import setup as setup_modules, wait_run, write_module

SECRET_A = "first-secret-0123456789abcdef"
SECRET_B = "other-secret-0123456789abcdef"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _serve_env(tmp_path: Path, secret: str, port: int) -> dict[str, str]:
    return {**os.environ, "BASTION_SERVER_PORT": str(port), "BASTION_SERVER_DATA_DIR": str(tmp_path / "var"),
            "BASTION_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'bastion.db'}",
            "BASTION_TERMINAL_RECORDS_DIR": str(tmp_path / "records"), "BASTION_MODULES_DIR": str(tmp_path / "modules"),
            "BASTION_SERVER_SECRET": secret}


def _umask_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError("no Umask line in /proc/<pid>/status")


def test_private_files_and_canary_with_real_serve_processes(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the parent's umask is the loose default: what the bastion makes must not depend on it
    try:
        port = free_port()
        log = open(tmp_path / "first.log", "w")
        first = subprocess.Popen([sys.executable, "-m", "bastion", "serve"], env=_serve_env(tmp_path, SECRET_A, port),
                                 stdout=log, stderr=log)
        try:
            wait_ready(port, proc=first)  # the port is bound before the database is opened
            var = tmp_path / "var"
            assert _umask_of(first.pid) == 0o077
            assert mode(var) == 0o700
            files = {p.name: mode(p) for p in var.iterdir() if p.is_file()}
            dirs = {p.name: mode(p) for p in var.iterdir() if p.is_dir()}
            assert {"bastion.db", "bastion.db-wal", "bastion.db-shm"} <= set(files), files
            assert all(m == 0o600 for m in files.values()), {k: oct(m) for k, m in files.items()}
            assert dirs == {"journal": 0o700}, dirs
        finally:
            stop_process(first)
            log.close()
        # (its exit code is not checked: SIGTERM right after the port opens may come before serve() installs its
        # signal handlers, which is the lead's app.py and not what this test is about)
        assert "Traceback" not in (tmp_path / "first.log").read_text()
        # the same database with another secret: start-up stops with one clear line and exit code 2
        port = free_port()
        wrong = subprocess.run([sys.executable, "-m", "bastion", "serve"], env=_serve_env(tmp_path, SECRET_B, port),
                               capture_output=True, text=True, timeout=60)
        assert wrong.returncode == 2
        lines = [line for line in wrong.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "server secret is not the one this database was set up with" in lines[0], wrong.stderr
        assert SECRET_A not in wrong.stderr + wrong.stdout and SECRET_B not in wrong.stderr + wrong.stdout
        # the original secret still starts
        again = subprocess.Popen([sys.executable, "-m", "bastion", "serve"], env=_serve_env(tmp_path, SECRET_A, port),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(port, proc=again)
        finally:
            stop_process(again)
    finally:
        os.umask(old)


def test_loose_files_of_an_older_install_are_tightened(tmp_path: Path) -> None:
    """A database made under umask 022 (before this change) is 0600 with its -wal/-shm after the next start."""
    import sqlite3
    var = tmp_path / "var"
    var.mkdir(mode=0o700)
    old = os.umask(0o022)
    try:
        db = sqlite3.connect(var / "bastion.db")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        assert mode(var / "bastion.db") == 0o644
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "bastion", "serve"], env=_serve_env(tmp_path, SECRET_A, port),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(port, proc=proc)
            for name in ("bastion.db", "bastion.db-wal", "bastion.db-shm"):
                assert mode(var / name) == 0o600, name
        finally:
            stop_process(proc)
            db.close()
    finally:
        os.umask(old)


async def test_recording_directories_are_0700_at_every_level(bastion: BastionApp, sshd) -> None:
    old = os.umask(0o022)  # this test process keeps the loose default: the recorder must not rely on umask
    try:
        admin = await bastion.admin()
        ids = await seed_inventory(bastion, admin, address=sshd.address, port=sshd.port, username=sshd.username,
                                   private_key=sshd.client_key)
        me = (await admin.get("/api/me")).json["user"]["id"]
        assert (await admin.post("/api/grants", {"user_id": me, "host_id": ids["host_id"]})).status == 201
        term = await TerminalClient.open(admin, f"/ws/terminal/{ids['host_id']}")
        try:
            await term.control("session")
            await term.send("echo rec-$((1+1))\r")
            await term.expect("rec-2")
        finally:
            term.close()
        record = await bastion.services.store.get_session(term.session_id)
        cast = Path(record.recording_path)
        day, month, year, root = cast.parent, cast.parent.parent, cast.parent.parent.parent, bastion.config.records_dir
        assert year.parent == root
        for directory in (root, year, month, day):
            assert mode(directory) == 0o700, (directory, oct(mode(directory)))
        assert mode(cast) == 0o600
    finally:
        os.umask(old)


def test_worker_environment_is_an_allow_list() -> None:
    env = worker_environment({"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                              "BASTION_SERVER_SECRET": "s", "AWS_SECRET_ACCESS_KEY": "k", "PYTHONPATH": "/evil",
                              "HTTPS_PROXY": "http://u:p@proxy", "GITHUB_TOKEN": "t", "LD_PRELOAD": "/x.so"})
    assert set(env) == {"PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH"}
    assert env["PYTHONPATH"] != "/evil"


ENV_MODULE = '''    def run(self):
        import json, os
        return {h.name: {"ok": True, "rc": 0, "stdout": json.dumps(dict(os.environ))} for h in self.hosts}'''


async def test_module_sees_a_scrubbed_environment(bastion: BastionApp, hosts_sshd, monkeypatch) -> None:
    """A module printing its own environment, run by a real worker process: no BASTION_* and nothing secret."""
    monkeypatch.setenv("BASTION_SERVER_SECRET", "do-not-leak-0123456789")
    monkeypatch.setenv("BASTION_DATABASE_URL", "mongodb://u:do-not-leak@127.0.0.1/x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak-aws")
    monkeypatch.setenv("LANG", "C.UTF-8")
    env = await setup_modules(bastion, hosts_sshd, modules=())
    write_module(env["folder"], "1030", ENV_MODULE)
    await bastion.services.registry.refresh()
    resp = await env["user"].post("/api/modules/1030/runs", {"host_ids": env["hosts"][:1], "params": {}})
    assert resp.status == 201, resp
    run = await wait_run(env["user"], resp.json["run_id"])
    assert run["status"] == "ok", run
    seen = json.loads(run["results"]["node0"]["stdout"])
    assert not [k for k in seen if k.startswith("BASTION_")], sorted(seen)
    assert "do-not-leak" not in json.dumps(seen)
    assert seen["PATH"] == os.environ["PATH"] and seen["LANG"] == "C.UTF-8"
    if "HOME" in os.environ:
        assert seen["HOME"] == os.environ["HOME"]


@pytest.fixture(scope="module")
def hosts_sshd(tmp_path_factory: pytest.TempPathFactory):
    from sshd import make_sshd
    server = make_sshd(tmp_path_factory.mktemp("hosts"), addresses=["127.0.0.2"]).start()
    yield server
    server.stop()
