"""Interop of IPC SetTags, SetTaskExec, SetWebhook and Network (draft 16.2-16.3) with the Go reference (64c2780).

Runs only with ``PILOT_GO_BIN`` (see ``_go.py``), on 127.0.0.1.  The reference ``pilotctl`` drives our daemon (which
is registered in the Go registry under ``go-interop``, so its registry writes must carry Go's signatures), and our
client commands drive the Go daemon; the Go registry is asked directly what each node now advertises.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from _go import GoNet, go_network, registry_call  # tests/interop is on sys.path (no __init__.py)
from test_go_daemon import Ours, cli, go_sock, pilotctl, start_ours, stop

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GoNet, Ours]]:
    tmp = tmp_path_factory.mktemp("go-ipc-commands")
    with go_network(tmp) as go:
        ours = start_ours(tmp, go.registry, "py-tags", "--public")
        try:
            yield go, ours
        finally:
            out = stop(ours)
            assert "0 internal errors" in out, out


def _lookup(go: GoNet, node: int) -> dict[str, object]:
    reply = registry_call(go.registry, {"type": "lookup", "node_id": node})
    assert reply.get("type") == "lookup_ok", reply
    return reply


@pytest.mark.req("IPC-018", "IPC-019")
def test_reference_pilotctl_sets_tags_and_task_exec_on_our_daemon(net: tuple[GoNet, Ours], tmp_path: Path) -> None:
    go, ours = net
    home = tmp_path / "home"
    home.mkdir()
    res = pilotctl(ours.sock, home, "--json", "set-tags", "gpu", "eu")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert _lookup(go, ours.node_id).get("tags") == ["gpu", "eu"]  # our daemon signed set_tags:<n> as Go does
    res = pilotctl(ours.sock, home, "--json", "enable-tasks")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert _lookup(go, ours.node_id).get("task_exec") is True
    res = pilotctl(ours.sock, home, "--json", "disable-tasks")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert "task_exec" not in _lookup(go, ours.node_id)
    assert json.loads(cli(ours.sock, "info", "--json").stdout)["task_exec"] is False
    res = pilotctl(ours.sock, home, "--json", "set-webhook", "http://127.0.0.1:9/never-posted")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert json.loads(cli(ours.sock, "info", "--json").stdout)["webhook"] == "http://127.0.0.1:9/never-posted"
    res = pilotctl(ours.sock, home, "--json", "network", "list")
    assert res.returncode == 0 and "backbone" in res.stdout, (res.stdout, res.stderr)
    res = pilotctl(ours.sock, home, "--json", "clear-tags")
    assert res.returncode == 0 and "tags" not in _lookup(go, ours.node_id), (res.stdout, res.stderr)


@pytest.mark.req("IPC-019", "IPC-021")
def test_our_client_commands_drive_the_go_daemon(net: tuple[GoNet, Ours]) -> None:
    go, _ = net
    sock = go_sock(go)
    res = cli(sock, "set-tags", "from-python", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["tags"] == ["from-python"]
    assert _lookup(go, go.node_id).get("tags") == ["from-python"]
    res = cli(sock, "enable-tasks", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["task_exec"] is True, res.stderr
    assert _lookup(go, go.node_id).get("task_exec") is True
    res = cli(sock, "set-webhook", "http://127.0.0.1:9/none", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["webhook"] == "http://127.0.0.1:9/none", res.stderr
    res = cli(sock, "clear-webhook")
    assert res.returncode == 0, res.stderr
    res = cli(sock, "network", "list", "--json")
    assert res.returncode == 0 and any(n.get("name") == "backbone" for n in json.loads(res.stdout)["networks"]), res
    res = cli(sock, "network", "join", "4242")
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1 and "4242" in res.stderr, res
