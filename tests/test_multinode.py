"""Two real Bastion processes on loopback sharing the MongoDB store (nx-27017) and a real redis-server hub."""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import pytest

from bastion import protocol
from tornado.httpclient import HTTPClientError

from client import Client, TerminalClient
from gateway_client import GatewayClient, PtySSH, keygen
from test_fleet import marker_duration, sleepers, wait_final
from test_foureyes import held_frame, wait_notice
from test_modules import write_module
from conftest import ADMIN_PASSWORD, mongo_db_url
from procs import bastion_cli, free_port, init_bastion, serve_bastion, stop_process, wait_port
from scenario import cast_output, grant, open_terminal, read_cast, seed_sshd, user_id, wait_ended_api
from waiting import holds_for, wait_until

SECRET = "multi-node-shared-secret-0123456789"


@dataclass
class Node:
    name: str
    port: int
    env: dict
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = serve_bastion(self.env, Path(self.env["BASTION_SERVER_DATA_DIR"]) / "serve.log")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class Redis:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.root = root
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.root)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@dataclass
class Cluster:
    a: Node
    b: Node
    redis: Redis
    records: Path


@pytest.fixture
async def cluster(tmp_path: Path, mongo_base_url: str) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path, mongo_base_url) as cl:
        yield cl


@contextlib.asynccontextmanager
async def running_cluster(tmp_path: Path, mongo_base_url: str, **env_a: str) -> AsyncIterator[Cluster]:
    """Nodes A and B on one MongoDB database and one redis-server; `env_a`: more settings for node A only."""
    redis = Redis(tmp_path)
    redis.start()
    db = mongo_db_url(mongo_base_url)
    records = tmp_path / "shared-records"
    nodes = []
    for name in ("node-a", "node-b"):
        data = tmp_path / name
        data.mkdir()
        env = {**os.environ, "BASTION_SERVER_PORT": str(free_port()), "BASTION_SERVER_DATA_DIR": str(data),
               "BASTION_SERVER_NODE_ID": name, "BASTION_SERVER_SECRET": SECRET, "BASTION_DATABASE_URL": db,
               "BASTION_HUB_URL": redis.url, "BASTION_HUB_HEARTBEAT_INTERVAL": "0.5", "BASTION_HUB_NODE_TIMEOUT": "3",
               "BASTION_TERMINAL_RECORDS_DIR": str(records), "BASTION_MODULES_DIR": str(tmp_path / "modules"),
               "BASTION_TERMINAL_CONNECT_TIMEOUT": "5"}
        if name == "node-a":
            env.update(env_a)
        nodes.append(Node(name, int(env["BASTION_SERVER_PORT"]), env))
    init_bastion(nodes[0].env, ADMIN_PASSWORD)
    bastion_cli(nodes[0].env, "user", "add", "audrey", "--role", "auditor", "--password-stdin", stdin="auditor-password-1\n")
    bastion_cli(nodes[0].env, "user", "add", "alice", "--password-stdin", stdin="user-password-1\n")
    for node in nodes:
        node.start()
    try:
        yield Cluster(nodes[0], nodes[1], redis, records)
    finally:
        for node in nodes:
            node.stop()
        redis.stop()


async def login(url: str, username: str, password: str) -> Client:
    c = Client(url)
    await c.login(username, password)
    return c


async def user_session(cl: Cluster, sshd) -> tuple[Client, Client, TerminalClient, str]:
    admin = await login(cl.a.url, "admin", ADMIN_PASSWORD)
    host = (await seed_sshd(admin, sshd, "web1"))["host_id"]
    await grant(admin, await user_id(admin, "alice"), host_id=host)
    user = await login(cl.a.url, "alice", "user-password-1")
    term = await open_terminal(user, host, cols=100, rows=30)
    await term.send("echo on''-node-a\r")
    await term.expect("on-node-a")
    return admin, user, term, host


async def test_watch_and_kick_across_nodes(cluster: Cluster, sshd) -> None:
    admin, user, term, host = await user_session(cluster, sshd)
    auditor_b = await login(cluster.b.url, "audrey", "auditor-password-1")
    listing = (await auditor_b.get("/api/sessions", params={"live": "1"})).json["items"]
    assert [(s["id"], s["node"], s["local"]) for s in listing] == [(term.session_id, "node-a", False)]
    mon = await TerminalClient.open(auditor_b, f"/ws/monitor/{term.session_id}")
    await mon.expect("on-node-a")  # late join: the screen from before
    size = await mon.control("resize")
    assert (size["cols"], size["rows"]) == (100, 30)  # sent after the snapshot: the watcher's route is live
    mark_user, mark_mon = len(term.output), len(mon.output)
    await term.send("for i in $(seq 1 200); do echo cross-$i-$RANDOM; done; echo x''done\r")
    await term.expect("xdone", start=mark_user)
    await mon.expect("xdone", start=mark_mon)
    await wait_until(lambda: len(mon.output) - mark_mon >= len(term.output) - mark_user, what="the watcher catching up")
    assert bytes(mon.output[mark_mon:]) == bytes(term.output[mark_user:])
    await mon.send("touch /tmp/should-not-exist-multinode\r")
    notice = await mon.control("notice")
    assert "read-only" in notice["message"]
    resp = await auditor_b.post(f"/api/sessions/{term.session_id}/kill", {"reason": "ended from node b"})
    assert resp.status == 200, resp
    # how fast is measured by tests/perf/bench_multinode.py (cross-node kick p50/p99), not gated here
    closed = await term.control("closed")
    await term.wait_closed()
    assert closed["code"] == "kicked" and "ended from node b" in closed["reason"] and closed["by"] == "audrey"
    assert (await mon.control("closed"))["code"] == "kicked"
    async def stored_end() -> tuple | None:  # the end reaches the store through node A's journal, after the frames
        session = (await admin.get(f"/api/sessions/{term.session_id}")).json
        return None if session["live"] else (session["end_reason"], session["ended_by"], session["live"])
    assert await wait_until(stored_end, 10, what="the kicked session stored as ended") == ("kicked", "audrey", False)
    again = await auditor_b.post(f"/api/sessions/{term.session_id}/kill", {"reason": "x"})
    assert again.status == 409


async def test_replayed_envelope_and_lockout_are_shared(cluster: Cluster, sshd, tmp_path: Path) -> None:
    modules = Path(cluster.a.env["BASTION_MODULES_DIR"])
    modules.mkdir(exist_ok=True)
    shutil.copy(Path(__file__).resolve().parent.parent / "modules" / "Mid_1003.py", modules)
    admin, user, term, host = await user_session(cluster, sshd)
    term.close()
    token = (await user.post("/api/tokens", {"name": "cli"})).json["token"]
    envelope = protocol.seal(protocol.token_envelope_key(token), protocol.token_key_id(token),
                             protocol.new_payload("1003", [host], {}, "alice"))
    a, b = Client(cluster.a.url), Client(cluster.b.url)
    a.token = b.token = token
    async def listed(client: Client) -> bool:
        return any(m["id"] == "1003" for m in (await client.get("/api/modules")).json["items"])
    await wait_until(lambda: listed(a), what="node A's registry picking the module up")
    await wait_until(lambda: listed(b), what="node B's registry picking the module up")
    first = await a.post("/api/commands", {"envelope": envelope})
    assert first.status == 201, first
    replay = await b.post("/api/commands", {"envelope": envelope})
    assert replay.status == 409 and "replayed envelope" in replay.json["error"]
    for _ in range(5):
        await Client(cluster.a.url).post("/api/login", {"username": "alice", "password": "wrong-wrong-wrong"})
    locked = await Client(cluster.b.url).post("/api/login", {"username": "alice", "password": "user-password-1"})
    assert locked.status == 429


async def wait_for_control(client: TerminalClient, predicate, timeout: float) -> dict:
    """The first control frame (already received or arriving within `timeout`) that satisfies predicate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for frame in client.controls:
            if predicate(frame):
                return frame
        await asyncio.sleep(0.05)
    raise AssertionError(f"no matching control frame within {timeout}s; controls={client.controls}")


@pytest.mark.parametrize("outage", [0.0, 6.0], ids=["restart", "long-outage"])
async def test_redis_restart_mid_session(cluster: Cluster, sshd, outage: float) -> None:
    admin, user, term, host = await user_session(cluster, sshd)
    auditor_b = await login(cluster.b.url, "audrey", "auditor-password-1")
    mon = await TerminalClient.open(auditor_b, f"/ws/monitor/{term.session_id}")
    await mon.expect("on-node-a")
    cluster.redis.stop()
    await term.send("echo during''-outage\r")
    await term.expect("during-outage")  # the session on A goes on
    lost = await wait_for_control(mon, lambda c: c["type"] == "notice" and "lost" in c["message"], 10)
    assert "reconnecting" in lost["message"]
    # both nodes keep answering HTTP while the hub is down (the listener never blocks the loop)
    for node in (cluster.a, cluster.b):
        page = await Client(node.url).get("/login")
        assert page.status == 200
        health = await Client(node.url).get("/healthz")
        assert health.status == 503 and health.json["checks"]["hub"]["ok"] is False
    await asyncio.sleep(outage)
    mark = len(mon.output)
    cluster.redis.start()
    await wait_for_control(mon, lambda c: c["type"] == "notice" and "reconnected" in c["message"], 20)
    assert not mon.closed.is_set()
    # the watcher's screen is reset and redrawn: what ran during the outage shows up again after the reset
    reset = await mon.expect(b"\x1bc", start=mark, timeout=30)  # generous: both nodes reconnect with backoff
    await mon.expect("during-outage", start=reset, timeout=30)
    mark = len(mon.output)
    await term.send("echo after''-outage\r")
    await mon.expect("after-outage", start=mark)
    await term.send("echo still''-recording\r")
    await term.expect("still-recording")
    term.close()
    for _ in range(100):
        record = (await admin.get(f"/api/sessions/{term.session_id}")).json
        if not record["live"]:
            break
        await asyncio.sleep(0.1)
    cast = await admin.get(f"/api/sessions/{term.session_id}/recording")
    path = cluster.records / "dl.cast"
    path.write_bytes(cast.body)
    _, events = read_cast(path)
    out = cast_output(events)
    assert b"during-outage" in out and b"still-recording" in out
    # and both nodes still stop promptly on SIGTERM
    for node in (cluster.a, cluster.b):
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(15) == 0


async def test_revocation_reaches_every_node(cluster: Cluster, sshd) -> None:
    admin, user, term, host = await user_session(cluster, sshd)
    users = {u["username"]: u["id"] for u in (await admin.get("/api/users")).json["items"]}
    admin_b = await login(cluster.b.url, "admin", ADMIN_PASSWORD)
    # a grant revoked on node B ends the session running on node A
    grant = (await admin_b.get("/api/grants", params={"user_id": users["alice"]})).json["items"][0]
    assert (await admin_b.delete(f"/api/grants/{grant['id']}")).status == 200
    closed = await term.control("closed", timeout=3)  # generous: the promise is "within 2 s"
    assert closed["code"] == "revoked" and "access revoked" in closed["reason"]
    # a user disabled from the CLI (another process, no hub) loses a live session through the periodic re-check
    await admin_b.post("/api/grants", {"user_id": users["alice"], "host_id": host})
    term2 = await TerminalClient.open(user, f"/ws/terminal/{host}")
    await term2.control("session")
    await term2.send("echo sec''ond-ok\r")
    await term2.expect("second-ok")
    done = subprocess.run([sys.executable, "-m", "bastion", "user", "disable", "alice"], env=cluster.b.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    closed = await term2.control("closed", timeout=5)
    assert closed["code"] == "revoked" and "disabled" in closed["reason"]


async def test_node_killed_sessions_interrupted(cluster: Cluster, sshd) -> None:
    admin, user, term, host = await user_session(cluster, sshd)
    # the recording reached the shared disk (a flush happened) before the crash
    await wait_until(lambda: any(b"on-node-a" in p.read_bytes() for p in cluster.records.rglob("*.cast")),
                     what="a flush of the recording")
    cluster.a.proc.send_signal(signal.SIGKILL)
    cluster.a.proc.wait(10)
    auditor_b = await login(cluster.b.url, "audrey", "auditor-password-1")
    record = await wait_ended_api(auditor_b, term.session_id, timeout=20)
    assert record["end_reason"] == "interrupted" and "node-a" in record["reason"]
    events = (await auditor_b.get("/api/events", params={"action": "session.interrupted"})).json
    assert events["total"] == 1 and events["items"][0]["actor"] == "node-b"
    cast = await auditor_b.get(f"/api/sessions/{term.session_id}/recording")
    assert cast.status == 200
    path = cluster.records / "a.cast"
    path.write_bytes(cast.body)
    _, events_ = read_cast(path)
    assert b"on-node-a" in cast_output(events_)
    health = await Client(cluster.b.url).get("/healthz")
    assert health.status == 200 and health.json["checks"]["hub"]["backend"] == "redis"
    metrics = await Client(cluster.b.url).get("/metrics")
    assert b'bastion_live_sessions{node="node-b"} 0' in metrics.body


async def test_healthz_reports_hub_down(cluster: Cluster) -> None:
    ok = await Client(cluster.a.url).get("/healthz")
    assert ok.status == 200 and ok.json["ok"] is True and set(ok.json["checks"]) == {"store", "hub", "recordings"}
    cluster.redis.stop()
    down = await Client(cluster.a.url).get("/healthz")
    assert down.status == 503 and down.json["checks"]["hub"]["ok"] is False
    assert "redis://" in down.json["checks"]["hub"]["error"]
    assert down.json["ok"] is False and down.json["checks"]["store"]["ok"] is True


async def test_remote_watcher_keeps_to_the_byte_budget(cluster: Cluster, sshd) -> None:
    """A flood on node A reaches a watcher on node B within the watcher byte budget, then as a fresh screen."""
    from bastion.sessions.watchers import WATCHER_BURST as MONITOR_BURST, WATCHER_RATE as MONITOR_RATE
    admin, user, term, host = await user_session(cluster, sshd)
    auditor_b = await login(cluster.b.url, "audrey", "auditor-password-1")
    mon = await TerminalClient.open(auditor_b, f"/ws/monitor/{term.session_id}")
    await mon.control("resize")
    await term.send("stty -echo; echo qu''iet\r")
    await term.expect("quiet")
    mark_user, mark_mon = len(term.output), len(mon.output)
    started = time.monotonic()
    await term.send("head -c 30000000 /dev/zero | tr '\\0' 'x' | fold -w 100; echo flood''-done\r")
    await term.expect("flood-done", start=mark_user, timeout=120)
    user_bytes = len(term.output) - mark_user
    assert user_bytes > 30_000_000  # the user got everything
    await mon.expect("flood-done", start=mark_mon, timeout=30)  # the watcher ends on the current screen
    elapsed = time.monotonic() - started
    watched = len(mon.output) - mark_mon
    # The budget: MONITOR_RATE bytes/s after a burst, plus screen snapshots (a few per second, each about a
    # screen). Twice that over the measured time, so a loaded machine cannot fail it; without the budget the
    # watcher would get the whole flood.
    budget = 2 * (MONITOR_RATE * elapsed + MONITOR_BURST) + 64 * 1024 * elapsed
    assert watched < budget, (watched, budget, elapsed)
    assert watched < user_bytes / 2, (watched, user_bytes, elapsed)


async def test_kick_of_a_session_whose_node_is_dead(cluster: Cluster, sshd) -> None:
    """Node A dies; B has not yet declared it dead: a kick from B says the node is not answering."""
    cluster.b.stop()  # B with a long node timeout, so the dead-node reaper cannot end the session first
    cluster.b.env["BASTION_HUB_NODE_TIMEOUT"] = "60"
    cluster.b.start()
    admin, user, term, host = await user_session(cluster, sshd)
    cluster.a.proc.send_signal(signal.SIGKILL)
    cluster.a.proc.wait(10)
    auditor_b = await login(cluster.b.url, "audrey", "auditor-password-1")
    resp = await auditor_b.post(f"/api/sessions/{term.session_id}/kill", {"reason": "node is gone"})
    assert resp.status == 503, resp
    assert resp.json == {"error": "node node-a is not answering; the session may be gone"}
    record = (await auditor_b.get(f"/api/sessions/{term.session_id}")).json
    assert record["live"] is True and record["end_reason"] == ""  # nothing claims it was ended


async def test_session_limit_holds_across_nodes_under_a_burst(cluster: Cluster, sshd) -> None:
    """Opens on both nodes at once share one per-user limit (the default 10), reserved in Redis before the upgrade."""
    admin, user, term, host = await user_session(cluster, sshd)  # one session already open on node A
    user_b = await login(cluster.b.url, "alice", "user-password-1")

    async def attempt(client: Client) -> TerminalClient | int:
        try:
            return await TerminalClient.open(client, f"/ws/terminal/{host}")
        except HTTPClientError as exc:
            return exc.code

    results = await asyncio.gather(*(attempt(user if i % 2 else user_b) for i in range(30)))
    opened = [r for r in results if isinstance(r, TerminalClient)]
    assert len(opened) == 9 and sorted({r for r in results if isinstance(r, int)}) == [409]
    for t in opened:
        await t.control("session")

    async def ten_live() -> bool:
        return (await admin.get("/api/sessions", params={"live": "1", "limit": 100})).json["total"] == 10
    await wait_until(ten_live, 15, what="ten live sessions")  # documents follow the upgrades
    await holds_for(ten_live, 1.0)  # and never more
    for t in opened:
        t.close()
    term.close()


async def test_gateway_session_watched_and_kicked_from_another_node(tmp_path: Path, mongo_base_url: str, sshd) -> None:
    """alice's own OpenSSH client through node A's gateway; the auditor on node B watches the session and ends it."""
    port = free_port()
    async with running_cluster(tmp_path, mongo_base_url, BASTION_GATEWAY_LISTEN=f"127.0.0.1:{port}") as cl:
        wait_port("127.0.0.1", port, proc=cl.a.proc)
        admin = await login(cl.a.url, "admin", ADMIN_PASSWORD)
        host = (await seed_sshd(admin, sshd, "web1"))["host_id"]
        await grant(admin, await user_id(admin, "alice"), host_id=host)
        alice = await login(cl.a.url, "alice", "user-password-1")
        public = keygen(tmp_path / "alice_key")
        assert (await alice.post("/api/me/ssh-keys", {"name": "laptop", "public_key": public})).status == 201
        info = (await alice.get("/api/gateway")).json
        assert info["enabled"] and info["port"] == port
        ssh = GatewayClient.make(tmp_path / "ssh", port, info["public_key"], tmp_path / "alice_key")
        auditor_b = await login(cl.b.url, "audrey", "auditor-password-1")

        async def listed_on_b() -> list | None:
            items = (await auditor_b.get("/api/sessions", params={"live": "1"})).json["items"]
            return items or None
        term = await PtySSH(ssh.ssh_args("alice@web1", tty=True)).start()
        try:
            [listed] = await wait_until(listed_on_b, 15, what="the gateway session listed on node B")
            where = (listed["node"], listed["local"], listed["via"], listed["username"])
            assert where == ("node-a", False, "ssh", "alice"), listed
            await term.prompt()
            term.send("echo before-wa''tch\r")
            await term.expect("before-watch")
            mon = await TerminalClient.open(auditor_b, f"/ws/monitor/{listed['id']}")
            await mon.expect("before-watch")  # late join from the other node: the screen from before
            term.send("echo seen-from-b''-42\r")
            await term.expect("seen-from-b-42")
            await mon.expect("seen-from-b-42")
            resp = await auditor_b.post(f"/api/sessions/{listed['id']}/kill", {"reason": "ended from node b"})
            assert resp.status == 200, resp
            assert await term.wait() != 0  # ssh ends: the session is gone, not just its screen
            await term.expect("ended by audrey: ended from node b")
            assert (await mon.control("closed"))["code"] == "kicked"
        finally:
            await term.close()

        async def stored_end() -> tuple | None:
            session = (await admin.get(f"/api/sessions/{listed['id']}")).json
            return None if session["live"] else (session["end_reason"], session["ended_by"], session["via"])
        ended = await wait_until(stored_end, 10, what="the kicked session stored as ended")
        assert ended == ("kicked", "audrey", "ssh")


async def test_a_run_is_cancelled_through_the_node_that_did_not_start_it(cluster: Cluster, sshd) -> None:
    """A run executing on node A, cancelled through node B: A's worker and the command on the host end (ground
    truth: the host's process table), the run says who, the audit event names the node that executed it."""
    modules = Path(cluster.a.env["BASTION_MODULES_DIR"])
    modules.mkdir(exist_ok=True)
    duration = marker_duration()
    write_module(modules, "1042", f"""    async def run(self):
        return await self.ssh(["sleep", {duration!r}])""", timeout=120, name="Sleeps")
    admin, user, term, host = await user_session(cluster, sshd)
    term.close()
    user_b = await login(cluster.b.url, "alice", "user-password-1")
    for client in (user, user_b):
        async def listed() -> bool:
            return any(m["id"] == "1042" for m in (await client.get("/api/modules")).json["items"])
        await wait_until(listed, what="the registry picking the module up")
    resp = await user.post("/api/modules/1042/runs", {"host_ids": [host], "params": {}})
    assert resp.status == 201, resp
    run_id = resp.json["run_id"]
    await wait_until(lambda: sleepers(duration), 30, what="the module's command running on the host")
    resp = await user_b.post(f"/api/runs/{run_id}/cancel", {})
    assert resp.status == 200, resp
    run = await wait_final(user_b, run_id)
    assert (run["status"], run["cancelled_by"], run["node"]) == ("cancelled", "alice", "node-a"), run
    await wait_until(lambda: not sleepers(duration), 15, what="the command on the host ending")
    again = await user_b.post(f"/api/runs/{run_id}/cancel", {})
    assert again.status == 409 and "already ended" in again.json["error"], again
    events = (await admin.get("/api/events", params={"action": "module.run_cancelled"})).json["items"]
    assert [(e["actor"], e["detail"]["node"]) for e in events] == [("alice", "node-a")], events


async def test_a_cancel_for_a_node_that_does_not_answer_says_so(make_bastion, tmp_path: Path) -> None:
    """A running run recorded for a node nobody hears on the hub (it died before being declared dead): 503 in words,
    nothing audited as cancelled, and the run left as it is."""
    from bastion.store import Run
    redis = Redis(tmp_path)
    redis.start()
    try:
        app = await make_bastion(hub_url=redis.url)
        alice = await app.user("alice")
        uid = (await app.services.store.get_user_by_name("alice")).id
        run = await app.services.store.create_run(Run(module_id="1040", module_name="Hangs", user_id=uid,
                                                      username="alice", status="running", node="node-gone"))
        resp = await alice.post(f"/api/runs/{run.id}/cancel", {})
        assert resp.status == 503, resp
        assert resp.json == {"error": "node node-gone is not answering; the run may have ended with it"}
        assert (await app.services.store.list_events(action="module.run_cancelled")).total == 0
        assert (await app.services.store.get_run(run.id)).status == "running"
        await app.stop()
    finally:
        redis.stop()


async def test_a_command_held_on_node_a_is_decided_by_an_approver_on_node_b(cluster: Cluster, sshd,
                                                                          tmp_path: Path) -> None:
    """A review rule holds alice's command in her session on node A; audrey (an approver) works on node B: her
    watch screen gets the held command, her list shows it with its node, and her answers reach node A. Ground
    truth: the files the commands would leave on the host."""
    admin, user, term, host = await user_session(cluster, sshd)
    rule = await admin.post("/api/command-rules", {"name": "ask-first", "pattern": r"touch\s+\S*held",
                                                   "action": "review"})
    assert rule.status == 201, rule
    auditor_b = await login(cluster.b.url, "audrey", "auditor-password-1")
    alice_b = await login(cluster.b.url, "alice", "user-password-1")
    mon = await TerminalClient.open(auditor_b, f"/ws/monitor/{term.session_id}")
    await mon.control("resize")

    approved = tmp_path / "approved-held"
    await term.send(f"touch {approved}\r")
    frame = await held_frame(mon, str(approved))  # relayed from node A to the watcher on node B
    await wait_notice(term, "waiting for approval")
    listed = (await auditor_b.get("/api/reviews")).json["items"]
    assert [(h["id"], h["node"], h["user"], h["command"]) for h in listed] == \
        [(frame["id"], "node-a", "alice", f"touch {approved}")], listed
    assert not approved.exists()
    assert (await alice_b.post(f"/api/reviews/{frame['id']}", {"decision": "approve"})).status == 403
    ok = await auditor_b.post(f"/api/reviews/{frame['id']}", {"decision": "approve", "comment": "from b"})
    assert ok.status == 200 and (ok.json["status"], ok.json["decided_by"]) == ("approved", "audrey"), ok
    await wait_until(approved.exists, 15, what="the approved command running on the host")
    await wait_notice(term, "approved by audrey")
    await wait_until(lambda: _no_reviews(auditor_b), 10, what="the decided command leaving node B's list")

    denied = tmp_path / "denied-held"
    await term.send(f"touch {denied}\r")
    frame = await held_frame(mon, str(denied))
    no = await auditor_b.post(f"/api/reviews/{frame['id']}", {"decision": "deny", "comment": "not now"})
    assert no.status == 200 and no.json["status"] == "denied", no
    await wait_notice(term, "not run, denied by audrey")
    await term.send("echo still''usable\r")
    await term.expect("stillusable")
    assert not denied.exists()
    again = await auditor_b.post(f"/api/reviews/{frame['id']}", {"decision": "approve"})
    assert again.status == 404 and "no longer waiting" in again.json["error"], again
    term.close()


async def _no_reviews(client: Client) -> bool:
    return (await client.get("/api/reviews")).json["items"] == []


async def test_input_paused_and_resumed_from_another_node(cluster: Cluster, sshd, tmp_path: Path) -> None:
    """The auditor on node B pauses alice's input in her session on node A, then resumes it. Ground truth: the
    host's files (what was typed while paused never ran)."""
    admin, user, term, host = await user_session(cluster, sshd)
    auditor_b = await login(cluster.b.url, "audrey", "auditor-password-1")
    sid = term.session_id
    paused = await auditor_b.post(f"/api/sessions/{sid}/pause", {"reason": "checking from b"})
    assert paused.status == 200, paused
    frame = await term.control("paused")
    assert (frame["by"], frame["reason"]) == ("audrey", "checking from b")
    held = tmp_path / "while-paused"
    await term.send(f"touch {held}\r")
    await wait_notice(term, "input is paused by audrey: checking from b")
    again = await auditor_b.post(f"/api/sessions/{sid}/pause", {"reason": "again"})
    assert again.status == 409 and "already paused by audrey" in again.json["error"], again
    assert (await auditor_b.post(f"/api/sessions/{sid}/resume")).status == 200
    await term.control("resumed")
    after = tmp_path / "after-resume"
    await term.send(f"touch {after}\r")
    await wait_until(after.exists, 15, what="input flowing again")
    assert not held.exists()
    term.close()
    await wait_ended_api(admin, sid)
    gone = await auditor_b.post(f"/api/sessions/{sid}/resume")
    assert gone.status == 404, gone
