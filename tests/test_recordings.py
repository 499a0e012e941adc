"""Recordings as the README promises them: input recorded when configured, `bastion play` (replay and speed,
as a subprocess), and the retention job of a real `bastion serve` purging an old recording on its own."""
from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from bastion.recorder import chain_path
from client import Client
from conftest import ADMIN_PASSWORD, BastionApp, granted_host, wait_ended
from procs import bastion_env, init_bastion, serve_bastion, stop_process
from scenario import cast_output, grant, open_terminal, read_cast, seed_sshd, wait_ended_api
from waiting import wait_until


async def test_record_input_when_configured(make_bastion, sshd) -> None:
    app = await make_bastion(terminal_record_input="true")
    _, user, ids = await granted_host(app, sshd)
    term = await open_terminal(user, ids["host_id"])
    await term.send("echo typed''-in\r")
    await term.expect("typed-in")
    term.close()
    record = await wait_ended(app, term.session_id)
    _, events = read_cast(record.recording_path)
    typed = "".join(e[2] for e in events if e[1] == "i")
    assert "echo typed''-in\r" in typed
    assert b"typed-in" in cast_output(events)


def _cli_env(app: BastionApp) -> dict[str, str]:
    return {**os.environ, "BASTION_SERVER_DATA_DIR": str(app.config.data_dir),
            "BASTION_DATABASE_URL": app.config.database.url, "BASTION_TERMINAL_RECORDS_DIR": str(app.config.records_dir)}


async def _play(app: BastionApp, session_id: str, speed: float) -> tuple[bytes, dict[bytes, float]]:
    """Run `bastion play` and note when each marker arrives on its stdout."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bastion", "play", session_id, "--speed", str(speed),
                                                env=_cli_env(app), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, seen = b"", {}
    while chunk := await asyncio.wait_for(proc.stdout.read(65536), 60):
        out += chunk
        for marker in (b"mark-first", b"mark-second"):
            if marker in out and marker not in seen:
                seen[marker] = time.monotonic()
    assert await asyncio.wait_for(proc.wait(), 30) == 0, await proc.stderr.read()
    return out, seen


async def test_bastion_play_replays_with_timing_and_speed(bastion: BastionApp, sshd) -> None:
    _, user, ids = await granted_host(bastion, sshd)
    term = await open_terminal(user, ids["host_id"], cols=90, rows=20)
    # markers that no login message can contain (a login once printed "... for 1 seconds" here, taken for "second")
    await term.send("echo mark-fi''rst; sleep 1.5; echo mark-sec''ond\r")
    await term.expect("mark-second")
    term.close()
    record = await wait_ended(bastion, term.session_id)
    header, events = read_cast(record.recording_path)
    at = {m: next(e[0] for e in events if e[1] == "o" and m in e[2]) for m in ("mark-first", "mark-second")}
    recorded_gap = at["mark-second"] - at["mark-first"]
    assert recorded_gap > 1.0  # `sleep 1.5` on the host, give or take when each chunk reached the bastion

    out, seen = await _play(bastion, record.id, 1)
    # the terminal gets the recorded size, exactly the recorded output, then its attributes reset
    assert out == f"\x1b[8;{header['height']};{header['width']}t".encode() + cast_output(events) + b"\x1b[0m\n"
    # the gap is replayed (sleeps guarantee a lower bound; idle gaps are capped at 2 s); half of it allows for
    # the first marker reaching us late on a loaded machine
    assert seen[b"mark-second"] - seen[b"mark-first"] >= 0.5 * min(recorded_gap, 2.0)

    out, seen = await _play(bastion, record.id, 8)
    assert out.endswith(cast_output(events) + b"\x1b[0m\n")
    opened = await bastion.services.store.list_events(action="recording.opened")
    assert opened.total == 2 and {e.actor for e in opened.items} == {"cli"}
    # at 8x the gap is ~0.2 s; the bound is the recorded gap itself (generous: a player that ignored --speed
    # could not go below it, since its sleeps guarantee at least that long)
    assert seen[b"mark-second"] - seen[b"mark-first"] < min(recorded_gap, 2.0)


async def test_retention_job_of_a_running_server_purges_old_recordings(tmp_path: Path, sshd) -> None:
    """Start-up runs the retention job (then daily): a backdated session's recording goes, a fresh one stays."""
    env = bastion_env(tmp_path)
    init_bastion(env, ADMIN_PASSWORD)
    url = f"http://127.0.0.1:{env['BASTION_SERVER_PORT']}"
    proc = serve_bastion(env, tmp_path / "serve1.log")
    try:
        admin = Client(url)
        await admin.login("admin", ADMIN_PASSWORD)
        ids = await seed_sshd(admin, sshd)
        await grant(admin, (await admin.get("/api/me")).json["user"]["id"], host_id=ids["host_id"])
        sessions = []
        for word in ("old", "new"):
            term = await open_terminal(admin, ids["host_id"])
            await term.send(f"echo {word}''-session\r")
            await term.expect(f"{word}-session")
            term.close()
            sessions.append((await wait_ended_api(admin, term.session_id))["id"])
    finally:
        stop_process(proc)
    old_id, new_id = sessions

    # backdate the first session in the database, as if it were 40 days old
    from bastion.store.sqlite import SQLiteStore
    store = SQLiteStore(Path(env["BASTION_DATABASE_URL"].removeprefix("sqlite:///")))
    await store.open()
    try:
        old = await store.get_session(old_id)
        old.started_at -= 40 * 86400
        await store.save(old)
        paths = {sid: Path((await store.get_session(sid)).recording_path) for sid in sessions}
    finally:
        await store.close()
    assert all(p.exists() for p in paths.values())

    proc = serve_bastion({**env, "BASTION_TERMINAL_RETENTION_DAYS": "30"}, tmp_path / "serve2.log")
    try:
        admin = Client(url)
        await admin.login("admin", ADMIN_PASSWORD)

        async def purged() -> bool:
            return (await admin.get(f"/api/sessions/{old_id}")).json.get("purged") is True
        await wait_until(purged, 30, what="the retention job purging the old session")
        assert not paths[old_id].exists() and not chain_path(paths[old_id]).exists()
        assert paths[new_id].exists()
        kept = (await admin.get(f"/api/sessions/{old_id}")).json
        assert kept["username"] == "admin" and kept["host_name"] == "web1"  # metadata stays
        assert (await admin.get(f"/api/sessions/{new_id}")).json["purged"] is False
        events = (await admin.get("/api/events", params={"action": "recording.purged"})).json
        assert events["total"] == 1 and events["items"][0]["actor"] == "retention"
        assert (await admin.get(f"/api/sessions/{old_id}/recording")).status == 404
    finally:
        stop_process(proc)


async def test_recorder_writes_every_kind_of_text_and_the_chain_verifies(tmp_path: Path) -> None:
    """The event encoder (orjson, with the json module for what orjson refuses) against the json module reading the
    file back and the chain recomputed from the file's bytes."""
    from concurrent.futures import ThreadPoolExecutor

    from bastion.recorder import AsciicastRecorder, verify_recording
    texts = ["plain", "quote \" backslash \\ tab \t nul \x00 esc \x1b[31m", "ünïcødé 日本語 🙂", "line\u2028sep",
             "lone \ud800 surrogate"]
    with ThreadPoolExecutor(1) as io:
        rec = AsciicastRecorder(tmp_path / "r" / "s.cast", cols=80, rows=24, title="t", key=b"k" * 32, io=io,
                                record_input=True)
        await rec.open()
        for text in texts:
            rec.input(text)
        rec.input_by("ls\r", "bob")  # a joined peer's keys: a four-field event
        rec.output("ünï".encode()[:3])  # a UTF-8 character split across two chunks
        rec.output("ünï".encode()[3:])
        rec.resize(100, 30)
        rec.marker("a marker")
        result = await rec.close()
    header, events = read_cast(result.path)
    assert header["width"] == 80
    inputs = [e[2] for e in events if e[1] == "i"]
    assert inputs[:4] == texts[:4]
    assert inputs[4] == "lone ? surrogate"  # not valid Unicode: kept as a replacement, never a failed recording
    assert "".join(e[2] for e in events if e[1] == "o") == "ünï"
    assert [e[2] for e in events if e[1] in "rm"] == ["100x30", "a marker"]
    verdict = verify_recording(Path(result.path), b"k" * 32, result.chain)
    assert verdict.ok, verdict.message
    import io as textio

    from bastion.playback import replay
    out = textio.StringIO()
    replay(Path(result.path), out, speed=1000)  # `bastion play` reads past the four-field event to the output
    assert out.getvalue().endswith("ünï")
