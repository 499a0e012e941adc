"""The `bastion` command as a newcomer and an admin meet it: real `bastion serve` and CLI processes on one data dir."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from client import Client
from conftest import free_port, stop_process, wait_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = 3  # failed logins before a lock (the default 5 only makes the test longer)


def base_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: nothing of the caller's BASTION_* leaks in; the database follows data_dir."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
            "BASTION_SERVER_DATA_DIR": str(tmp_path / "data"),
            "BASTION_TERMINAL_RECORDS_DIR": str(tmp_path / "records"),
            "BASTION_MODULES_DIR": str(tmp_path / "modules"),
            "BASTION_AUTH_LOCKOUT_THRESHOLD": str(THRESHOLD)}


def bastion(env: dict[str, str], *args: str, stdin: str | None = None, cwd: Path | None = None,
            **kw: object) -> subprocess.CompletedProcess[str]:
    """Run the CLI as its own process, without a terminal (new session: no controlling tty either)."""
    return subprocess.run([sys.executable, "-m", "bastion", *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120, start_new_session=True,
                          **({"stdin": subprocess.DEVNULL} if stdin is None else {}), **kw)  # type: ignore[arg-type]


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    """The error of a failed command: exit code 2, exactly one line on stderr, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and "Error:" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bastion: "), out.stderr
    return lines[0]


@dataclass
class Served:
    """A `bastion serve` process and the environment its CLI commands share."""

    env: dict[str, str]
    url: str
    admin_password: str


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    env = base_env(tmp_path)
    init = bastion(env, "init", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    password = re.search(r"created user 'admin' with password: (\S+)", init.stdout)
    assert password, init.stdout
    port = free_port()
    # the variables that are read but are not options must not stop serve
    serve_env = {**env, "BASTION_SERVER_PORT": str(port), "BASTION_LOG_LEVEL": "WARNING",
                 "BASTION_URL": "http://127.0.0.1:1", "BASTION_TOKEN": "unused", "BASTION_TEST_ANYTHING": "1"}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "bastion", "serve"], env=serve_env, cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_ready(port, timeout=60, proc=proc)
        yield Served(env, f"http://127.0.0.1:{port}", password.group(1))
    finally:
        stop_process(proc)
        log.close()


# ---- configuration mistakes: one line, non-zero exit ---------------------------------------------------
@pytest.mark.parametrize("mistake", ["environment", "file"])
def test_serve_refuses_a_misspelled_option(tmp_path: Path, mistake: str) -> None:
    port = free_port()
    env = base_env(tmp_path)
    if mistake == "environment":
        env["BASTION_SERVER_POTR"] = str(port)
    else:
        (tmp_path / "bastion.conf").write_text(f"[server]\npotr = {port}\n")
        env["BASTION_CONFIG"] = str(tmp_path / "bastion.conf")
    out = bastion(env, "serve", cwd=tmp_path)
    line = one_line_error(out)
    if mistake == "environment":
        assert line == ("bastion: environment variable BASTION_SERVER_POTR: unknown option "
                        "(did you mean BASTION_SERVER_PORT?)")
    else:
        assert line == "bastion: config [server] potr: unknown option (see bastion.conf for the list)"
    assert not (tmp_path / "data").exists()  # refused before anything was created


@pytest.mark.parametrize("command", [["user", "add", "bob"], ["user", "passwd", "admin"]])
def test_password_without_a_terminal(tmp_path: Path, command: list[str]) -> None:
    env = base_env(tmp_path)
    assert bastion(env, "init", cwd=tmp_path).returncode == 0
    line = one_line_error(bastion(env, *command, cwd=tmp_path))  # stdin is /dev/null, no controlling terminal
    assert "--password-stdin" in line and "EOF" not in line
    assert "bob" not in bastion(env, "user", "list", cwd=tmp_path).stdout
    # the documented way works from a script
    out = bastion(env, *command, "--password-stdin", stdin="a-long-password-1\n", cwd=tmp_path)
    assert out.returncode == 0, out.stderr


# ---- an admin locked out recovers from the CLI ---------------------------------------------------------
async def failed_logins(url: str, username: str, times: int) -> None:
    for _ in range(times):
        r = await Client(url).post("/api/login", {"username": username, "password": "wrong-password"})
        assert r.status in (401, 429), r


async def login_status(url: str, username: str, password: str) -> tuple[int, str]:
    r = await Client(url).post("/api/login", {"username": username, "password": password})
    return r.status, (r.json or {}).get("error", "")


async def test_admin_locked_out_recovers_with_the_cli(served: Served) -> None:
    env, url = served.env, served.url
    assert bastion(env, "locks").stdout.strip() == "no account or address is locked"
    await failed_logins(url, "admin", THRESHOLD)
    status, error = await login_status(url, "admin", served.admin_password)
    assert status == 429 and "locked" in error

    listing = bastion(env, "locks")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line.split()[1] for line in listing.stdout.splitlines()[1:]}
    assert rows == {"user:admin": str(THRESHOLD), "ip:127.0.0.1": str(THRESHOLD)}

    out = bastion(env, "user", "unlock", "admin")
    assert out.returncode == 0 and out.stdout.strip() == "user admin unlocked", out
    status, error = await login_status(url, "admin", served.admin_password)
    assert status == 429 and "address is locked" in error  # the address lock is separate
    assert [line.split()[0] for line in bastion(env, "locks").stdout.splitlines()[1:]] == ["ip:127.0.0.1"]

    out = bastion(env, "locks", "clear", "127.0.0.1")
    assert out.returncode == 0 and out.stdout.strip() == "lock on ip:127.0.0.1 cleared", out
    admin = Client(url)
    r = await admin.post("/api/login", {"username": "admin", "password": served.admin_password})
    assert r.status == 200, r
    assert bastion(env, "locks").stdout.strip() == "no account or address is locked"

    events = await admin.get("/api/events", params={"action": "lock.cleared"})
    assert events.status == 200, events
    assert sorted((e["actor"], e["target"]) for e in events.json["items"]) == [("cli", "ip:127.0.0.1"), ("cli", "user:admin")]


async def test_lock_commands_refuse_nonsense(served: Served) -> None:
    env = served.env
    line = one_line_error(bastion(env, "locks", "clear", "not-an-address"))
    assert "'not-an-address' is not an IP address" in line
    line = one_line_error(bastion(env, "locks", "clear", "192.0.2.1"))
    assert line == "bastion: ip:192.0.2.1 is not locked (run `bastion locks` to list locks)"
    out = bastion(env, "user", "unlock", "nobody")  # nothing to do is not an error for a script
    assert out.returncode == 0 and out.stdout.strip() == "user nobody is not locked"
    # the lock key of any name tried at login can be cleared, even one that is not a user
    await failed_logins(served.url, "ghost", THRESHOLD)
    assert "user:ghost" in bastion(env, "locks").stdout
    assert bastion(env, "user", "unlock", "ghost").returncode == 0
    assert "user:ghost" not in bastion(env, "locks").stdout
    # -c given before the action is kept (argparse must not reset it in the nested parser)
    conf = Path(env["BASTION_SERVER_DATA_DIR"]).parent / "empty.conf"
    conf.write_text("[auth]\n")
    out = bastion(env, "locks", "-c", str(conf), "clear", "127.0.0.1")
    assert out.returncode == 0 and "cleared" in out.stdout, out


# ---- what the README tells a newcomer ----------------------------------------------------------------
def readme_block(containing: str) -> str:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = [b for b in blocks if containing in b]
    assert len(found) == 1, containing
    return found[0]


async def test_readme_script_login_with_curl(served: Served, tmp_path: Path) -> None:
    """The README's curl recipe, run as written: GET /login for the _xsrf cookie, log in, mint a token."""
    script = readme_block("/api/login")
    assert "BASTION=http://127.0.0.1:8022\n" in script and '"password": "PASSWORD"' in script
    script = script.replace("BASTION=http://127.0.0.1:8022", f"BASTION={served.url}")
    script = script.replace('"password": "PASSWORD"', f'"password": "{served.admin_password}"')
    work = tmp_path / "curl"
    work.mkdir()
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token = re.search(r'"token": "([^"]+)"', out.stdout)
    assert '"username": "admin"' in out.stdout and token, out.stdout
    script_client = Client(served.url)
    script_client.token = token.group(1)
    me = await script_client.get("/api/me")
    assert me.status == 200 and me.json["user"]["username"] == "admin"
    # and without the GET /login step the login is refused
    out = subprocess.run(["curl", "-s", "-H", "Content-Type: application/json", "-d",
                          f'{{"username": "admin", "password": "{served.admin_password}"}}', f"{served.url}/api/login"],
                         capture_output=True, text=True, timeout=60)
    assert "XSRF" in out.stdout and '"user"' not in out.stdout


async def test_home_tells_an_admin_without_grants_how_to_reach_hosts(served: Served) -> None:
    admin = Client(served.url)
    assert (await admin.post("/api/login", {"username": "admin", "password": served.admin_password})).status == 200
    page = (await admin.get("/")).body.decode()
    assert 'id="admin-grant-hint"' in page and 'href="/admin/grants"' in page
    assert "Ask an administrator" not in page
    out = bastion(served.env, "user", "add", "plain", "--password-stdin", stdin="plain-password-1\n")
    assert out.returncode == 0, out.stderr
    user = Client(served.url)
    assert (await user.post("/api/login", {"username": "plain", "password": "plain-password-1"})).status == 200
    page = (await user.get("/")).body.decode()
    assert "Ask an administrator" in page and "admin-grant-hint" not in page


def setup_requirements() -> tuple[list[str], dict[str, list[str]]]:
    """install_requires and extras_require as setup.py declares them (read, not executed)."""
    call = next(n for n in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
                if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires", "extras_require")}
    return kw["install_requires"], kw["extras_require"]


def test_quick_start_is_two_commands_and_run_installs_only_serving() -> None:
    assert "## Quick start\n\n```sh\nmake run\nmake test\n```\n" in (ROOT / "README.md").read_text()
    serving, extras = setup_requirements()
    test_only = ("pytest", "playwright", "ansible", "nx-27017", "websockets")
    assert not [r for r in serving if r.startswith(test_only)]
    assert {r.split("==")[0] for r in extras["test"]} >= {"pytest", "playwright", "nx-27017", "ansible-core", "ansible-runner"}
    # what each target would run from scratch (-B: as if nothing were installed yet)
    run_plan = subprocess.run(["make", "-n", "-B", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    test_plan = subprocess.run(["make", "-n", "-B", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "pip install --quiet -e .\n" in run_plan and "[test]" not in run_plan and "bin/bastion serve" in run_plan
    assert "pip install --quiet -e '.[test]'" in test_plan and "-m pytest" in test_plan


def test_port_in_use_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    """A taken port stops `serve` with one line and exit code 2, before a database or an admin is created."""
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**base_env(tmp_path), "BASTION_SERVER_PORT": str(taken.getsockname()[1])}
        out = bastion(env, "serve")
    line = one_line_error(out)
    assert "cannot listen on 127.0.0.1:" in line and "in use" in line.lower()
    assert "password" not in out.stdout + out.stderr  # no first-start admin was made
    assert not (tmp_path / "data" / "bastion.db").exists()
