"""Pod terminals end to end: Bastion ⇄ the Kubernetes API test server's exec WebSocket ⇄ a pod sandbox."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import BastionApp, wait_ended
from kubeapi.fixtures import kubeapi  # noqa: F401 (fixture)
from kubeapi.harness import KubeAPI
from kubeapi.scenario import open_pod, pod_user
from scenario import cast_output, read_cast
from waiting import wait_until


async def test_pod_session_runs_commands_and_ends_with_exit_status(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    _, user, cluster_id = await pod_user(bastion, kubeapi)
    term = await open_pod(user, cluster_id, "web-0", "app", cols=100, rows=30)
    await term.control("session")
    await term.send("stty size; hostname; echo $((6*7))\r")
    await term.expect("30 100")
    await term.expect("web-0")
    await term.expect("42")
    await term.resize(120, 40)
    mark = len(term.output)
    await term.send("stty size\r")
    await term.expect("40 120", start=mark)
    await term.send("exit 3\r")
    closed = await term.control("closed")
    assert closed["code"] == "exit" and "exit status 3" in closed["reason"]
    record = await wait_ended(bastion, term.session_id)
    assert (record.end_reason, record.reason) == ("exit", "exit status 3")
    assert (record.cluster, record.namespace, record.pod, record.container) == ("test", "team-a", "web-0", "app")
    assert record.host_id == f"k8s:{cluster_id}" and record.host_name == "test/team-a/web-0/app"
    await bastion.settle()
    texts = [c.text for c in await bastion.services.store.commands_of_session(record.id)]
    assert texts == ["stty size; hostname; echo $((6*7))", "stty size", "exit 3"]
    _, events = read_cast(record.recording_path)
    assert b"42" in cast_output(events) and ["r", "120x40"] in [[e[1], e[2]] for e in events]
    execs = [e for e in kubeapi.log() if e.get("event") == "exec" and e["pod"] == "team-a/web-0" and e["tty"]]
    assert execs[-1]["command"] == ["bash"] and execs[-1]["protocol"] == "v5.channel.k8s.io"
    assert any(e.get("event") == "resize" and (e["width"], e["height"]) == (120, 40) for e in kubeapi.log())
