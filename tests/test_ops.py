"""Operator endpoints: every /metrics family the README lists, with values that follow what happened."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from client import TerminalClient
from conftest import BastionApp, granted_host
from scenario import grant, open_terminal
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = {  # README: live sessions, monitors, bytes proxied, kicks, runs by status and failed logins
    "bastion_live_sessions": "gauge", "bastion_monitors": "gauge", "bastion_bytes_proxied_total": "counter",
    "bastion_kicks_total": "counter", "bastion_runs_total": "counter", "bastion_runs_running": "gauge",
    "bastion_failed_logins": "gauge", "bastion_sessions_started_total": "counter", "bastion_journal_pending": "gauge",
}
SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\d+(?:\.\d+)?)$')


async def metrics(app: BastionApp) -> dict[str, float]:
    """Scrape /metrics (anonymous, as Prometheus does); check its format; return sample → value."""
    resp = await app.client().get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in resp.body.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, f"not a Prometheus sample: {line!r}"
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    assert types == FAMILIES
    return samples


async def test_metrics_families_follow_activity(bastion: BastionApp, sshd) -> None:
    node = '{node="test-node"}'
    before = await metrics(bastion)
    assert before[f"bastion_live_sessions{node}"] == 0 and before[f"bastion_kicks_total{node}"] == 0
    assert before["bastion_failed_logins"] == 0
    assert (await bastion.client().post("/api/login", {"username": "admin", "password": "not-the-password"})).status == 401

    admin, user, ids = await granted_host(bastion, sshd)
    term = await open_terminal(user, ids["host_id"])
    await term.send("echo metr''ics\r")
    await term.expect("metrics")
    mon = await TerminalClient.open(admin, f"/ws/monitor/{term.session_id}")
    await mon.control("resize")
    during = await metrics(bastion)
    assert during[f"bastion_live_sessions{node}"] == 1 and during[f"bastion_monitors{node}"] == 1
    assert during[f"bastion_bytes_proxied_total{node}"] >= len(term.output)
    assert during["bastion_failed_logins"] == 1

    assert (await admin.post(f"/api/sessions/{term.session_id}/kill", {"reason": "metrics test"})).status == 200
    await term.wait_closed()

    # a module run that finishes ok, counted by status
    folder = Path(bastion.config.modules.dir)
    folder.mkdir(exist_ok=True)
    shutil.copy(ROOT / "modules" / "Mid_1003.py", folder)
    await bastion.services.registry.refresh()
    uid = (await bastion.services.store.get_user_by_name("alice")).id
    await grant(admin, uid, app_id=ids["app_id"])
    run = await user.post("/api/modules/1003/runs", {"host_ids": [ids["host_id"]], "params": {}})
    assert run.status == 201, run

    async def counted() -> dict[str, float] | None:
        after = await metrics(bastion)
        return after if after[f'bastion_runs_total{{node="test-node",status="ok"}}'] == 1 else None
    after = await wait_until(counted, 60, what="the run counted as ok")
    assert after[f"bastion_live_sessions{node}"] == 0 and after[f"bastion_monitors{node}"] == 0
    assert after[f"bastion_kicks_total{node}"] == 1
    assert after[f"bastion_bytes_proxied_total{node}"] >= during[f"bastion_bytes_proxied_total{node}"]
    assert after[f"bastion_runs_running{node}"] == 0
    assert after[f'bastion_runs_total{{node="test-node",status="failed"}}'] == 0
