"""The database going away: a clear line at start-up, 503 mid-request, recovery when it returns."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_config, mongo_db_url, start_bastion
from procs import free_port, start_nx, stop_process
from waiting import wait_until


def test_unreachable_database_stops_startup_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "BASTION_DATABASE_URL": f"mongodb://bob:hunter2@127.0.0.1:{port}/bastion",
           "BASTION_DATABASE_TIMEOUT": "1", "BASTION_SERVER_DATA_DIR": str(tmp_path / "var"), "BASTION_SERVER_PORT": "0"}
    out = subprocess.run([sys.executable, "-m", "bastion", "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert f"mongodb://bob:***@127.0.0.1:{port}/bastion" in lines[0] and "cannot be reached" in lines[0]
    assert "hunter2" not in out.stderr + out.stdout


async def test_database_gone_mid_request_gives_503_then_recovers(tmp_path: Path) -> None:
    if os.environ.get("BASTION_TEST_MONGODB_URI"):
        pytest.skip("needs a MongoDB-wire server this test can stop and restart (nx-27017)")
    data = tmp_path / "nx"
    data.mkdir()
    port = free_port()
    nx = start_nx(data, port)
    app = await start_bastion(make_config(tmp_path, database_url=mongo_db_url(f"mongodb://127.0.0.1:{port}"),
                                          database_timeout="1"))
    try:
        admin = await app.admin()
        assert (await admin.post("/api/apps", {"name": "before"})).status == 201
        stop_process(nx)
        resp = await admin.get("/api/apps")
        assert resp.status == 503 and resp.json == {"error": "the database is not answering; try again shortly"}
        resp = await admin.post("/api/apps", {"name": "during"})
        assert resp.status == 503
        nx = start_nx(data, port)
        async def answering():
            resp = await admin.get("/api/apps")
            return resp if resp.status == 200 else None
        resp = await wait_until(answering, 30, what="the API answering again")
        assert [a["name"] for a in resp.json["items"]] == ["before"]
    finally:
        await app.stop()
        stop_process(nx)
