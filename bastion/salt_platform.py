"""The `salt` platform: Salt execution functions on hosts through `salt-ssh` (agentless), inside a module worker.

Everything salt-ssh reads for a run (master config, roster, private keys, known_hosts, two small ssh/scp wrappers)
goes into a private 0700 directory that is removed afterwards; only salt's "thin" bundle (Salt's own code, no
secrets) is cached between runs, in a 0700 directory of the worker's user.

- Host keys: salt-ssh turns strict checking off whenever a password is used, and its options come after any
  we could add. The wrappers put `StrictHostKeyChecking=yes` and our known_hosts (the pinned keys) first on ssh's
  command line, where ssh takes the first value of each option.
- Parameters are data, never templates: the roster is marked `#!yaml` (salt renders rosters through Jinja
  otherwise) and every argument reaches salt-call as a YAML double-quoted scalar in which every character that
  YAML or salt's argument parser could read specially (`#`, `=`, quotes, backslashes, anything non-ASCII or
  non-printable) is an escape, so a value such as `{{ x }}`, `a=b` or `1e3` arrives as the same string.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .module_api import HostTarget

FUNCTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
KWARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SAFE = re.compile(r"[A-Za-z0-9 ,.:/_@%+-]")
# the target's system Python; this machine's login PATH starts with pyenv shims, which salt's shim cannot run
REMOTE_PATH = "/usr/local/bin:/usr/bin:/bin"


def yaml_scalar(value: Any) -> str:
    """One argument as salt-call will read it back unchanged (see the module docstring)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("salt argument mappings need string keys")
        return "{" + ", ".join(f"{yaml_scalar(k)}: {yaml_scalar(v)}" for k, v in value.items()) + "}"
    if not isinstance(value, str):
        raise TypeError("salt arguments must be strings, numbers, booleans, lists or dicts")
    out = []
    for ch in value:
        code = ord(ch)
        if SAFE.match(ch):
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def salt_argv(args: list[Any] | dict[str, Any] | None) -> list[str]:
    """Positional arguments (a list) or keyword arguments (a dict) as salt-ssh command-line words."""
    if args is None:
        return []
    if isinstance(args, dict):
        words = []
        for key, value in args.items():
            if not isinstance(key, str) or not KWARG.match(key):
                raise ValueError("salt keyword argument names must be identifiers")
            words.append(f"{key}={yaml_scalar(value)}")
        return words
    if isinstance(args, (list, tuple)):
        # a leading quote keeps salt from reading "name=value" as a keyword argument
        return [yaml_scalar(v) for v in args]
    raise TypeError("args must be a list (positional) or a dict (keyword arguments)")


def normalize_return(ret: Any, elapsed: float) -> dict[str, Any]:
    """A salt-ssh per-host return as a Bastion result: `cmd.run_all`-shaped returns and salt-ssh's own errors
    keep their exit code and streams; any other return value is the host's output, as JSON."""
    from .module_api import result
    if isinstance(ret, dict) and "retcode" in ret and ("stdout" in ret or "stderr" in ret):
        rc = ret.get("retcode")
        rc = rc if isinstance(rc, int) and not isinstance(rc, bool) else None
        stderr = str(ret.get("stderr") or "")
        if ret.get("_error") and not stderr:
            stderr = str(ret["_error"])
        return result(rc == 0 and not ret.get("_error"), rc, str(ret.get("stdout") or ""), stderr, elapsed)
    text = ret if isinstance(ret, str) else json.dumps(ret, indent=1, sort_keys=True, default=str)
    return result(True, 0, text, "", elapsed)


def cache_root() -> str:
    """A 0700 directory of this user for salt's thin bundle; a fresh one if the usual place is not safely ours."""
    base = os.path.join(os.environ.get("HOME") or tempfile.gettempdir(), ".cache", "bastion-salt")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.lstat(base)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077:
            return base
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="bastion-salt-cache-")


def _write_private(path: str, text: str, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def run_salt(hosts: list["HostTarget"], function: str, args: list[Any] | dict[str, Any] | None, *,
             report: Callable[[str, dict[str, Any]], None], concurrency: int, host_timeout: float) -> dict[str, dict[str, Any]]:
    """Run one Salt function on every host with salt-ssh; results per host name, each reported as it arrives."""
    if not isinstance(function, str) or not FUNCTION.match(function):
        raise ValueError("function must be a Salt function name such as cmd.run_all or test.ping")
    argv = salt_argv(args)
    bindir = os.path.dirname(sys.executable)
    salt_ssh = os.path.join(bindir, "salt-ssh")
    if not os.path.exists(salt_ssh):
        raise RuntimeError("the salt platform needs Salt on the bastion: pip install -e '.[salt]'")
    private = tempfile.mkdtemp(prefix="bastion-salt-")
    os.chmod(private, 0o700)
    try:
        return _run_in(private, salt_ssh, hosts, function, argv, report, concurrency, host_timeout)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _run_in(private: str, salt_ssh: str, hosts: list["HostTarget"], function: str, argv: list[str],
            report: Callable[[str, dict[str, Any]], None], concurrency: int, host_timeout: float) -> dict[str, dict[str, Any]]:
    from .module_api import result
    known_hosts = os.path.join(private, "known_hosts")
    roster = ["#!yaml"]  # never through Jinja: a password or address is data
    by_key: dict[str, str] = {}
    known = []
    for index, host in enumerate(hosts):
        key = f"h{index}"  # roster ids are ours; host names never reach salt's target matching
        by_key[key] = host.name
        entry: dict[str, Any] = {"host": host.address, "port": host.port, "user": host.username,
                                 "set_path": REMOTE_PATH, "timeout": max(1, int(min(host_timeout, 60))),
                                 # salt-call logs to /var/log/salt/minion by default, which a plain account may not write
                                 "minion_opts": {"log_file": "/dev/null"}}
        if host.kind == "private_key":
            keyfile = os.path.join(private, f"key-{index}")
            _write_private(keyfile, host.secret if host.secret.endswith("\n") else host.secret + "\n")
            entry["priv"] = keyfile
        else:
            entry["passwd"] = host.secret
        roster.append(f"{json.dumps(key)}: {json.dumps(entry)}")
        if host.host_key:
            known.append(f"{host.address if host.port == 22 else f'[{host.address}]:{host.port}'} {host.host_key}")
    _write_private(os.path.join(private, "roster"), "\n".join(roster) + "\n")
    _write_private(known_hosts, "\n".join(known) + "\n")
    cache = cache_root()
    master = {"root_dir": cache, "cachedir": "cache", "pki_dir": "pki", "sock_dir": "sock", "log_file": "master.log",
              "ssh_log_file": "ssh.log", "known_hosts_file": known_hosts, "ssh_max_procs": max(1, concurrency)}
    _write_private(os.path.join(private, "master"), json.dumps(master) + "\n")
    forced = (f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={shlex.quote(known_hosts)} "
              "-o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no")
    for tool in ("ssh", "scp"):
        real = shutil.which(tool)
        if real is None:
            raise RuntimeError(f"the salt platform needs OpenSSH's {tool} on the bastion")
        _write_private(os.path.join(private, tool), f"#!/bin/sh\nexec {shlex.quote(real)} {forced} \"$@\"\n", 0o700)
    env = {**os.environ, "PATH": private + os.pathsep + os.environ.get("PATH", os.defpath)}
    cmd = [salt_ssh, "-c", private, "--roster-file", os.path.join(private, "roster"), "--out", "json",
           "--out-indent", "-1", "--no-color", "--log-level", "quiet", "--max-procs", str(max(1, concurrency)),
           "*", function, *argv]
    outcomes: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=private, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            returns = json.loads(line)
        except ValueError:
            continue
        for key, ret in returns.items() if isinstance(returns, dict) else ():
            name = by_key.get(key)
            if name is None:
                continue
            outcome = normalize_return(ret, time.monotonic() - started)
            outcomes[name] = outcome
            report(name, outcome)
    errors = proc.stderr.read()[-4000:]
    proc.wait()
    for name in by_key.values():
        if name not in outcomes:
            outcome = result(False, None, "", "salt-ssh returned nothing for this host" + (f": {errors.strip()}" if errors.strip() else ""),
                             time.monotonic() - started)
            outcomes[name] = outcome
            report(name, outcome)
    return outcomes
