"""Controls of live sessions under bursts, outages and time: admission, journal, limits, locks, hostile sockets."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClosedError

from client import TerminalClient
from conftest import VENV_BIN, BastionApp, free_port, mongo_db_url, stop_process, wait_port
from test_terminal import granted_host, read_cast, wait_ended
from waiting import wait_until


async def ready_shell(term: TerminalClient, marker: str = "rea''dy") -> None:
    await term.control("session")
    await term.send(f"echo {marker}\r")
    await term.expect(marker.replace("''", ""), timeout=30)


async def test_burst_of_opens_never_exceeds_the_limit(make_bastion, sshd) -> None:
    app = await make_bastion(terminal_max_sessions_per_user="3")
    _, user, ids = await granted_host(app, sshd)

    async def attempt() -> TerminalClient | int:
        try:
            return await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
        except HTTPClientError as exc:
            return exc.code

    results = await asyncio.gather(*(attempt() for _ in range(120)))
    opened = [r for r in results if isinstance(r, TerminalClient)]
    refused = [r for r in results if not isinstance(r, TerminalClient)]
    assert 1 <= len(opened) <= 3
    assert set(refused) == {409}
    await app.settle()
    # ground truth outside the hub: session documents (one per SSH login) never exceed the limit
    assert (await app.services.store.list_sessions()).total == len(opened)
    for term in opened:
        term.close()
    await wait_until(lambda: not app.services.hub.live(), 15, what="sessions closing")
    assert app.services.hub.slots_held((await app.services.store.get_user_by_name("alice")).id) == 0
    # the slots came back: the user can open again
    again = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await ready_shell(again)
    again.close()


async def test_maximum_duration_warns_then_expires(make_bastion, sshd) -> None:
    app = await make_bastion(terminal_max_session_duration="6")  # warned a minute before the end (half of 6 s here)
    _, user, ids = await granted_host(app, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await ready_shell(term)
    await wait_until(lambda: any("maximum duration" in c.get("message", "") for c in term.controls), 15,
                what="the warning a minute before the end")
    # keystrokes do not extend a maximum duration: type while waiting for the end
    closed_task = asyncio.ensure_future(term.control("closed", timeout=30))
    while not closed_task.done():
        await term.send("\x07")
        await asyncio.sleep(0.5)  # the adversary: a keystroke every half second
    closed = closed_task.result()
    assert closed["code"] == "expired" and "maximum duration" in closed["reason"]
    record = await wait_ended(app, term.session_id)
    assert record.end_reason == "expired"


async def test_socket_that_stops_reading_is_closed(make_bastion, sshd) -> None:
    app = await make_bastion(terminal_slow_client_timeout="2")
    _, user, ids = await granted_host(app, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await ready_shell(term)
    await term.send("stty -echo; yes slow-reader-output\r")
    await term.expect("slow-reader-output")
    term.stop_reading()  # the browser stops reading; TCP buffers fill, writes stop completing
    record = await wait_ended(app, term.session_id, timeout=120)
    assert record.end_reason == "slow_client"
    session_memory = app.services.hub.get(record.id)
    assert session_memory is None


async def test_resize_flood_is_coalesced(bastion: BastionApp, sshd) -> None:
    _, user, ids = await granted_host(bastion, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}", cols=80, rows=24)
    await ready_shell(term)
    started = time.monotonic()
    for i in range(3000):
        await term.resize(80 + i % 50, 24 + i % 10)
    await term.resize(123, 45)
    elapsed = time.monotonic() - started
    await term.send("stty size\r")
    await term.expect("45 123", timeout=10)  # the host ends up with the last size
    term.close()
    record = await wait_ended(bastion, term.session_id)
    _, events = read_cast(record.recording_path)
    resizes = [e for e in events if e[1] == "r"]
    # one recorded change per 100 ms window at most (plus the final one): far fewer than the 3001 frames
    assert 1 <= len(resizes) <= elapsed * 10 + 3
    assert resizes[-1][2] == "123x45"


async def test_repeated_malformed_frames_close_the_socket(bastion: BastionApp, sshd) -> None:
    _, user, ids = await granted_host(bastion, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await ready_shell(term)
    sent = 0
    for _ in range(25):
        try:
            await term.send_raw('{"type": "nonsense"}')
        except WebSocketClosedError:
            break
        sent += 1
    assert sent >= 20
    closed = await term.control("closed", timeout=10)
    assert "malformed" in closed["reason"]
    record = await wait_ended(bastion, term.session_id)
    assert record.end_reason == "closed"


async def test_end_and_lock(bastion: BastionApp, sshd) -> None:
    admin, user, ids = await granted_host(bastion, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await ready_shell(term)
    auditor = await bastion.user("audrey", roles=["auditor"])
    resp = await auditor.post(f"/api/sessions/{term.session_id}/kill",
                              {"reason": "suspicious", "lock_minutes": 30, "lock_scope": "host"})
    assert resp.status == 200, resp
    assert (await term.control("closed"))["code"] == "kicked"
    with pytest.raises(HTTPClientError) as info:  # the kicked user cannot reopen at once
        await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    assert info.value.code == 409 and b"locked out" in info.value.response.body
    locks = (await auditor.get("/api/access-locks")).json
    assert locks["total"] == 1 and locks["items"][0]["username"] == "alice"
    assert (await auditor.delete(f"/api/access-locks/{locks['items'][0]['id']}")).status == 403
    assert (await admin.delete(f"/api/access-locks/{locks['items'][0]['id']}")).status == 204
    term2 = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await ready_shell(term2)
    term2.close()
    await bastion.settle()
    actions = [e.action for e in (await bastion.services.store.list_events(limit=100)).items]
    assert "access.locked" in actions and "access.unlocked" in actions
    for bad in ({"reason": "x", "lock_minutes": 0}, {"reason": "x", "lock_minutes": "ten"},
                {"reason": "x", "lock_minutes": 5, "lock_scope": "galaxy"}):
        r = await auditor.post(f"/api/sessions/{term2.session_id}/kill", bad)
        assert r.status == 400, (bad, r)


# ---- the database paused (a real nx-27017 process stopped with SIGSTOP) -------------------------------------------
@pytest.fixture
def private_mongo(tmp_path: Path):
    data = tmp_path / "nx"
    data.mkdir()
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "nx-27017"), "--data-dir", str(data), "--host", "127.0.0.1", "--port", str(port),
                             "--log-file", str(data / "nx.log"), "--pid-file", str(data / "nx.pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port("127.0.0.1", port, proc=proc)
    try:
        yield proc, f"mongodb://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGCONT)
        stop_process(proc)


async def test_live_control_and_commands_while_the_database_is_paused(make_bastion, sshd, private_mongo) -> None:
    proc, base = private_mongo
    app = await make_bastion(database_url=mongo_db_url(base), database_timeout="2")
    admin, user, ids = await granted_host(app, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await ready_shell(term)
    auditor = await app.user("audrey", roles=["auditor"])
    assert (await auditor.get("/api/sessions", params={"live": "1"})).status == 200  # the auditor's login is fresh
    proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(5):
            await term.send(f"echo paused''-{i}\r")
            await term.expect(f"paused-{i}")  # keystrokes and Enter do not wait for the database
        kill = await auditor.post(f"/api/sessions/{term.session_id}/kill", {"reason": "while the db sleeps"})
        assert kill.status == 200, kill
        closed = await term.control("closed", timeout=5)
        assert closed["code"] == "kicked"
        assert app.services.journal.pending > 0  # waiting for the database, not lost
    finally:
        proc.send_signal(signal.SIGCONT)
    await app.settle(timeout=60)
    record = await wait_ended(app, term.session_id, timeout=30)
    assert (record.end_reason, record.ended_by) == ("kicked", "audrey")
    texts = [c.text for c in await app.services.store.commands_of_session(term.session_id)]
    assert texts.count("echo paused''-4") == 1 and sum(t.startswith("echo paused") for t in texts) == 5
    kicks = await app.services.store.list_events(action="session.kicked")
    assert kicks.total == 1


async def test_journal_survives_a_crash_and_stores_nothing_twice(tmp_path: Path, sshd) -> None:
    """Writes journaled while the database was away are applied by the next start, exactly once."""
    from concurrent.futures import ThreadPoolExecutor

    from bastion.journal import Journal
    from bastion.store import Command, make_store
    from conftest import make_config

    config = make_config(tmp_path)
    store = make_store(config)
    await store.open()
    io = ThreadPoolExecutor(1)
    commands = [Command(session_id="s1", text=f"cmd {i}") for i in range(20)]
    journal = Journal(tmp_path / "journal", "n1", store, io)
    await journal.open()
    for c in commands[:10]:
        journal.command(c)
    assert await journal.drained(10)
    await store.close()  # the database goes away: the next ten reach the file only
    for c in commands[10:]:
        journal.command(c)
    await journal.close(timeout=0.5)
    with open(journal.path, "ab") as fh:  # and the process dies in the middle of a line
        fh.write(b'{"kind": "command", "doc": {"id": "torn')
    store = make_store(config)
    await store.open()
    try:
        again = Journal(tmp_path / "journal", "n1", store, io)
        assert await again.open() >= 10
        assert await again.drained(10)
        await again.close()
        stored = [c.text for c in await store.commands_of_session("s1")]
        assert sorted(stored) == sorted(c.text for c in commands)  # every one, exactly once
        assert again.path.stat().st_size == 0
    finally:
        await store.close()
        io.shutdown()


async def test_journal_file_is_private(bastion: BastionApp) -> None:
    journal_dir = bastion.config.data_dir / "journal"
    assert journal_dir.stat().st_mode & 0o777 == 0o700
    bastion.services.audit.emit("monitor.left", actor="x", session="y")
    await bastion.settle()
    assert (journal_dir / f"{bastion.config.node_id}.jsonl").stat().st_mode & 0o077 == 0


async def test_locale_reaches_the_host_with_a_per_host_override(bastion: BastionApp, sshd) -> None:
    admin, user, ids = await granted_host(bastion, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await ready_shell(term)
    await term.send("echo LANG''=$LANG\r")
    await term.expect("LANG=C.UTF-8")  # the default, as SSH environment (the host AcceptEnv's it)
    await term.send("printf 'caf\\303\\251\\n' | wc -m\r")  # one character per UTF-8 letter
    await term.expect("\r5\r\n")  # 4 letters and a newline: the é counts once
    term.close()
    assert (await admin.patch(f"/api/hosts/{ids['host_id']}", {"locale": "POSIX"})).status == 200
    bad = await admin.patch(f"/api/hosts/{ids['host_id']}", {"locale": "en_US; rm -rf /"})
    assert bad.status == 400 and "locale" in bad.json["error"]
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await ready_shell(term)
    await term.send("echo LANG''=$LANG\r")
    await term.expect("LANG=POSIX")
    term.close()
