"""Interop of IPC SetTags, SetTaskExec, SetWebhook and Network (draft 16.2-16.3) with the Go reference (64c2780).

Runs only with ``PILOT_GO_BIN`` (see ``_go.py``), on 127.0.0.1.  The reference ``pilotctl`` drives our daemon (which
is registered in the Go registry under ``go-interop``, so its registry writes must carry Go's signatures), and our
client commands drive the Go daemon; the Go registry is asked directly what each node now advertises.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _go import (  # tests/interop is on sys.path (no __init__.py)
    LOOPBACK,
    GoNet,
    free_port,
    go_network,
    registry_call,
    stop_processes,
)
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


@pytest.mark.req("IPC-019", "IPC-021", "ENT-005")
def test_go_daemons_set_tags_task_exec_and_use_invites_in_our_registry(tmp_path: Path) -> None:
    """Go daemons registered in **our** registry (``go-interop``): Go's signed ``set_tags``, ``set_task_exec``,
    ``invite:<a>:<net>:<b>``, ``poll_invites`` and ``respond_invite`` all verify against our new handlers."""
    import socket

    from test_go_registry import _bin, _go_daemon, _pilotctl, _signal, _timeout, our_registry

    from pilot_proto.profile import Profile
    from pilot_proto.registry import RegistryClient

    reg_port, beacon_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    procs: list[subprocess.Popen[bytes]] = []
    with our_registry(tmp_path, reg_port, admin_token="interop-admin") as ours:
        try:
            procs.append(subprocess.Popen([*_timeout(), str(_bin("beacon")), "-addr", f"{LOOPBACK}:{beacon_port}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            a = _go_daemon(tmp_path, "go-a", reg_port, beacon_port, procs)
            b = _go_daemon(tmp_path, "go-b", reg_port, beacon_port, procs)
            env = {"HOME": str(tmp_path), "PILOT_REGISTRY": f"{LOOPBACK}:{reg_port}"}
            at_a = {**env, "PILOT_SOCKET": str(tmp_path / "go-a.sock")}
            at_b = {**env, "PILOT_SOCKET": str(tmp_path / "go-b.sock")}
            assert _pilotctl(at_a, "set-tags", "gpu", "#eu").get("status") == "ok"
            assert _pilotctl(at_a, "enable-tasks").get("status") == "ok"
            with RegistryClient((LOOPBACK, reg_port), Profile.GO_INTEROP) as me:
                look = me.lookup(a)
                assert look.get("tags") == ["gpu", "eu"] and look.get("task_exec") is True, look
                made = me.call({"type": "create_network", "node_id": a, "name": "club", "join_rule": "invite",
                                "admin_token": "interop-admin"}, "create_network_ok")  # fmt: skip
                net = int(made["network_id"])
                invited = _pilotctl(at_a, "network", "invite", str(net), str(b))
                assert invited.get("status") == "ok", invited
                polled = _pilotctl(at_b, "network", "invites")
                assert polled.get("status") == "ok" and str(net) in json.dumps(polled), polled
                accepted = _pilotctl(at_b, "network", "accept", str(net))
                assert accepted.get("status") == "ok", accepted
                members = {n["node_id"]: n.get("role") for n in me.list_nodes(net)["nodes"]}
                assert members == {a: "owner", b: "member"}, members
        finally:
            stop_processes(procs)
            _signal(ours, signal.SIGINT)
            ours.communicate(timeout=10)
