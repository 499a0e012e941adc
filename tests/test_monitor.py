"""Live monitoring and kick over real sockets, with a real sshd."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from client import TerminalClient
from conftest import BastionApp, granted_host, make_config, start_bastion, wait_ended
from scenario import cast_output, read_cast
from waiting import wait_until

from bastion.store.sqlite import SQLiteStore


async def open_pair(app: BastionApp, sshd):
    admin, user, ids = await granted_host(app, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}", cols=100, rows=30)
    await term.control("session")
    await term.send("echo rea''dy\r")
    await term.expect("ready")
    return admin, user, ids, term


async def test_refusals_for_monitor_and_kill(bastion: BastionApp, sshd) -> None:
    admin, user, ids, term = await open_pair(bastion, sshd)
    sid = term.session_id
    for client, code in ((user, 403), (bastion.client(), 401)):
        with pytest.raises(HTTPClientError) as info:
            await TerminalClient.open(client, f"/ws/monitor/{sid}")
        assert info.value.code == code
    with pytest.raises(HTTPClientError) as info:
        await TerminalClient.open(admin, f"/ws/monitor/{sid}", origin="http://evil.example")
    assert info.value.code == 403
    with pytest.raises(HTTPClientError) as info:
        await TerminalClient.open(admin, "/ws/monitor/nonexistent")
    assert info.value.code == 404
    assert (await user.post(f"/api/sessions/{sid}/kill", {"reason": "x"})).status == 403
    assert (await admin.post("/api/sessions/nonexistent/kill", {"reason": "x"})).status == 404
    assert (await admin.post(f"/api/sessions/{sid}/kill", {})).status == 400
    assert (await admin.post(f"/api/sessions/{sid}/kill", {"reason": "done"})).status == 200
    again = await admin.post(f"/api/sessions/{sid}/kill", {"reason": "done"})
    assert again.status == 409 and "already ended" in again.json["error"]
    with pytest.raises(HTTPClientError) as info:
        await TerminalClient.open(admin, f"/ws/monitor/{sid}")
    assert info.value.code == 409


async def test_late_join_sees_screen_and_streams_match(bastion: BastionApp, sshd) -> None:
    admin, user, ids, term = await open_pair(bastion, sshd)
    await term.send("echo befo''re-join-42\r")
    await term.expect("before-join-42")
    auditor = await bastion.user("audrey", roles=["auditor"])
    m1 = await TerminalClient.open(auditor, f"/ws/monitor/{term.session_id}")
    m2 = await TerminalClient.open(admin, f"/ws/monitor/{term.session_id}")
    await m1.expect("before-join-42")  # the snapshot shows what ran before joining
    await m2.expect("before-join-42")
    size = await m1.control("resize")
    assert (size["cols"], size["rows"]) == (100, 30)
    notice = await term.control("notice")
    assert "audrey started watching" in notice["message"]
    mark_user = len(term.output)
    snap1, snap2 = len(m1.first_frame), len(m2.first_frame)
    mark1, mark2 = len(m1.output), len(m2.output)
    assert (mark1, mark2) == (snap1, snap2)  # nothing but the snapshot while the shell is idle
    await term.send("for i in $(seq 1 300); do echo line-$i-$RANDOM; done; echo all''done\r")
    await term.expect("alldone", start=mark_user)
    await m1.expect("alldone", start=mark1)
    await m2.expect("alldone", start=mark2)
    # the shell's next prompt ends the stream: wait until both monitors have all the user got
    await wait_until(lambda: len(m1.output) - mark1 >= len(term.output) - mark_user
                     and len(m2.output) - mark2 >= len(term.output) - mark_user, what="monitors catching up")
    user_stream = bytes(term.output[mark_user:])
    assert bytes(m1.output[mark1:]) == user_stream
    assert bytes(m2.output[mark2:]) == user_stream
    listing = (await admin.get("/api/sessions", params={"live": "1"})).json["items"]
    assert [s["watchers"] for s in listing] == [2]
    term.close()
    closed = await m1.control("closed")
    assert closed["code"] == "closed"
    await m1.wait_closed()
    await m2.wait_closed()


async def test_monitor_is_read_only(bastion: BastionApp, sshd, tmp_path: Path) -> None:
    admin, user, ids, term = await open_pair(bastion, sshd)
    marker = tmp_path / "monitor-was-here"
    mon = await TerminalClient.open(admin, f"/ws/monitor/{term.session_id}")
    await mon.control("resize")
    await mon.send(f"touch {marker}\r")
    await mon.resize(10, 5)
    await mon.send_raw(f"touch {marker}\r".encode())
    await mon.send_raw(f'{{"type":"input","data":"touch {marker}\\r"}}')
    # every one of the four frames is refused with a notice and an audit event
    await wait_until(lambda: len([c for c in mon.controls if c["type"] == "notice"]) >= 4, what="four notices")
    notices = [c for c in mon.controls if c["type"] == "notice"]
    assert all("read-only" in n["message"] for n in notices), notices

    async def refused() -> int:
        return (await bastion.services.store.list_events(action="monitor.input_refused")).total
    await wait_until(lambda: refused(), what="the refusal in the audit log")
    events = await bastion.services.store.list_events(action="monitor.input_refused")
    # one event for the first refusal (then at 10, 100, every 1000: a flood cannot flood the audit log)
    assert events.total == 1 and events.items[0].actor == "admin" and events.items[0].detail["attempts"] == 1
    # and the session is untouched: the size the user set, and no file on the host
    await term.send("stty size; test -e " + str(marker) + " && echo EXI''STS || echo AB''SENT\r")
    await term.expect("30 100")
    await term.expect("ABSENT")
    assert not marker.exists()
    term.close()


async def test_kick_while_streaming(bastion: BastionApp, sshd) -> None:
    admin, user, ids, term = await open_pair(bastion, sshd)
    await term.send("echo PI''D=$$ E''ND\r")
    pos = await term.expect("PID=")
    await term.expect("END", start=pos)
    pid = int(bytes(term.output[pos + 4:]).split(b" ")[0])
    assert Path(f"/proc/{pid}").exists()
    mon = await TerminalClient.open(admin, f"/ws/monitor/{term.session_id}")
    await mon.control("resize")
    await term.send("while true; do echo streaming-$RANDOM; done\r")
    await term.expect("streaming-")
    resp = await admin.post(f"/api/sessions/{term.session_id}/kill", {"reason": "policy violation"})
    assert resp.status == 200 and resp.json["end_reason"] == "kicked" and resp.json["ended_by"] == "admin"
    # how fast is measured by tests/perf/bench_hub.py (kick latency p50/p99), not gated here
    closed = await term.control("closed")
    await term.wait_closed()
    assert closed["code"] == "kicked" and closed["by"] == "admin" and "policy violation" in closed["reason"]
    assert (await mon.control("closed"))["code"] == "kicked"
    await wait_until(lambda: not Path(f"/proc/{pid}").exists(), 10, what="the remote shell ending")
    record = await wait_ended(bastion, term.session_id)
    assert (record.end_reason, record.ended_by, record.reason) == ("kicked", "admin", "policy violation")
    _, events = read_cast(record.recording_path)
    assert events[-1][1] == "m" and "policy violation" in events[-1][2]
    assert (await bastion.services.store.list_events(action="session.kicked")).total == 1


async def test_slow_monitor_is_resynced_user_unaffected(bastion: BastionApp, sshd) -> None:
    admin, user, ids, term = await open_pair(bastion, sshd)
    mon = await TerminalClient.open(admin, f"/ws/monitor/{term.session_id}")
    await mon.control("resize")
    mon.stop_reading()  # the monitor stops reading
    await term.send("stty -echo\r")
    mark = len(term.output)
    await term.send("head -c 209715200 /dev/zero | tr '\\0' 'x' | fold -w 100; echo; echo fin''ished\r")
    await term.expect("finished", start=mark, timeout=240)
    session = bastion.services.hub.get(term.session_id)
    watcher = next(iter(session.watchers))
    assert watcher.resyncs >= 1
    assert watcher.queued_bytes <= bastion.config.terminal.monitor_queue_bytes
    assert len(term.output) - mark > 200 * 1024 * 1024
    term.close()


@pytest.mark.parametrize("stalled", ["monitor", "monitor and terminal"])
async def test_shutdown_with_sockets_that_stopped_reading_is_bounded(tmp_path: Path, sshd, stalled: str) -> None:
    """Shutting down while a monitor (and the user's terminal) stopped reading, their sockets full: shutdown ends.

    CI once hung here for 300 s in teardown (a periodic job had lost its cancellation inside a store call and
    shutdown waited for it forever); nothing in shutdown may wait on a socket that does not drain either."""
    app = await start_bastion(make_config(tmp_path))
    stopping: "asyncio.Future[None] | None" = None
    try:
        admin, user, ids, term = await open_pair(app, sshd)
        sid = term.session_id
        mon = await TerminalClient.open(admin, f"/ws/monitor/{sid}")
        await mon.control("resize")
        mon.stop_reading()
        await term.send("stty -echo\r")
        if stalled == "monitor and terminal":
            term.stop_reading()
        session = app.services.hub.get(sid)
        watcher = next(iter(session.watchers))
        await term.send("head -c 16777216 /dev/zero | tr '\\0' 'x' | fold -w 100\r")  # 16 MiB: a modest flood
        await wait_until(lambda: watcher.resyncs >= 1, 60, what="the monitor falling behind")
        if stalled == "monitor and terminal":
            await wait_until(lambda: session.paused, 60, what="the session pausing for its stalled terminal")
        stopping = asyncio.ensure_future(app.stop())  # as the fixtures and `bastion serve` shut down
        # a generous bound, the point of this test: the product bounds each step (jobs 5 s, session closes 15 s)
        done, _ = await asyncio.wait([stopping], timeout=30)
        assert done, "shutdown did not finish within 30 s"
        stopping.result()
    finally:
        if stopping is None:
            await app.stop()
    store = SQLiteStore(tmp_path / "var" / "bastion.db")  # ground truth: what the stopped bastion left in its store
    await store.open()
    try:
        record = await store.get_session(sid)
    finally:
        await store.close()
    assert not record.live and record.end_reason == "shutdown", record


async def test_disable_user_and_revoke_grant_end_sessions(bastion: BastionApp, sshd) -> None:
    admin, user, ids, term = await open_pair(bastion, sshd)
    uid = (await bastion.services.store.get_user_by_name("alice")).id
    grant = (await admin.get("/api/grants", params={"user_id": uid})).json["items"][0]
    assert (await admin.delete(f"/api/grants/{grant['id']}")).status == 200
    closed = await term.control("closed")
    assert closed["code"] == "revoked" and "access revoked" in closed["reason"]
    await admin.post("/api/grants", {"user_id": uid, "host_id": ids["host_id"]})
    term2 = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await term2.control("session")
    assert (await admin.patch(f"/api/users/{uid}", {"disabled": True})).status == 200
    closed = await term2.control("closed")
    assert closed["code"] == "revoked" and "user disabled" in closed["reason"]


async def test_shutdown_closes_sessions_and_monitors(make_bastion, sshd) -> None:
    app = await make_bastion()
    admin, user, ids = await granted_host(app, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await term.control("session")
    await term.send("echo up\r")
    mon = await TerminalClient.open(admin, f"/ws/monitor/{term.session_id}")
    await mon.control("resize")
    sid = term.session_id
    await app.services.sessions.shutdown()
    assert (await term.control("closed"))["code"] == "shutdown"
    assert (await mon.control("closed"))["code"] == "shutdown"
    await term.wait_closed()
    await mon.wait_closed()
    await app.settle()
    record = await app.services.store.get_session(sid)
    assert record.end_reason == "shutdown" and record.recording_size > 0
    read_cast(record.recording_path)


async def test_recording_download_and_path_safety(bastion: BastionApp, sshd) -> None:
    admin, user, ids, term = await open_pair(bastion, sshd)
    term.close()
    record = await wait_ended(bastion, term.session_id)
    resp = await admin.get(f"/api/sessions/{record.id}/recording")
    assert resp.status == 200 and resp.headers["Content-Disposition"] == f'attachment; filename="{record.id}.cast"'
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert b"ready" in cast_output([__import__("json").loads(x) for x in resp.body.decode().splitlines()[1:]])
    assert (await user.get(f"/api/sessions/{record.id}/recording")).status == 403
    for bad in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "abc%00def", "....", "a" * 100):
        r = await admin.get(f"/api/sessions/{bad}/recording")
        assert r.status == 400 and r.json == {"error": "session id must be an id string"}, (bad, r)
    r = await admin.get("/api/sessions/well-formed-but-unknown/recording")
    assert r.status == 404 and r.json == {"error": "session not found"}, r
    # a tampered document pointing outside records/ is refused
    record.recording_path = "/etc/passwd"
    await bastion.services.store.save(record)
    r = await admin.get(f"/api/sessions/{record.id}/recording")
    assert r.status == 404 and b"root:" not in r.body
    assert (await bastion.services.store.list_events(action="recording.opened")).total == 1
