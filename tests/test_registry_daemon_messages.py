"""The registry messages the daemon's IPC commands need (draft 16.2-16.3, 18.1-18.2): set_tags, set_task_exec and
invite-only networks (invite_to_network, poll_invites, respond_invite), over the real TCP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pilot_proto.profile import Profile
from pilot_proto.registry import AsyncRegistryClient, Registry, RegistryConfig, RegistryError, RegistryServer, Store
from pilot_proto.tunnel import Identity

LOOPBACK = "127.0.0.1"
ADMIN = "admin-secret"


def ident(n: int) -> Identity:
    return Identity.from_seed(n.to_bytes(4, "big") * 8)


@pytest.mark.parametrize("profile", [Profile.DRAFT, Profile.GO_INTEROP])
def test_tags_and_task_exec_are_signed_validated_persisted_and_looked_up(tmp_path: Path, profile: Profile) -> None:
    async def main() -> None:
        reg = Registry(RegistryConfig.for_profile(profile), now=time.time())
        store = Store(tmp_path / "r.store")
        reg.restore(store.load(), time.time())
        server = RegistryServer(reg, store)
        host, port = await server.start(LOOPBACK, 0)
        try:
            a = await AsyncRegistryClient.connect((host, port), profile)
            b = await AsyncRegistryClient.connect((host, port), profile)
            na = await a.register(ident(1), "127.0.0.1:4001")
            await b.register(ident(2), "127.0.0.1:4002")
            got = await a.set_tags(["#gpu", "eu-west", "gpu"])
            assert got["type"] == "set_tags_ok" and got["tags"] == ["gpu", "eu-west"]  # '#' dropped, deduplicated
            assert (await a.set_task_exec(True))["task_exec"] is True
            look = await b.lookup(na)
            assert look["tags"] == ["gpu", "eu-west"] and look["task_exec"] is True
            for bad, why in ((["UPPER"], "lowercase"), (["x" * 33], "too long"), ([""], "empty"),
                             ([f"t{i}" for i in range(11)], "too many"), ([1], "list of strings")):  # fmt: skip
                with pytest.raises(RegistryError, match=why):
                    await a.set_tags(bad)  # type: ignore[arg-type]
            # an unsigned set_tags for someone else's node is refused (CONS-004)
            forged = await b.call({"type": "set_tags", "node_id": na, "tags": ["evil"]})
            assert forged.get("type") == "error" and "signature" in forged["error"]
            assert (await b.lookup(na))["tags"] == ["gpu", "eu-west"]
            assert (await a.set_tags([]))["tags"] == []
            assert "tags" not in await b.lookup(na)
            await a.set_tags(["kept"])
            await a.close()
            await b.close()
        finally:
            await server.close()
        again = Registry(RegistryConfig.for_profile(profile), now=time.time())
        again.restore(Store(tmp_path / "r.store").load(), time.time())
        node = again._nodes[na]
        assert node.tags == ["kept"] and node.task_exec is True  # survives a restart

    asyncio.run(main())


@pytest.mark.req("ENT-005", "ENT-008")
def test_invite_only_network_invite_poll_accept_reject(tmp_path: Path) -> None:
    async def main() -> None:
        reg = Registry(RegistryConfig(admin_token=ADMIN), now=time.time())
        server = RegistryServer(reg, None)
        host, port = await server.start(LOOPBACK, 0)
        try:
            owner, guest, other = [await AsyncRegistryClient.connect((host, port)) for _ in range(3)]
            n_owner = await owner.register(ident(11), "127.0.0.1:5001")
            n_guest = await guest.register(ident(12), "127.0.0.1:5002")
            n_other = await other.register(ident(13), "127.0.0.1:5003")
            made = await owner.call({"type": "create_network", "node_id": n_owner, "name": "club",
                                     "join_rule": "invite", "admin_token": ADMIN}, "create_network_ok")  # fmt: skip
            net = int(made["network_id"])
            with pytest.raises(RegistryError, match="invite-only"):
                await guest.join_network(net)
            with pytest.raises(RegistryError, match="rbac"):
                await other.invite_to_network(net, n_guest)  # not a member: may not invite
            assert (await owner.invite_to_network(net, n_guest))["target_node_id"] == n_guest
            assert (await owner.invite_to_network(net, n_guest))["status"] == "already_invited"
            await owner.invite_to_network(net, n_other)
            invites = (await guest.poll_invites())["invites"]
            assert [(i["network_id"], i["inviter_id"]) for i in invites] == [(net, n_owner)]
            assert (await guest.poll_invites())["invites"] == invites  # polling does not consume
            with pytest.raises(RegistryError, match="no pending invite"):
                await guest.respond_invite(net + 1, True)
            assert (await guest.respond_invite(net, True))["accepted"] is True
            assert (await guest.poll_invites())["invites"] == []
            members = {n["node_id"]: n.get("role") for n in (await guest.list_nodes(net))["nodes"]}
            assert members == {n_owner: "owner", n_guest: "member"}
            with pytest.raises(RegistryError, match="rbac"):
                await guest.invite_to_network(net, n_other)  # a member is not an admin (ENT-005)
            assert (await other.respond_invite(net, False))["accepted"] is False
            assert net not in (await other.lookup(n_other))["networks"]
            nets = {n["id"]: n["join_rule"] for n in (await other.list_networks())["networks"]}
            assert nets[net] == "invite"
            left = await guest.leave_network(net)
            assert left["type"] == "leave_network_ok"
            for c in (owner, guest, other):
                await c.close()
        finally:
            await server.close()

    asyncio.run(main())


@pytest.mark.req("ENT-008")
def test_an_invite_respects_max_members() -> None:
    reg = Registry(RegistryConfig(admin_token=ADMIN), now=1e9)
    out = []

    def ask(msg: dict[str, object]) -> dict[str, object]:
        reg.receive_request(msg, None, 1e9)
        out.extend(reg.replies_to_send())
        return out[-1].message

    ids = [int(str(ask({"type": "register", "listen_addr": f"127.0.0.1:{6000 + i}", "admin_token": ADMIN})["node_id"]))
           for i in range(2)]  # keyless nodes, written with the admin token  # fmt: skip
    net = ask({"type": "create_network", "node_id": ids[0], "name": "tiny", "join_rule": "invite",
               "admin_token": ADMIN})["network_id"]  # fmt: skip
    assert ask({"type": "set_network_policy", "node_id": ids[0], "network_id": net, "admin_token": ADMIN,
                "max_members": 1})["type"] == "set_network_policy_ok"  # fmt: skip
    refused = ask({"type": "invite_to_network", "network_id": net, "inviter_id": ids[0], "target_node_id": ids[1],
                   "admin_token": ADMIN})  # fmt: skip
    assert refused["type"] == "error" and "limit" in str(refused["error"])


def test_invite_inbox_is_bounded_and_invites_expire() -> None:
    reg = Registry(RegistryConfig(admin_token=ADMIN, max_invite_inbox=2, invite_ttl=100.0), now=1e9)

    def ask(msg: dict[str, object], now: float = 1e9) -> dict[str, object]:
        reg.receive_request(msg, None, now)
        return reg.replies_to_send()[-1].message

    owner, target = (int(str(ask({"type": "register", "listen_addr": f"127.0.0.1:{7000 + i}",
                                  "admin_token": ADMIN})["node_id"])) for i in range(2))  # fmt: skip
    nets = [int(str(ask({"type": "create_network", "node_id": owner, "name": f"n{i}", "join_rule": "invite",
                         "admin_token": ADMIN})["network_id"])) for i in range(3)]  # fmt: skip

    def invite(net: int, now: float = 1e9) -> dict[str, object]:
        return ask({"type": "invite_to_network", "network_id": net, "inviter_id": owner, "target_node_id": target,
                    "admin_token": ADMIN}, now)  # fmt: skip

    assert invite(nets[0])["type"] == invite(nets[1])["type"] == "invite_to_network_ok"
    full = invite(nets[2])
    assert full["type"] == "error" and "inbox full" in str(full["error"])
    assert len(reg._invites[target]) == 2
    later = 1e9 + 101.0  # both expired: the inbox has room again
    assert invite(nets[2], later)["type"] == "invite_to_network_ok"
    assert [i["network_id"] for i in reg._invites[target]] == [nets[2]]
