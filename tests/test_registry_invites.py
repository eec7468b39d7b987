"""Pending network invites are durable registry state (E-DF-4; Go keeps its invite inbox in its store).

An acknowledged invite survives a restart: from the compacted snapshot a clean shutdown writes, and from the
journal alone when the registry dies without compacting (a copy of the store file taken while it runs).  A
store written before invites were kept loads with none.  The per-node and registry-wide bounds hold across
restarts.  Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from pilot_proto.registry import AsyncRegistryClient, Registry, RegistryConfig, RegistryServer, Store
from pilot_proto.tunnel import Identity

LOOPBACK = "127.0.0.1"
ADMIN = "admin-secret"


def ident(n: int) -> Identity:
    return Identity.from_seed(n.to_bytes(4, "big") * 8)


def _restored(path: Path, **config: Any) -> Registry:
    reg = Registry(RegistryConfig(admin_token=ADMIN, **config), now=time.time())
    reg.restore(Store(path).load(), time.time())
    return reg


def _pairs(invites: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(int(i["network_id"]), int(i["inviter_id"])) for i in invites]


def test_an_invite_survives_a_restart_and_is_then_polled_and_accepted(tmp_path: Path) -> None:
    store_file, crash_copy = tmp_path / "r.store", tmp_path / "crashed.store"

    async def first_run() -> tuple[int, int, int, int]:
        reg = _restored(store_file)
        server = RegistryServer(reg, Store(store_file))
        addr = await server.start(LOOPBACK, 0)
        try:
            owner, guest = [await AsyncRegistryClient.connect(addr) for _ in range(2)]
            n_owner = await owner.register(ident(21), "127.0.0.1:5101")
            n_guest = await guest.register(ident(22), "127.0.0.1:5102")
            nets = [int((await owner.call({"type": "create_network", "node_id": n_owner, "name": name,
                                           "join_rule": "invite", "admin_token": ADMIN}, "create_network_ok"))
                        ["network_id"]) for name in ("club", "lodge")]  # fmt: skip
            for net in nets:
                await owner.invite_to_network(net, n_guest)
            # acknowledged, so on disk: a copy now is what a registry killed at this moment leaves behind
            shutil.copyfile(store_file, crash_copy)
            for c in (owner, guest):
                await c.close()
        finally:
            await server.close()  # a clean stop compacts: the invites must be in the snapshot too
        return n_owner, n_guest, nets[0], nets[1]

    n_owner, n_guest, club, lodge = asyncio.run(first_run())
    crashed = _restored(crash_copy)  # the journal alone, never compacted
    assert _pairs(crashed._invites[n_guest]) == [(club, n_owner), (lodge, n_owner)]
    assert Store(store_file).load()[0]["op"] == "snapshot"

    async def second_run() -> None:
        reg = _restored(store_file)
        assert reg.invite_count == 2
        server = RegistryServer(reg, Store(store_file))
        addr = await server.start(LOOPBACK, 0)
        try:
            guest = await AsyncRegistryClient.connect(addr)
            await asyncio.sleep(0.005)  # E-REG-3: nothing signed in the restart's millisecond is accepted
            assert await guest.register(ident(22), "127.0.0.1:5102") == n_guest  # the known key keeps its ID
            invites = (await guest.poll_invites())["invites"]
            assert _pairs(invites) == [(club, n_owner), (lodge, n_owner)]
            assert all(abs(int(i["timestamp"]) - time.time()) < 60 for i in invites)
            assert (await guest.respond_invite(club, True))["accepted"] is True
            assert (await guest.respond_invite(lodge, False))["accepted"] is False
            assert (await guest.poll_invites())["invites"] == []
            assert club in (await guest.lookup(n_guest))["networks"]
            await guest.close()
        finally:
            await server.close()

    asyncio.run(second_run())
    final = _restored(store_file)  # answered invites stay answered after another restart
    assert final._invites == {} and final.invite_count == 0
    net = final.network(club)
    assert net is not None and n_guest in net.members


def test_invites_are_withdrawn_when_their_sender_leaves_is_kicked_or_deregisters(tmp_path: Path) -> None:
    """As Go: an inviter who leaves or is kicked from a network withdraws its invites there; a node that
    deregisters takes its pending invites, both ways, with it.  Each withdrawal is journaled (restart check)."""
    store_file = tmp_path / "w.store"

    async def run() -> dict[str, int]:
        reg = _restored(store_file)
        server = RegistryServer(reg, Store(store_file))
        addr = await server.start(LOOPBACK, 0)
        try:
            owner, admin, t1, t2 = [await AsyncRegistryClient.connect(addr) for _ in range(4)]
            ids = {
                name: await c.register(ident(40 + i), f"127.0.0.1:{5200 + i}")
                for i, (name, c) in enumerate((("owner", owner), ("admin", admin), ("t1", t1), ("t2", t2)))
            }
            a, b = [int((await owner.call({"type": "create_network", "node_id": ids["owner"], "name": name,
                                           "join_rule": "invite", "admin_token": ADMIN}, "create_network_ok"))
                        ["network_id"]) for name in ("alpha", "beta")]  # fmt: skip
            for net in (a, b):
                await owner.invite_to_network(net, ids["admin"])
                await admin.respond_invite(net, True)
                await owner.call({"type": "promote_member", "node_id": ids["owner"], "network_id": net,
                                  "target_node_id": ids["admin"]}, "promote_member_ok")  # fmt: skip
                await admin.invite_to_network(net, ids["t1"])
            await owner.invite_to_network(a, ids["t2"])
            await admin.invite_to_network(b, ids["t2"])
            assert reg.invite_count == 4
            await admin.leave_network(a)  # withdraws admin's invite to alpha, nothing else
            assert _pairs((await t1.poll_invites())["invites"]) == [(b, ids["admin"])]
            assert _pairs((await t2.poll_invites())["invites"]) == [(a, ids["owner"]), (b, ids["admin"])]
            await owner.call({"type": "kick_member", "node_id": ids["owner"], "network_id": b,
                              "target_node_id": ids["admin"]}, "kick_member_ok")  # fmt: skip
            assert (await t1.poll_invites())["invites"] == []
            assert _pairs((await t2.poll_invites())["invites"]) == [(a, ids["owner"])]
            await owner.invite_to_network(b, ids["t1"])
            await t2.deregister()  # its inbound invite goes
            await owner.deregister()  # and so does everything the owner sent
            assert reg.invite_count == 0 and reg._invites == {}
            shutil.copyfile(store_file, tmp_path / "crashed.store")  # the journal as a kill here leaves it
            for c in (owner, admin, t1, t2):
                await c.close()
        finally:
            await server.close()
        return ids

    asyncio.run(run())
    for path in (tmp_path / "crashed.store", store_file):  # replayed journal records, then the snapshot
        again = _restored(path)
        assert again._invites == {} and again.invite_count == 0, path
    assert Store(tmp_path / "crashed.store").load()[0]["op"] != "snapshot"


class _Sync:
    """A sans-IO registry whose records go to a store file, with the admin token for every write."""

    def __init__(self, path: Path, **config: Any) -> None:
        self.path, self.config = path, config
        self.store = Store(path)
        self.reg = Registry(RegistryConfig(admin_token=ADMIN, **config), now=1e9)
        self.reg.restore(self.store.load(), 1e9)

    def ask(self, msg: dict[str, Any], now: float = 1e9) -> dict[str, Any]:
        self.reg.receive_request({**msg, "admin_token": ADMIN}, None, now)
        self.store.append(self.reg.records_to_persist())
        return self.reg.replies_to_send()[-1].message

    def restart(self) -> _Sync:
        self.store.close()
        return _Sync(self.path, **self.config)


def _setup(s: _Sync, nodes: int, nets: int) -> tuple[list[int], list[int]]:
    ids = [int(s.ask({"type": "register", "listen_addr": f"127.0.0.1:{7100 + i}"})["node_id"]) for i in range(nodes)]
    made = [int(s.ask({"type": "create_network", "node_id": ids[0], "name": f"n{i}", "join_rule": "invite"})
                  ["network_id"]) for i in range(nets)]  # fmt: skip
    return ids, made


def _invite(s: _Sync, inviter: int, net: int, target: int, now: float = 1e9) -> dict[str, Any]:
    return s.ask({"type": "invite_to_network", "network_id": net, "inviter_id": inviter, "target_node_id": target},
                 now)  # fmt: skip


def test_a_store_written_before_invites_were_kept_loads_with_none(tmp_path: Path) -> None:
    s = _Sync(tmp_path / "old.store")
    ids, nets = _setup(s, 2, 1)
    assert _invite(s, ids[0], nets[0], ids[1])["type"] == "invite_to_network_ok"
    old = s.reg.snapshot()
    del old["invites"]  # the snapshot form of a store written before this change
    s.store.compact(old)
    s = s.restart()
    assert s.reg._invites == {} and s.reg.invite_count == 0
    assert s.reg.network(nets[0]) is not None and s.reg.node(ids[1]) is not None  # everything else is there
    assert _invite(s, ids[0], nets[0], ids[1])["type"] == "invite_to_network_ok"  # and invites work again
    assert _pairs(s.restart().reg._invites[ids[1]]) == [(nets[0], ids[0])]


def test_invite_bounds_hold_across_restarts(tmp_path: Path) -> None:
    """Per node (Go's 100, here 2) and registry-wide (``max_invites``, here 3); expired invites make room."""
    s = _Sync(tmp_path / "b.store", max_invite_inbox=2, max_invites=3, invite_ttl=100.0)
    ids, nets = _setup(s, 4, 3)
    owner, targets = ids[0], ids[1:]
    assert [_invite(s, owner, nets[i], targets[0])["type"] for i in range(2)] == ["invite_to_network_ok"] * 2
    full = _invite(s, owner, nets[2], targets[0])
    assert full["type"] == "error" and "inbox full" in full["error"]
    s = s.restart()
    assert s.reg.invite_count == 2
    assert _invite(s, owner, nets[2], targets[0])["type"] == "error"  # still full after the restart
    assert _invite(s, owner, nets[0], targets[1])["type"] == "invite_to_network_ok"
    s = s.restart()
    total = _invite(s, owner, nets[0], targets[2])
    assert total["type"] == "error" and "limit" in total["error"] and s.reg.invite_count == 3
    later = 1e9 + 101.0  # every invite expired: the sweep frees the registry-wide room, journaled
    assert _invite(s, owner, nets[0], targets[2], later)["type"] == "invite_to_network_ok"
    s = s.restart()
    assert s.reg.invite_count == 1 and list(s.reg._invites) == [targets[2]]


def test_deleting_a_network_drops_its_invites_durably(tmp_path: Path) -> None:
    s = _Sync(tmp_path / "d.store")
    ids, nets = _setup(s, 2, 2)
    for net in nets:
        _invite(s, ids[0], net, ids[1])
    assert s.ask({"type": "delete_network", "node_id": ids[0], "network_id": nets[0]})["type"] == "delete_network_ok"
    assert _pairs(s.reg._invites[ids[1]]) == [(nets[1], ids[0])] and s.reg.invite_count == 1
    s = s.restart()
    assert _pairs(s.reg._invites[ids[1]]) == [(nets[1], ids[0])] and s.reg.invite_count == 1


@pytest.mark.req("REPL-004")
def test_a_standby_takes_the_primarys_invites(tmp_path: Path) -> None:
    s = _Sync(tmp_path / "p.store")
    ids, nets = _setup(s, 2, 1)
    _invite(s, ids[0], nets[0], ids[1])
    standby = Registry(RegistryConfig(admin_token=ADMIN, standby=True), now=1e9)
    standby.load_replica(s.reg.snapshot(), 1e9)
    assert standby._invites == s.reg._invites and standby.invite_count == 1


def test_the_invite_bounds_are_documented() -> None:
    bounds = (Path(__file__).resolve().parent.parent / "spec" / "bounds.md").read_text(encoding="utf-8")
    cfg = RegistryConfig()
    assert (cfg.max_invite_inbox, cfg.max_invites, cfg.invite_ttl) == (100, 100_000, 30 * 86400.0)
    assert "`RegistryConfig.max_invites`" in bounds and "100,000" in bounds
    assert "`RegistryConfig.max_invite_inbox`" in bounds and "30 days" in bounds
