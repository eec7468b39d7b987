"""The sans-IO registry core: registration, lookups, privacy, trust, hostnames, networks, signatures.

Requests are built and signed by our own :class:`RegistryCodec` (the client side); forged and replayed
variants are made by editing those messages.  Time is injected; nothing here opens a socket.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from pilot_proto.errors import ErrorCode
from pilot_proto.profile import Profile
from pilot_proto.registry import NodeRegistered, Registry, RegistryCodec, RegistryConfig, TrustChanged
from pilot_proto.registry.state import RESERVED_NODE_IDS, NodeReaped
from pilot_proto.sansio import InputRejected
from pilot_proto.tunnel import Identity

T0 = 1_800_000_000.0
SRC = "127.0.0.1:50000"


def ident(n: int) -> Identity:
    return Identity.from_seed(bytes([n]) * 32)


class Harness:
    """One registry and a codec per node; ``call`` returns the reply, ``events`` drains events."""

    def __init__(self, profile: Profile = Profile.DRAFT, **cfg: Any) -> None:
        self.profile = profile
        self.reg = Registry(RegistryConfig.for_profile(profile, **cfg), now=T0)
        self.now = T0
        self.codecs: dict[int, RegistryCodec] = {}

    def raw(self, msg: Any, source: str | None = SRC) -> dict[str, Any]:
        self.reg.receive_request(msg, source, self.now, tag="t")
        self.records = self.reg.records_to_persist()
        (reply,) = self.reg.replies_to_send()
        assert reply.tag == "t"
        return reply.message

    def signed(self, node: int, msg: dict[str, Any]) -> dict[str, Any]:
        self.now += 0.01
        return self.codecs[node].sign(msg, self.now)

    def call(self, node: int, msg: dict[str, Any]) -> dict[str, Any]:
        return self.raw(self.signed(node, msg))

    def register(self, n: int, port: int = 4000, **extra: Any) -> int:
        codec = RegistryCodec(self.profile)
        msg = {**codec.register_msg(ident(n), f"127.0.0.1:{port}"), **extra}
        self.now += 0.01
        reply = self.last = self.raw(codec.sign(msg, self.now))
        assert reply["type"] == "register_ok", reply
        nid = codec.registered(reply)
        self.codecs[nid] = codec
        return nid

    def events(self) -> list[object]:
        out = []
        while (ev := self.reg.next_event()) is not None:
            out.append(ev)
        return out


@pytest.fixture(params=[Profile.DRAFT, Profile.GO_INTEROP], ids=["draft", "go"])
def h(request: pytest.FixtureRequest) -> Harness:
    return Harness(request.param)


@pytest.mark.req("ARCH-006", "ADDR-012", "ADDR-013", "ADDR-014", "SEC-001")
def test_register_assigns_unreserved_ids_and_keeps_them_per_key(h: Harness) -> None:
    a, b = h.register(1), h.register(2)
    assert a not in RESERVED_NODE_IDS and b not in RESERVED_NODE_IDS and a != b
    assert (a, b) == (4, 5)  # deterministic: first free ID after the draft's reserved 0-3
    assert h.register(1, port=4001) == a  # the same key comes back with the same ID
    assert h.reg.node(a) is not None and h.reg.node(a).listen_addr == "127.0.0.1:4001"  # type: ignore[union-attr]
    evs = [e for e in h.events() if isinstance(e, NodeRegistered)]
    assert [(e.node_id, e.new) for e in evs] == [(a, True), (b, True), (a, False)]


def test_injected_allocator_is_used_and_checked() -> None:
    ids = iter([77, 1])
    reg = Registry(RegistryConfig(), now=T0, allocate_node_id=lambda: next(ids))
    codec = RegistryCodec()
    reg.receive_request(codec.sign(codec.register_msg(ident(1), "127.0.0.1:1"), T0), SRC, T0)
    assert reg.replies_to_send()[0].message["node_id"] == 77
    codec2 = RegistryCodec()
    with pytest.raises(Exception, match="unusable node ID 1"):
        reg.receive_request(codec2.sign(codec2.register_msg(ident(2), "127.0.0.1:1"), T0), SRC, T0)


def test_listen_host_is_the_tcp_source(h: Harness) -> None:
    codec = RegistryCodec(h.profile)
    msg = codec.sign(codec.register_msg(ident(9), "203.0.113.9:7000"), h.now)
    h.reg.receive_request(msg, "127.0.0.1:555", h.now)
    reply = h.reg.replies_to_send()[0].message
    assert reply["observed_addr"] == "127.0.0.1:7000"


@pytest.mark.req("SEC-021")
def test_lookup_hides_real_addr_until_public(h: Harness) -> None:
    a = h.register(1)
    look = h.raw({"type": "lookup", "node_id": a})
    assert look["type"] == "lookup_ok" and "real_addr" not in look
    assert base64.b64decode(look["public_key"]) == ident(1).public_bytes
    assert look["address"] == f"0:0000.0000.{a:04X}"
    assert h.call(a, {"type": "set_visibility", "node_id": a, "public": True})["visibility"] == "public"
    assert h.raw({"type": "lookup", "node_id": a})["real_addr"] == "127.0.0.1:4000"


@pytest.mark.req("SEC-022", "SEC-016")
def test_resolve_needs_public_or_mutual_trust(h: Harness) -> None:
    a, b = h.register(1, 4001), h.register(2, 4002)
    resolve = {"type": "resolve", "node_id": b, "requester_id": a}
    assert "private" in h.call(a, resolve)["error"]
    # a alone reporting trust is not enough (E-REG-2) ...
    assert h.call(a, {"type": "report_trust", "node_id": a, "peer_id": b})["trusted"] is False
    assert "private" in h.call(a, resolve)["error"]
    assert h.raw({"type": "check_trust", "node_id": a, "peer_id": b})["trusted"] is False
    # ... b's consent completes the pair
    assert h.call(b, {"type": "report_trust", "node_id": b, "peer_id": a})["trusted"] is True
    assert [e for e in h.events() if isinstance(e, TrustChanged)] == [TrustChanged(a, b, True)]
    assert h.call(a, resolve)["real_addr"] == "127.0.0.1:4002"
    assert h.raw({"type": "check_trust", "node_id": b, "peer_id": a})["trusted"] is True


@pytest.mark.req("SEC-019")
def test_revocation_by_either_side_ends_the_pair(h: Harness) -> None:
    a, b = h.register(1), h.register(2)
    h.call(a, {"type": "report_trust", "node_id": a, "peer_id": b})
    h.call(b, {"type": "report_trust", "node_id": b, "peer_id": a})
    assert h.reg.trusted(a, b)
    assert h.call(b, {"type": "revoke_trust", "node_id": b, "peer_id": a})["type"] == "revoke_trust_ok"
    assert not h.reg.trusted(a, b)
    assert "private" in h.call(a, {"type": "resolve", "node_id": b, "requester_id": a})["error"]
    assert "no trust pair" in h.call(a, {"type": "revoke_trust", "node_id": a, "peer_id": b})["error"]


@pytest.mark.req("SEC-015", "SEC-018", "SEC-020")
def test_relayed_handshake_request_and_approval(h: Harness) -> None:
    a, b = h.register(1), h.register(2)
    req = {"type": "request_handshake", "from_node_id": a, "to_node_id": b, "justification": "hi"}
    forged = h.signed(b, req)  # signed by the wrong key
    assert h.raw(forged)["error"] == "signature verification failed"
    assert h.call(a, req)["status"] == "delivered"
    assert "already pending" in h.call(a, req)["error"]
    polled = h.call(b, {"type": "poll_handshakes", "node_id": b})
    assert [r["from_node_id"] for r in polled["requests"]] == [a] and polled["requests"][0]["justification"] == "hi"
    assert not h.reg.trusted(a, b)  # waits for b's operator
    assert h.call(b, {"type": "respond_handshake", "node_id": b, "peer_id": a, "accept": True})["accept"] is True
    assert h.reg.trusted(a, b)
    back = h.call(a, {"type": "poll_handshakes", "node_id": a})
    assert back["responses"] == [{"from_node_id": b, "accept": True, "timestamp": int(h.now)}]


@pytest.mark.req("SEC-017", "SEC-022", "ENT-006")
def test_shared_network_lets_members_resolve() -> None:
    h = Harness(admin_token="s3cret")
    a, b = h.register(1), h.register(2)
    made = h.raw({"type": "create_network", "node_id": a, "name": "lab", "admin_token": "s3cret"})
    assert made["type"] == "create_network_ok"
    net = made["network_id"]
    assert (
        h.call(b, {"type": "join_network", "node_id": b, "network_id": net})["address"]
        == f"{net}:{net:04X}.0000.{b:04X}"
    )
    assert h.call(a, {"type": "resolve", "node_id": b, "requester_id": a})["type"] == "resolve_ok"
    assert h.raw({"type": "check_trust", "node_id": a, "peer_id": b})["trusted"] is True
    listing = h.raw({"type": "list_nodes", "network_id": net})
    assert {n["node_id"]: n.get("role") for n in listing["nodes"]} == {a: "owner", b: "member"}
    h.call(b, {"type": "leave_network", "node_id": b, "network_id": net})
    assert "private" in h.call(a, {"type": "resolve", "node_id": b, "requester_id": a})["error"]
    assert "admin token" in h.raw({"type": "create_network", "node_id": a, "name": "x", "admin_token": "nope"})["error"]


@pytest.mark.req("SEC-023")
def test_backbone_listing_refused(h: Harness) -> None:
    h.register(1)
    assert "not permitted" in h.raw({"type": "list_nodes", "network_id": 0})["error"]


def test_hostnames_unique_validated_and_private_by_default(h: Harness) -> None:
    a = h.register(1, hostname="alpha")
    b = h.register(2)
    assert h.reg.node(a).hostname == "alpha"  # type: ignore[union-attr]
    taken = h.call(b, {"type": "set_hostname", "node_id": b, "hostname": "alpha"})
    assert "already in use" in taken["error"]
    assert "invalid hostname" in h.call(b, {"type": "set_hostname", "node_id": b, "hostname": "Bad_Name"})["error"]
    assert "reserved" in h.call(b, {"type": "set_hostname", "node_id": b, "hostname": "localhost"})["error"]
    # a private node's name resolves for nobody else (same answer as an unknown name)
    assert h.raw({"type": "resolve_hostname", "hostname": "alpha"})["error"] == "hostname 'alpha' not found"
    h.call(a, {"type": "set_visibility", "node_id": a, "public": True})
    assert h.raw({"type": "resolve_hostname", "hostname": "alpha"})["node_id"] == a
    assert h.call(b, {"type": "set_hostname", "node_id": b, "hostname": "beta"})["hostname"] == "beta"
    dup = h.register(3, hostname="beta")
    assert h.reg.node(dup).hostname == ""  # type: ignore[union-attr]


@pytest.mark.req("CONS-004")
def test_every_write_needs_the_nodes_signature(h: Harness) -> None:
    a, b = h.register(1), h.register(2)
    for msg in (
        {"type": "heartbeat", "node_id": a},
        {"type": "set_hostname", "node_id": a, "hostname": "x"},
        {"type": "set_visibility", "node_id": a, "public": True},
        {"type": "report_trust", "node_id": a, "peer_id": b},
        {"type": "resolve", "node_id": a, "requester_id": a},
        {"type": "poll_handshakes", "node_id": a},
        {"type": "deregister", "node_id": a},
    ):
        before = h.reg.snapshot()
        unsigned = h.raw(dict(msg))
        assert unsigned["error"] == "signature required for authenticated node", msg
        by_b = h.raw(h.signed(b, dict(msg)))
        assert by_b["error"] == "signature verification failed", msg
        assert h.reg.snapshot() == before and h.records == []
        rejected = [e for e in h.events() if isinstance(e, InputRejected)]
        assert len(rejected) == 2 and rejected[0].error.code is ErrorCode.AUTH_REQUIRED
        assert rejected[1].error.code is ErrorCode.BAD_SIGNATURE and rejected[1].layer == "registry"
        assert h.call(a, dict(msg))["type"].endswith("_ok"), msg


@pytest.mark.req("CONS-005", "CONS-006")
def test_admin_token_writes_and_keyless_nodes() -> None:
    h = Harness(admin_token="tok")
    assert "requires public_key" in h.raw({"type": "register", "listen_addr": "127.0.0.1:1"})["error"]
    made = h.raw({"type": "register", "listen_addr": "127.0.0.1:1", "admin_token": "tok"})
    nid = made["node_id"]
    # a node without a key can only be changed with the admin token (CONS-006)
    assert "admin token is required" in h.raw({"type": "set_visibility", "node_id": nid, "public": True})["error"]
    wrong = h.raw({"type": "set_visibility", "node_id": nid, "public": True, "admin_token": "tok2"})
    assert "admin token is required" in wrong["error"]
    ok = h.raw({"type": "set_visibility", "node_id": nid, "public": True, "admin_token": "tok"})
    assert ok["type"] == "set_visibility_ok"
    # with no admin token configured, none is valid (an empty one included)
    h2 = Harness()
    assert (
        "requires public_key" in h2.raw({"type": "register", "listen_addr": "127.0.0.1:1", "admin_token": ""})["error"]
    )


def test_draft_signatures_cannot_be_replayed() -> None:
    h = Harness(Profile.DRAFT)
    a = h.register(1)
    hb = h.signed(a, {"type": "heartbeat", "node_id": a})
    assert h.raw(hb)["type"] == "heartbeat_ok"
    again = h.raw(hb)
    assert "not newer" in again["error"] and again["code"] == "replay"
    stale = h.signed(a, {"type": "heartbeat", "node_id": a})
    h.now += 1000
    assert "from the registry's clock" in h.raw(stale)["error"]
    tampered = {**h.signed(a, {"type": "heartbeat", "node_id": a}), "timestamp": int(h.now * 1000) + 5}
    assert h.raw(tampered)["error"] == "signature verification failed"
    # registration proves possession of the key: someone else's key cannot be registered
    codec = RegistryCodec(Profile.DRAFT)
    codec.identity = ident(2)
    stolen = codec.sign({"type": "register", "listen_addr": "127.0.0.1:9",
                         "public_key": base64.b64encode(ident(1).public_bytes).decode()}, h.now)  # fmt: skip
    assert h.raw(stolen)["error"] == "signature verification failed"
    assert h.reg.node(a).listen_addr == "127.0.0.1:4000"  # type: ignore[union-attr]


def test_go_interop_accepts_gos_fixed_challenges_and_unsigned_registration() -> None:
    h = Harness(Profile.GO_INTEROP)
    key = base64.b64encode(ident(1).public_bytes).decode()
    reply = h.raw({"type": "register", "listen_addr": "127.0.0.1:1", "public_key": key})
    nid = reply["node_id"]
    sig = base64.b64encode(ident(1).sign(f"heartbeat:{nid}".encode())).decode()
    assert h.raw({"type": "heartbeat", "node_id": nid, "signature": sig})["type"] == "heartbeat_ok"
    assert h.raw({"type": "heartbeat", "node_id": nid, "signature": sig})["type"] == "heartbeat_ok"  # replayable


def test_owner_name_never_moves_a_node_id() -> None:
    h = Harness(Profile.GO_INTEROP)
    a = h.register(1, owner="alice@example.com")
    b = h.register(2, owner="alice@example.com")  # a new key claiming the same owner (Go gives it node a)
    assert b != a and "owner already bound" in h.last["owner_error"]
    assert h.reg.node(a).public_key == ident(1).public_bytes  # type: ignore[union-attr]
    assert h.reg.node(b).owner == ""  # type: ignore[union-attr]


def test_deregister_and_reregister_keep_id_but_drop_hostname_and_networks() -> None:
    h = Harness(admin_token="t")
    a = h.register(1, hostname="alpha")
    net = h.raw({"type": "create_network", "node_id": a, "name": "lab", "admin_token": "t"})["network_id"]
    assert h.call(a, {"type": "deregister", "node_id": a})["type"] == "deregister_ok"
    assert "not found" in h.raw({"type": "lookup", "node_id": a})["error"]
    assert h.raw({"type": "deregister", "node_id": a})["type"] == "deregister_ok"  # idempotent
    assert h.register(1) == a
    info = h.reg.node(a)
    assert info is not None and info.hostname == "" and info.networks == (0,)
    assert h.reg.network(net).members == ()  # type: ignore[union-attr]


def test_heartbeats_keep_nodes_alive_and_silence_reaps_them(h: Harness) -> None:
    a, b = h.register(1, hostname="alpha"), h.register(2)
    records = []
    for _ in range(5):
        h.now += 50
        assert h.call(a, {"type": "heartbeat", "node_id": a})["type"] == "heartbeat_ok"
        assert h.records == []  # heartbeats are soft state
        h.reg.handle_timer(h.now)
        records += h.reg.records_to_persist()
    assert h.reg.node(b).live is False and h.reg.node(a).live is True  # type: ignore[union-attr]
    reaped = [e for e in h.events() if isinstance(e, NodeReaped)]
    assert [e.node_id for e in reaped] == [b]
    assert [(r["node"]["id"], r["node"]["live"]) for r in records if r["op"] == "node"] == [(b, False)]
    assert [r["entry"]["action"] for r in records if r["op"] == "audit"] == ["node.reaped"]
    assert h.reg.get_timer() is not None and h.reg.get_timer() > h.now  # type: ignore[operator]
    assert h.register(2) == b


def test_punch_respects_privacy(h: Harness) -> None:
    a, b = h.register(1, 4001), h.register(2, 4002)
    punch = {"type": "punch", "requester_id": a, "node_a": a, "node_b": b}
    assert "private" in h.call(a, punch)["error"]
    h.call(b, {"type": "set_visibility", "node_id": b, "public": True})
    assert h.call(a, punch)["node_b_addr"] == "127.0.0.1:4002"


@pytest.mark.req("SEC-024")
def test_rate_limit_per_source_and_bounded_table() -> None:
    h = Harness(rate=1.0, burst=3.0, max_sources=2)
    got = [h.raw({"type": "list_networks"})["type"] for _ in range(4)]
    assert got == ["list_networks_ok"] * 3 + ["error"]
    assert h.raw({"type": "list_networks"}, "127.0.0.2:1")["type"] == "list_networks_ok"  # another host
    h.now += 1.0
    assert h.raw({"type": "list_networks"})["type"] == "list_networks_ok"  # refilled
    h.raw({"type": "list_networks"}, "127.0.0.3:1")
    assert len(h.reg._buckets) == 2


@pytest.mark.req("REPL-008")
def test_standby_refuses_writes_serves_reads() -> None:
    h = Harness(standby=True)
    assert "use primary" in h.raw({"type": "register", "listen_addr": "127.0.0.1:1"})["error"]
    assert h.raw({"type": "list_networks"})["type"] == "list_networks_ok"


def test_tables_are_bounded() -> None:
    h = Harness(max_nodes=2, max_trust_per_node=1, max_handshake_inbox=1)
    a, b = h.register(1), h.register(2)
    codec = RegistryCodec()
    full = h.raw(codec.sign(codec.register_msg(ident(3), "127.0.0.1:1"), h.now))
    assert full["code"] == "table_full"
    assert h.register(1) == a  # a known key still comes back
    h.call(a, {"type": "report_trust", "node_id": a, "peer_id": b})
    h2 = Harness(max_trust_per_node=1)
    x, y, z = h2.register(1), h2.register(2), h2.register(3)
    h2.call(x, {"type": "report_trust", "node_id": x, "peer_id": y})
    assert "too many trust reports" in h2.call(x, {"type": "report_trust", "node_id": x, "peer_id": z})["error"]


@pytest.mark.parametrize(
    "msg",
    [
        [1, 2],
        "register",
        {"no": "type"},
        {"type": 7},
        {"type": "nope"},
        {"type": "lookup"},
        {"type": "lookup", "node_id": -1},
        {"type": "lookup", "node_id": True},
        {"type": "lookup", "node_id": 1 << 32},
        {"type": "register", "listen_addr": "nohost", "public_key": "AAAA"},
        {"type": "register", "listen_addr": "127.0.0.1:0", "public_key": base64.b64encode(b"k" * 32).decode()},
        {"type": "register", "listen_addr": "127.0.0.1:1", "public_key": "!!!"},
        {"type": "register", "listen_addr": "127.0.0.1:1", "public_key": base64.b64encode(b"k" * 31).decode()},
        {"type": "register", "listen_addr": 5},
        {"type": "resolve_hostname", "hostname": ""},
        {"type": "set_visibility", "node_id": 4, "public": "yes"},
    ],
)
def test_bad_requests_get_one_error_and_change_nothing(h: Harness, msg: Any) -> None:
    if h.reg.node(4) is None:
        h.register(1)
        h.events()
    before = h.reg.snapshot()
    reply = h.raw(msg)
    assert reply["type"] == "error" and reply["error"]
    assert h.reg.snapshot() == before and h.records == []
    evs = h.events()
    assert len(evs) == 1 and isinstance(evs[0], InputRejected)


def test_restore_rebuilds_the_same_state(h: Harness) -> None:
    a, b = h.register(1, hostname="alpha"), h.register(2)
    h.call(a, {"type": "report_trust", "node_id": a, "peer_id": b})
    h.call(b, {"type": "report_trust", "node_id": b, "peer_id": a})
    h.call(a, {"type": "set_visibility", "node_id": a, "public": True})
    journal: list[dict[str, Any]] = []
    # re-run the same history capturing every record
    h2 = Harness(h.profile)
    for n, kw in ((1, {"hostname": "alpha"}), (2, {})):
        h2.register(n, **kw)
        journal += h2.records
    for node, msg in ((a, {"type": "report_trust", "node_id": a, "peer_id": b}),
                      (b, {"type": "report_trust", "node_id": b, "peer_id": a}),
                      (a, {"type": "set_visibility", "node_id": a, "public": True})):  # fmt: skip
        h2.call(node, msg)
        journal += h2.records
    fresh = Registry(RegistryConfig.for_profile(h.profile), now=T0)
    assert fresh.restore(journal, h2.now) == len(journal)
    assert fresh.nodes() == h2.reg.nodes()
    assert fresh.trusted(a, b)
    again = Registry(RegistryConfig.for_profile(h.profile), now=T0)
    again.restore([fresh.snapshot()], h2.now)
    assert again.snapshot() == fresh.snapshot()


def _lab(h: Harness, *nodes: int) -> int:
    """A network 'lab' created by ``nodes[0]`` (owner) and joined by the rest."""
    made = h.raw({"type": "create_network", "node_id": nodes[0], "name": "lab", "admin_token": "t"})
    net = int(made["network_id"])
    for n in nodes[1:]:
        assert h.call(n, {"type": "join_network", "node_id": n, "network_id": net})["type"] == "join_network_ok"
    return net


@pytest.mark.req("ENT-001", "ENT-002", "ENT-003", "ENT-004", "ENT-005", "ENT-006")
def test_roles_gate_network_operations() -> None:
    h = Harness(Profile.DRAFT, admin_token="t")
    owner, adm, mem, other = h.register(1), h.register(2), h.register(3), h.register(4)
    net = _lab(h, owner, adm, mem, other)
    op = {"network_id": net}

    def role(n: int) -> str:
        return str(h.raw({"type": "get_member_role", "network_id": net, "target_node_id": n})["role"])

    assert role(owner) == "owner" and role(mem) == "member"
    # a member may list members but not manage them
    assert {n["node_id"] for n in h.raw({"type": "list_nodes", "network_id": net})["nodes"]} == {owner, adm, mem, other}
    refused = h.call(mem, {"type": "kick_member", "node_id": mem, "target_node_id": other, **op})
    assert "has role member" in refused["error"] and "needs admin" in refused["error"]
    assert "needs admin" in h.call(mem, {"type": "set_network_policy", "node_id": mem, "max_members": 9, **op})["error"]
    # claiming to be the owner without the owner's signature gets nowhere (E-REG-10)
    forged = h.signed(mem, {"type": "promote_member", "node_id": owner, "target_node_id": mem, **op})
    assert h.raw(forged)["error"] == "signature verification failed"
    assert h.call(owner, {"type": "promote_member", "node_id": owner, "target_node_id": adm, **op})["role"] == "admin"
    assert role(adm) == "admin"
    # an admin manages members (draft 18.1: promote/demote too) but cannot delete or transfer
    assert h.call(adm, {"type": "promote_member", "node_id": adm, "target_node_id": mem, **op})["type"].endswith("_ok")
    assert h.call(adm, {"type": "demote_member", "node_id": adm, "target_node_id": mem, **op})["role"] == "member"
    assert (
        h.call(adm, {"type": "kick_member", "node_id": adm, "target_node_id": other, **op})["type"] == "kick_member_ok"
    )
    assert net not in h.reg.node(other).networks  # type: ignore[union-attr]
    assert "cannot kick the network owner" in h.call(adm, {"type": "kick_member", "node_id": adm,
                                                           "target_node_id": owner, **op})["error"]  # fmt: skip
    assert "needs owner" in h.call(adm, {"type": "delete_network", "node_id": adm, **op})["error"]
    assert (
        "needs owner" in h.call(adm, {"type": "transfer_ownership", "node_id": adm, "new_owner_id": adm, **op})["error"]
    )
    assert "transfer ownership first" in h.call(owner, {"type": "leave_network", "node_id": owner, **op})["error"]
    # the owner transfers (and becomes admin), the new owner deletes
    h.call(owner, {"type": "transfer_ownership", "node_id": owner, "new_owner_id": adm, **op})
    assert (role(owner), role(adm)) == ("admin", "owner")
    assert h.call(adm, {"type": "delete_network", "node_id": adm, **op})["type"] == "delete_network_ok"
    assert h.reg.network(net) is None and all(n.networks == (0,) for n in h.reg.nodes())


def test_go_interop_lets_only_the_owner_promote() -> None:
    h = Harness(Profile.GO_INTEROP, admin_token="t")
    owner, adm, mem = h.register(1), h.register(2), h.register(3)
    net = _lab(h, owner, adm, mem)
    h.call(owner, {"type": "promote_member", "node_id": owner, "network_id": net, "target_node_id": adm})
    refused = h.call(adm, {"type": "promote_member", "node_id": adm, "network_id": net, "target_node_id": mem})
    assert "needs owner" in refused["error"]
    by_token = h.raw({"type": "promote_member", "network_id": net, "target_node_id": mem, "admin_token": "t"})
    assert by_token["role"] == "admin"


@pytest.mark.req("ENT-007", "ENT-008", "ENT-009")
def test_network_policy_limits_members() -> None:
    h = Harness(admin_token="t")
    owner, a, b = h.register(1), h.register(2), h.register(3)
    net = _lab(h, owner, a)
    pol = {"type": "set_network_policy", "node_id": owner, "network_id": net}
    assert "already has 2 members" in h.call(owner, {**pol, "max_members": 1})["error"]
    set_ok = h.call(owner, {**pol, "max_members": 2, "allowed_ports": [7, 1001, 7], "description": "lab"})
    assert (set_ok["max_members"], set_ok["allowed_ports"]) == (2, [7, 1001])
    assert "allowed_ports" in h.call(owner, {**pol, "allowed_ports": [0]})["error"]
    full = h.call(b, {"type": "join_network", "node_id": b, "network_id": net})
    assert full["error"] == "network membership limit reached"
    got = h.raw({"type": "get_network_policy", "network_id": net})
    assert got["max_members"] == 2 and got["description"] == "lab"


def test_backbone_policy_is_empty_not_unknown() -> None:
    """Every node's lookup lists network 0; a Go head daemon then asks for its policy at startup (E-GH-2)."""
    h = Harness()
    h.register(1)
    got = h.raw({"type": "get_network_policy", "network_id": 0})
    assert got == {"type": "get_network_policy_ok", "network_id": 0, "max_members": 0, "allowed_ports": [],
                   "description": ""}  # fmt: skip
    assert "not found" in h.raw({"type": "get_network_policy", "network_id": 4242})["error"]


@pytest.mark.req("ENT-011", "ENT-012")
def test_audit_log_records_actor_action_and_old_new() -> None:
    h = Harness(admin_token="t", max_audit=6)
    a, b = h.register(1), h.register(2)
    h.call(a, {"type": "set_hostname", "node_id": a, "hostname": "alpha"})
    h.call(a, {"type": "set_hostname", "node_id": a, "hostname": "alef"})
    h.call(a, {"type": "report_trust", "node_id": a, "peer_id": b})
    h.call(b, {"type": "report_trust", "node_id": b, "peer_id": a})
    log = h.raw({"type": "get_audit_log", "admin_token": "t"})
    actions = [(e["action"], e["actor"]) for e in log["entries"]]
    # seven entries were written; the ring buffer of six dropped the first registration
    assert actions == [("node.registered", b), ("hostname.changed", a), ("hostname.changed", a),
                       ("trust.consented", a), ("trust.consented", b), ("trust.created", b)]  # fmt: skip
    change = next(e for e in h.reg.audit_log() if e["action"] == "hostname.changed" and e["new"] == "alef")
    assert change["actor"] == a and change["old"] == "alpha" and change["ts"] == pytest.approx(h.now, abs=1)
    assert "admin token" in h.raw({"type": "get_audit_log"})["error"]


def test_draft_signature_covers_every_field() -> None:
    h = Harness(Profile.DRAFT)
    a = h.register(1)
    signed = h.signed(a, {"type": "set_hostname", "node_id": a, "hostname": "mine"})
    assert h.raw({**signed, "hostname": "theirs"})["error"] == "signature verification failed"
    assert h.raw(signed)["hostname"] == "mine"
    g = Harness(Profile.GO_INTEROP)  # Go's fixed strings leave the value unsigned (E-REG-3)
    b = g.register(1)
    signed = g.signed(b, {"type": "set_hostname", "node_id": b, "hostname": "mine"})
    assert g.raw({**signed, "hostname": "theirs"})["hostname"] == "theirs"


def test_rotate_key_needs_both_keys_and_binds_the_new_one(h: Harness) -> None:
    a, b = h.register(1), h.register(2)
    codec = h.codecs[a]
    new = ident(9)
    msg = codec.rotate_msg(new, h.now)
    # the new key's proof alone, or a proof by another key, is refused; so is someone else's key
    assert h.raw(dict(msg))["error"] == "signature required for authenticated node"
    wrong = {**msg, "new_signature": base64.b64encode(ident(8).sign(b"rotate:x")).decode()}
    assert h.raw(h.signed(a, wrong))["error"] == "new_signature verification failed"
    taken = codec.rotate_msg(ident(2), h.now)
    assert "already node" in h.raw(h.signed(a, taken))["error"]
    # a signature for one new key cannot install another (Go's "rotate:<n>" would)
    signed = h.signed(a, msg)
    swapped = {**signed, "new_public_key": base64.b64encode(ident(7).public_bytes).decode()}
    assert h.raw(swapped)["error"] in ("signature verification failed", "new_signature verification failed")
    assert h.raw(signed)["type"] == "rotate_key_ok"
    assert h.reg.node(a).public_key == new.public_bytes  # type: ignore[union-attr]
    codec.identity = new
    assert h.call(a, {"type": "heartbeat", "node_id": a})["type"] == "heartbeat_ok"  # the new key signs now
    assert h.register(9) == a and h.register(1) not in (a, b)  # the old key is just a new node
    assert "key.rotated" in [e["action"] for e in h.reg.audit_log()]


CORE = ("state", "rules", "networks", "challenges")
IO_MODULES = {"socket", "time", "random", "secrets", "os", "threading", "asyncio", "ssl", "select", "subprocess"}


@pytest.mark.parametrize("module", CORE)
def test_the_registry_core_imports_no_io_clock_or_randomness(module: str) -> None:
    """The sans-IO rule for the registry core: its modules import nothing that does I/O or reads a clock."""
    import ast
    import importlib

    path = importlib.import_module(f"pilot_proto.registry.{module}").__file__
    assert path is not None
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not names & IO_MODULES, names & IO_MODULES
    inner = {(n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in inner if m.startswith("pilot_proto.") and m.split(".")[-1] in
                ("server", "store", "client", "replication", "tls", "drivers")}  # fmt: skip
