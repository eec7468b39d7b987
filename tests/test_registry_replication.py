"""Hot-standby replication (draft 17) between two of our registries on 127.0.0.1, in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from pathlib import Path

import pytest

from pilot_proto.registry import AsyncRegistryClient, Registry, RegistryConfig, RegistryError, RegistryServer, Store
from pilot_proto.registry.replication import encode_frame, read_frame, run_standby
from pilot_proto.tunnel import Identity
from pilot_proto.wire.registry import ReplicationTimers

LOOPBACK = "127.0.0.1"
TOKEN = "repl-secret"


def ident(n: int) -> Identity:
    return Identity.from_seed(bytes([n]) * 32)


async def _until(pred: object, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pred():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def _scenario(tmp: Path, log: io.StringIO) -> None:
    primary = RegistryServer(Registry(RegistryConfig(admin_token="adm"), now=time.time()), Store(tmp / "p.store"),
                             replication_token=TOKEN)  # fmt: skip
    primary.store.load()  # type: ignore[union-attr]
    p_addr = await primary.start(LOOPBACK, 0)
    standby_reg = Registry(RegistryConfig(standby=True), now=time.time())
    standby_store = Store(tmp / "s.store")
    standby_store.load()
    standby = RegistryServer(standby_reg, standby_store, replication_token=TOKEN, standby_of=p_addr, log=log)
    s_addr = await standby.start(LOOPBACK, 0)
    try:
        a = await AsyncRegistryClient.connect(p_addr)
        b = await AsyncRegistryClient.connect(p_addr)
        na = await a.register(ident(1), "127.0.0.1:4001", hostname="alpha")
        nb = await b.register(ident(2), "127.0.0.1:4002")
        await a.report_trust(nb)
        await b.report_trust(na)
        net = (await a.call({"type": "create_network", "node_id": na, "name": "lab", "admin_token": "adm"}))[
            "network_id"
        ]
        await b.join_network(net)
        await a.call({"type": "set_network_policy", "node_id": na, "network_id": net, "max_members": 5,
                      "admin_token": "adm"})  # fmt: skip
        reader = await AsyncRegistryClient.connect(s_addr)

        async def replicated() -> bool:
            info = standby_reg.network(net)
            return standby_reg.trusted(na, nb) and info is not None and info.max_members == 5

        await _until(replicated, "the standby to hold the nodes, their trust pair, the network and its policy")
        # the snapshot carried nodes, networks (members, roles, policy), trust pairs and the audit log
        info = standby_reg.network(net)
        assert info is not None and info.members == (na, nb) and dict(info.roles) == {na: "owner", nb: "member"}
        assert [e["action"] for e in standby_reg.audit_log()] == [e["action"] for e in primary.registry.audit_log()]
        assert "policy.changed" in [e["action"] for e in standby_reg.audit_log()]
        look = await reader.lookup(na)
        assert look["hostname"] == "alpha"
        # writes at the standby are refused and point at the primary (REPL-008); reads are served
        other = await AsyncRegistryClient.connect(s_addr)
        with pytest.raises(RegistryError, match="use primary"):
            await other.register(ident(3), "127.0.0.1:4003")
        assert (await other.call({"type": "list_networks"}))["type"] == "list_networks_ok"
        # a subscriber with the wrong token gets an error and nothing else
        r, w = await asyncio.open_connection(*p_addr)
        w.write(encode_frame({"type": "subscribe_replication", "token": "wrong"}))
        assert (await asyncio.wait_for(read_frame(r), 5))["error"] == "invalid replication token"
        w.close()
        # a later change reaches the standby too
        await a.set_visibility(True)
        await _until(lambda: _public(reader, na), "the visibility change to be replicated")
        assert primary.replicator.pushed >= 4
        for c in (a, b, reader, other):
            await c.close()
    finally:
        await standby.close()
        await primary.close()
    # manual failover (REPL-007): the standby's store, restarted as a primary, serves and accepts writes
    promoted = Registry(RegistryConfig(), now=time.time())
    store = Store(tmp / "s.store")
    promoted.restore(store.load(), time.time())
    server = RegistryServer(promoted, store)
    addr = await server.start(LOOPBACK, 0)
    try:
        c = await AsyncRegistryClient.connect(addr)
        assert (await c.lookup(na))["public"] is True
        assert await c.register(ident(3), "127.0.0.1:4003") not in (na, nb)
        assert promoted.trusted(na, nb)
        assert promoted.network(net).max_members == 5  # type: ignore[union-attr]  # policy survived (ENT-010)
        await c.close()
    finally:
        await server.close()


async def _public(client: AsyncRegistryClient, nid: int) -> bool:
    return bool((await client.lookup(nid))["public"])


@pytest.mark.req("REPL-001", "REPL-002", "REPL-003", "REPL-004", "REPL-007", "REPL-008", "REPL-009", "ENT-010")
def test_standby_follows_primary_refuses_writes_and_can_be_promoted(tmp_path: Path) -> None:
    log = io.StringIO()
    asyncio.run(asyncio.wait_for(_scenario(tmp_path, log), 30))
    assert "standby: snapshot applied (2 live nodes)" in log.getvalue(), log.getvalue()


async def _silent_primary(timers: ReplicationTimers) -> list[str]:
    """A primary that sends one snapshot and then nothing: the standby declares it unavailable."""
    src = Registry(RegistryConfig(), now=time.time())
    got: list[str] = []

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        hello = await read_frame(r)
        got.append(str(hello.get("token")))
        w.write(encode_frame({"type": "replication_snapshot", "snapshot": src.snapshot()}))
        await asyncio.sleep(3)
        w.close()

    server = await asyncio.start_server(serve, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    log: list[str] = []
    standby = Registry(RegistryConfig(standby=True), now=time.time())
    task = asyncio.get_running_loop().create_task(
        run_standby(standby, None, (LOOPBACK, port), TOKEN, log=log.append, timers=timers)
    )
    await asyncio.sleep(0.8)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    server.close()
    assert got == [TOKEN]
    return log


@pytest.mark.req("REPL-006")
def test_standby_declares_a_silent_primary_unavailable() -> None:
    log = asyncio.run(asyncio.wait_for(_silent_primary(ReplicationTimers(15.0, 0.3)), 10))
    assert log[0].startswith("standby: snapshot applied"), log
    assert any("no message from the primary for 0 s: unavailable" in line for line in log), log
    assert ReplicationTimers.for_profile().standby_timeout == 30.0  # the draft's figure by default


def test_only_a_standby_loads_a_replica() -> None:
    with pytest.raises(Exception, match="only a standby"):
        Registry(RegistryConfig()).load_replica({"op": "snapshot"}, 0.0)


def test_a_malformed_snapshot_leaves_the_replica_unchanged() -> None:
    primary = Registry(RegistryConfig(), now=1e9)
    replica = Registry(RegistryConfig(standby=True), now=1e9)
    good = primary.snapshot()
    replica.load_replica(good, 1e9)
    before = replica.snapshot()
    with pytest.raises(Exception, match="malformed snapshot"):
        replica.load_replica({**good, "nodes": [{"id": "not a number"}]}, 1e9)
    assert replica.snapshot() == before
