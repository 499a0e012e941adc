"""The contract of drop-in task modules (`modules/Mid_<id>.py`), like a plugin hook spec.

A module file defines::

    import bastion

    class Modulehandle(bastion.Modulehandle):
        name = "System version"                 # required, ≤ 80 characters
        description = "Shows /etc/os-release"   # shown in the module list
        platform = "ssh"                        # "ssh" (asyncssh fan-out), "ansible" (ansible-runner) or
                                                # "salt" (salt-ssh); a module uses only its platform's helper
        category = "System"                     # groups modules in the UI
        timeout = 60                            # seconds; the run is killed after this
        params = [                              # declarative parameters, validated before any run
            {"name": "sys_param_1", "label": "Service", "type": "str",   # str | int | choice | secret
             "required": True, "pattern": "[a-z0-9@._-]{1,64}", "help": "systemd unit name"},
        ]

        async def run(self):                    # sync or async; returns {host name: result}
            return await self.ssh(["systemctl", "status", self.params["sys_param_1"]])

All class attributes above must be literals: the web process reads them by parsing the file and never
executes it. `run()` executes only inside a worker process that the bastion can kill. Parameter values
arrive validated in `self.params` and must reach hosts as separate arguments (`self.ssh([...])` quotes
each one), never spliced into a shell string. `self.hosts` lists the targets (name, address, port, user).

A result per host is a dict ``{"ok": bool, "rc": int | None, "stdout": str, "stderr": str,
"elapsed": float}``; the helpers return exactly that, and anything else a module returns is normalized.
"""
from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class HostTarget:
    """One host a run targets (the secret never leaves the worker process)."""

    id: str
    name: str
    address: str
    port: int
    username: str
    kind: str = field(repr=False, default="password")
    secret: str = field(repr=False, default="")
    host_key: str = ""


# Remote commands run under a small POSIX sh wrapper so that a timeout or a cancel reaches them on the target.
# Without a PTY, sshd does not signal a command when its channel or connection closes: `sleep 300` would live on.
# The wrapper keeps the channel's stdin (fd 3) open in a watcher; that stdin ends only when the bastion closes the
# channel or the connection (per-host timeout, module timeout, killed worker). The watcher then signals the whole
# process group of the session (sshd makes every session its own group): TERM, then KILL two seconds later.
# The command itself reads /dev/null, and its stdout, stderr and exit status pass through unchanged; on a normal
# exit the watcher is stopped (its `cat` ends when the channel closes). No PTY, so stderr stays separate.
REMOTE_WRAPPER = (
    'exec 3<&0; "$@" </dev/null 3<&- & cmd=$!; '
    '(trap "" TERM; cat <&3 >/dev/null 2>&1; kill -TERM 0; sleep 2; kill -KILL 0) >/dev/null 2>&1 & watch=$!; '
    'exec 3<&-; wait "$cmd"; rc=$?; kill -KILL "$watch" 2>/dev/null; exit "$rc"'
)


def remote_command(command_args: list[str]) -> str:
    """The shell line sent to sshd: the arguments, each quoted, under the wrapper that ends them with the channel."""
    return shlex.join(["sh", "-c", REMOTE_WRAPPER, "bastion-run", *command_args])


def result(ok: bool, rc: int | None = None, stdout: str = "", stderr: str = "", elapsed: float = 0.0) -> dict[str, Any]:
    """A normalized per-host result."""
    return {"ok": bool(ok), "rc": rc, "stdout": stdout, "stderr": stderr, "elapsed": round(elapsed, 3)}


class PlatformMismatch(RuntimeError):
    """A module called the helper of a platform other than the one it declares."""


class Modulehandle:
    """Base class of every task module; see the module docstring for the contract."""

    name = ""
    description = ""
    platform = "ssh"
    category = ""
    timeout = 60
    params: list[dict[str, Any]] = []

    def __init__(self, hosts: list[HostTarget], params: dict[str, Any], *, emit: Callable[[dict[str, Any]], None] | None = None,
                 concurrency: int = 50, host_timeout: float = 30.0) -> None:
        self.hosts = hosts
        self.params = params
        self._emit = emit or (lambda message: None)
        self._concurrency = concurrency
        self._host_timeout = host_timeout

    def run(self) -> Any:  # pragma: no cover - every module overrides it
        raise NotImplementedError("a module must define run()")

    def _require_platform(self, platform: str, helper: str) -> None:
        """A module written for one platform is refused, before it reaches any host, on another's helper."""
        if self.platform != platform:
            raise PlatformMismatch(f"this module is written for the {self.platform} platform and cannot use "
                                   f"self.{helper}() of the {platform} platform (declare platform = \"{platform}\")")

    def report(self, host: str, outcome: dict[str, Any]) -> None:
        """Stream one host's result to the run page as soon as it is known."""
        self._emit({"type": "host", "host": host, "result": outcome})

    # ---- ssh platform -----------------------------------------------------------------------------
    async def ssh(self, command_args: list[str], *, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        """Run one command (a list of arguments, each quoted) on every host in parallel."""
        from .ssh import BastionError, Target, connect
        self._require_platform("ssh", "ssh")
        if not isinstance(command_args, list) or not command_args or not all(isinstance(a, str) for a in command_args):
            raise TypeError("command_args must be a non-empty list of strings")
        command = remote_command(command_args)
        limit = asyncio.Semaphore(self._concurrency)
        per_host = timeout or self._host_timeout

        async def one(host: HostTarget) -> tuple[str, dict[str, Any]]:
            async with limit:
                started = time.monotonic()
                target = Target(host.name, host.address, host.port, host.username, host.kind, host.secret, host.host_key)
                try:
                    connected = await connect(target, timeout=min(per_host, 15.0))
                    if connected.newly_seen and connected.offered_key:
                        self._emit({"type": "key", "host_id": host.id, "key": connected.offered_key})
                    async with connected.conn:
                        done = await asyncio.wait_for(connected.conn.run(command, check=False), per_host)
                    outcome = result(done.exit_status == 0, done.exit_status, str(done.stdout or ""),
                                     str(done.stderr or ""), time.monotonic() - started)
                except BastionError as exc:
                    outcome = result(False, None, "", exc.message, time.monotonic() - started)
                except (asyncio.TimeoutError, TimeoutError):
                    outcome = result(False, None, "", f"timed out after {per_host:g} s", time.monotonic() - started)
                except Exception as exc:  # one host's failure never stops the others
                    outcome = result(False, None, "", f"{type(exc).__name__}: {exc}", time.monotonic() - started)
                self.report(host.name, outcome)
                return host.name, outcome

        return dict(await asyncio.gather(*(one(h) for h in self.hosts)))

    # ---- ansible platform -------------------------------------------------------------------------
    def ansible(self, module: str, args: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Run an Ansible module ad hoc on every host with ansible-runner.

        Inventory, credentials and a known_hosts file of the pinned keys go into a private 0700 directory that
        is removed afterwards. Argument values are passed as `!unsafe` extra vars, so nothing in them is
        templated on the bastion.
        """
        self._require_platform("ansible", "ansible")
        try:
            import ansible_runner  # imported here: only ansible modules need it, and `make run` does not install it
        except ImportError:
            raise RuntimeError("the ansible platform needs ansible-runner on the bastion: pip install -e '.[ansible]'") from None
        if not isinstance(module, str) or not module.replace(".", "").replace("_", "").isalnum():
            raise ValueError("module must be an Ansible module name")
        bindir = os.path.dirname(sys.executable)  # the `ansible` command installed beside this Python
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        private = tempfile.mkdtemp(prefix="bastion-ansible-")
        os.chmod(private, 0o700)
        try:
            return self._ansible_in(private, ansible_runner, module, args)
        finally:
            shutil.rmtree(private, ignore_errors=True)

    def _ansible_in(self, private: str, ansible_runner: Any, module: str, args: dict[str, Any]) -> dict[str, dict[str, Any]]:
        inventory: dict[str, Any] = {}
        known = []
        for host in self.hosts:
            hv: dict[str, Any] = {"ansible_host": host.address, "ansible_port": host.port, "ansible_user": host.username,
                                  "ansible_python_interpreter": "/usr/bin/python3"}
            if host.kind == "private_key":
                keyfile = os.path.join(private, f"key-{host.id}")
                fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(host.secret if host.secret.endswith("\n") else host.secret + "\n")
                hv["ansible_ssh_private_key_file"] = keyfile
            else:
                hv["ansible_password"] = {"__ansible_unsafe": host.secret}
            if host.host_key:
                hostpat = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
                known.append(f"{hostpat} {host.host_key}")
            inventory[host.name] = hv
        known_file = os.path.join(private, "known_hosts")
        with open(known_file, "w") as fh:
            fh.write("\n".join(known) + "\n")
        extravars = {f"bastion_arg_{k}": v for k, v in args.items()}
        module_args = json.dumps({k: "{{ bastion_arg_%s }}" % k for k in args})
        env_dir = os.path.join(private, "env")
        os.makedirs(env_dir, mode=0o700)
        # `!unsafe` values are never templated: a parameter holding "{{ lookup('pipe','id') }}" stays literal.
        with open(os.path.join(env_dir, "extravars"), "w") as fh:
            for key, value in extravars.items():
                fh.write(f"{key}: !unsafe {json.dumps(value)}\n")
        os.environ.setdefault("ANSIBLE_LOCAL_TEMP", os.path.join(private, "tmp"))
        envvars = {"ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PIPELINING": "True",
                   "ANSIBLE_SSH_ARGS": f"-o UserKnownHostsFile={known_file} -o StrictHostKeyChecking=yes "
                                       "-o ControlMaster=no -o PreferredAuthentications=publickey,password",
                   "ANSIBLE_LOCAL_TEMP": os.path.join(private, "tmp"), "ANSIBLE_NOCOLOR": "True"}
        with open(os.path.join(env_dir, "envvars"), "w") as fh:
            json.dump(envvars, fh)
        outcomes: dict[str, dict[str, Any]] = {}
        started = time.monotonic()

        def on_event(event: dict[str, Any]) -> bool:
            kind = event.get("event", "")
            data = event.get("event_data", {})
            host = data.get("host")
            if host and kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
                res = data.get("res", {}) or {}
                outcome = result(kind == "runner_on_ok" and not res.get("failed"), res.get("rc"),
                                 str(res.get("stdout", "") or res.get("msg", "") if kind == "runner_on_ok" else res.get("stdout", "")),
                                 str(res.get("stderr", "") or (res.get("msg", "") if kind != "runner_on_ok" else "")),
                                 time.monotonic() - started)
                outcomes[host] = outcome
                self.report(host, outcome)
            return True

        ansible_runner.run(private_data_dir=private, host_pattern="all", module=module, module_args=module_args,
                           inventory={"all": {"hosts": inventory}}, quiet=True, event_handler=on_event,
                           cancel_callback=lambda: False, forks=min(50, max(1, len(self.hosts))),
                           envvars=envvars, json_mode=False)
        return outcomes

    # ---- salt platform ----------------------------------------------------------------------------
    def salt(self, function: str, args: list[Any] | dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Run a Salt execution function on every host through salt-ssh (see bastion/salt_platform.py).

        `args` is a list of positional arguments or a dict of keyword arguments; values pass as data, never as
        templates. A `cmd.run_all`-shaped return keeps its exit code and streams; other returns become the host's
        output as JSON.
        """
        self._require_platform("salt", "salt")
        from .salt_platform import run_salt
        return run_salt(self.hosts, function, args, report=self.report, concurrency=self._concurrency,
                        host_timeout=self._host_timeout)
