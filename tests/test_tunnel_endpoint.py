"""The sans-IO tunnel endpoint: key exchange, sessions, re-keying, downgrade and plaintext policy (draft 7, 10, 11)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pilot_proto.errors import ErrorCode, LocalProtocolError
from pilot_proto.profile import Profile
from pilot_proto.sansio import drain
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity, insecure_test_x25519
from pilot_proto.tunnel import (
    Event,
    InputRejected,
    KeyEstablished,
    KeyExchangeFailed,
    PacketReceived,
    Rekeyed,
    TunnelConfig,
    TunnelEndpoint,
)
from pilot_proto.tunnel.peer import KeyState
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import KeyExchangeFrame, encode_frame
from pilot_proto.wire.header import Packet, PacketProtocol, encode_packet

A, B = 1, 2
ADDR = {A: ("127.0.0.1", 1001), B: ("127.0.0.1", 1002)}
FAST = settings(max_examples=40, derandomize=True, deadline=None)


def feed(ep: TunnelEndpoint, data: bytes, addr: object, now: float) -> list[Event]:
    """Push one datagram, pull every event it caused."""
    ep.receive_datagram(data, addr, now)
    return drain(ep)


def tick(ep: TunnelEndpoint, now: float) -> list[Event]:
    """Fire the timer, pull every event it caused."""
    ep.handle_timer(now)
    return drain(ep)


def _pkt(src: int, dst: int, payload: bytes = b"p", seq: int = 0) -> Packet:
    return Packet(0, PacketProtocol.DATAGRAM, Addr(0, src), Addr(0, dst), 1000, 1001, seq=seq, payload=payload)


class Net:
    """Two endpoints wired back to back; records every datagram."""

    def __init__(
        self,
        cfg: TunnelConfig | None = None,
        *,
        ident_a: bool = True,
        ident_b: bool = True,
        cfg_b: TunnelConfig | None = None,
        seed: str = "net",
    ) -> None:
        cfg = cfg or TunnelConfig.for_profile("draft")
        keys = {A: insecure_test_identity(A).public_bytes, B: insecure_test_identity(B).public_bytes}
        self.ep = {
            A: self._make(A, cfg, ident_a, keys, seed),
            B: self._make(B, cfg_b or cfg, ident_b, keys, seed),
        }
        self.ep[A].add_peer(B, ADDR[B])
        self.ep[B].add_peer(A, ADDR[A])
        self.wire: list[tuple[int, bytes]] = []  # (from node, datagram)
        self.events: dict[int, list[Event]] = {A: [], B: []}
        self.drop_from: set[int] = set()

    @staticmethod
    def _make(node: int, cfg: TunnelConfig, ident: bool, keys: dict[int, bytes], seed: str) -> TunnelEndpoint:
        known = {k: v for k, v in keys.items() if ident or k == node} if ident else {}
        return TunnelEndpoint(
            node,
            InsecureDeterministicRng(f"{seed}/{node}"),
            identity=insecure_test_identity(node) if ident else None,
            config=cfg,
            peer_keys={k: v for k, v in keys.items() if k != node} if ident else known,
        )

    def pump(self, now: float = 0.0) -> None:
        for _ in range(50):
            moved = False
            for src, dst in ((A, B), (B, A)):
                for data, _addr in self.ep[src].datagrams_to_send():
                    moved = True
                    self.wire.append((src, data))
                    if src not in self.drop_from:
                        self.events[dst] += feed(self.ep[dst], data, ADDR[src], now)
            if not moved:
                return
        raise AssertionError("datagrams kept flowing")

    def of(self, node: int, kind: type) -> list[Event]:
        return [e for e in self.events[node] if isinstance(e, kind)]


@pytest.mark.req("SEC-011", "TUN-021", "SEC-005")
def test_pila_handshake_then_pils_both_ways() -> None:
    net = Net()
    net.ep[A].send(B, _pkt(A, B, b"hi"), 0.0)
    net.pump()
    assert [len(d) for _, d in net.wire[:2]] == [136, 136]  # PILA each way
    assert [d[:4] for _, d in net.wire] == [b"PILA", b"PILA", b"PILS"]
    assert net.of(A, KeyEstablished) == [KeyEstablished(B, True, ADDR[B])]
    (got,) = net.of(B, PacketReceived)
    assert isinstance(got, PacketReceived) and got.packet.payload == b"hi" and got.encrypted
    net.ep[B].send(A, _pkt(B, A, b"back"), 1.0)
    net.pump()
    assert net.wire[-1][1][:4] == b"PILS"
    assert [e.packet.payload for e in net.of(A, PacketReceived)] == [b"back"]  # type: ignore[attr-defined]


@pytest.mark.req("TUN-016", "TUN-017", "TUN-021", "TUN-022")
def test_pilk_without_identities() -> None:
    net = Net(ident_a=False, ident_b=False)
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    assert [d[:4] for _, d in net.wire] == [b"PILK", b"PILK", b"PILS"]
    assert net.of(B, KeyEstablished) == [KeyEstablished(A, False, ADDR[A])]


@pytest.mark.req("NONCE-003")
@pytest.mark.parametrize(("profile", "first"), [(Profile.DRAFT, 0), (Profile.GO_INTEROP, 1)])
def test_first_counter_follows_profile(profile: Profile, first: int) -> None:
    net = Net(TunnelConfig.for_profile(profile))
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    pils = [d for _, d in net.wire if d[:4] == b"PILS"]
    assert int.from_bytes(pils[0][12:20], "big") == first


@pytest.mark.req("SEC-011", "NONCE-005")
def test_simultaneous_key_exchange_converges_on_one_key() -> None:
    net = Net()
    net.ep[A].send(B, _pkt(A, B, b"a"), 0.0)
    net.ep[B].send(A, _pkt(B, A, b"b"), 0.0)
    net.pump()
    sa, sb = net.ep[A].peers[B].active, net.ep[B].peers[A].active
    assert sa is not None and sb is not None
    assert sa.cipher.fingerprint == sb.cipher.fingerprint
    assert len(net.ep[A].peers[B].sessions) == 1 and len(net.ep[B].peers[A].sessions) == 1
    assert [e.packet.payload for e in net.of(A, PacketReceived)] == [b"b"]  # type: ignore[attr-defined]
    assert [e.packet.payload for e in net.of(B, PacketReceived)] == [b"a"]  # type: ignore[attr-defined]


@pytest.mark.req("NONCE-005", "CONS-013")
def test_peer_restart_with_new_key_starts_a_new_session_and_window() -> None:
    net = Net()
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    old = net.ep[B].peers[A].active
    # A restarts: fresh endpoint, fresh RNG stream, same identity
    net.ep[A] = Net._make(A, TunnelConfig.for_profile("draft"), True, {B: insecure_test_identity(B).public_bytes}, "r")
    net.ep[A].add_peer(B, ADDR[B])
    net.ep[A].send(B, _pkt(A, B, b"after restart"), 5.0)
    net.pump(5.0)
    new = net.ep[B].peers[A].active
    assert new is not None and old is not None and new is not old
    assert new.cipher.fingerprint != old.cipher.fingerprint
    assert any(isinstance(e, Rekeyed) for e in net.events[B])
    assert net.of(B, PacketReceived)[-1].packet.payload == b"after restart"  # type: ignore[attr-defined]
    assert new.opener.windows != old.opener.windows


@pytest.mark.req("NONCE-006", "CONS-011", "CONS-009", "NONCE-004", "CONS-010")
def test_rekey_before_the_injected_counter_limit() -> None:
    cfg = TunnelConfig.for_profile("draft", counter_limit=6, rekey_margin=2)
    net = Net(cfg)
    for i in range(20):
        net.ep[A].send(B, _pkt(A, B, bytes([i])), float(i))
        net.pump(float(i))
    payloads = [e.packet.payload for e in net.of(B, PacketReceived)]  # type: ignore[attr-defined]
    assert payloads == [bytes([i]) for i in range(20)]  # nothing lost across re-keys
    assert len(net.of(B, Rekeyed)) >= 3
    # every PILS A sent used a nonce at most once per key, and never counter >= limit
    for src, d in net.wire:
        if src == A and d[:4] == b"PILS":
            assert int.from_bytes(d[12:20], "big") < 6
    for s in net.ep[A].peers[B].sessions:
        assert s.sealer.counter <= 6


@pytest.mark.req("CONS-009", "NONCE-004", "NONCE-005")
@FAST
@given(st.lists(st.sampled_from(["a", "b", "rekey-a", "rekey-b"]), min_size=1, max_size=30), st.integers(3, 9))
def test_no_key_nonce_pair_is_ever_used_twice(ops: list[str], limit: int) -> None:
    # keep every session so each frame on the wire can be traced to the key that sealed it
    cfg = TunnelConfig.for_profile("draft", counter_limit=limit, rekey_margin=1, max_old_sessions=10_000)
    net = Net(cfg, seed=f"prop{limit}")
    for i, op in enumerate(ops):
        t = i / 100
        if op == "a":
            net.ep[A].send(B, _pkt(A, B), t)
        elif op == "b":
            net.ep[B].send(A, _pkt(B, A), t)
        else:
            node, peer = (A, B) if op == "rekey-a" else (B, A)
            net.ep[node].rekey(peer, t)
        net.pump(t)
    pairs = []
    for src, d in net.wire:
        if d[:4] != b"PILS":
            continue
        dst = B if src == A else A
        owners = [s for s in net.ep[src].peers[dst].sessions if s.sealer.prefix == d[8:12]]
        assert len(owners) == 1
        assert int.from_bytes(d[12:20], "big") < limit
        pairs.append((owners[0].cipher.fingerprint, d[8:20]))
    assert len(pairs) == len(set(pairs))
    assert len({n for _, n in pairs}) == len(pairs)  # even across directions sharing a key (role bit, E-NONCE-3)


@pytest.mark.req("SEC-029")
def test_pilk_after_pila_is_a_refused_downgrade() -> None:
    net = Net()
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    peer = net.ep[B].peers[A]
    before = (peer.active, len(peer.sessions))
    pilk = encode_frame(KeyExchangeFrame(A, insecure_test_x25519("mitm").public_key().public_bytes_raw()))
    (ev,) = feed(net.ep[B], pilk, ("6.6.6.6", 1), 1.0)
    assert isinstance(ev, InputRejected) and ev.code is ErrorCode.AUTH_REQUIRED and ev.error.requirement == "SEC-029"
    assert (peer.active, len(peer.sessions)) == before and net.ep[B].datagrams_to_send() == []
    assert peer.address == ADDR[A]


@pytest.mark.req("SEC-029", "CONS-003")
def test_pilk_claiming_a_node_with_known_identity_is_refused() -> None:
    ep = TunnelEndpoint(B, InsecureDeterministicRng("x"), peer_keys={A: insecure_test_identity(A).public_bytes})
    pilk = encode_frame(KeyExchangeFrame(A, insecure_test_x25519("mitm").public_key().public_bytes_raw()))
    (ev,) = feed(ep, pilk, ("6.6.6.6", 1), 0.0)
    assert isinstance(ev, InputRejected) and ev.code is ErrorCode.AUTH_REQUIRED
    assert A not in ep.peers
    allowed = TunnelEndpoint(
        B,
        InsecureDeterministicRng("x"),
        peer_keys={A: insecure_test_identity(A).public_bytes},
        config=TunnelConfig.for_profile("draft", require_pila_from_known=False),
    )
    assert isinstance(feed(allowed, pilk, ("6.6.6.6", 1), 0.0)[0], KeyEstablished)


@pytest.mark.req("TUN-019", "TUN-020")
def test_pila_from_unknown_node_is_refused_without_state() -> None:
    ep = TunnelEndpoint(B, InsecureDeterministicRng("x"), identity=insecure_test_identity(B))
    pila = encode_frame(
        Net._make(A, TunnelConfig(), True, {}, "s").identity.auth_kex_frame(  # type: ignore[union-attr]
            insecure_test_x25519(1).public_key().public_bytes_raw()
        )
    )
    (ev,) = feed(ep, pila, ADDR[A], 0.0)
    assert isinstance(ev, InputRejected) and ev.code is ErrorCode.UNKNOWN_IDENTITY
    assert ep.peers == {} and ep.datagrams_to_send() == []


@pytest.mark.req("SEC-028")
def test_low_order_key_in_pilk_leaves_no_trace() -> None:
    ep = TunnelEndpoint(B, InsecureDeterministicRng("x"))
    (ev,) = feed(ep, encode_frame(KeyExchangeFrame(A, bytes(32))), ADDR[A], 0.0)
    assert isinstance(ev, InputRejected) and ev.code is ErrorCode.BAD_PUBLIC_KEY
    assert ep.peers == {} and ep.datagrams_to_send() == []


@pytest.mark.req("TUN-012")
def test_pils_from_unknown_sender_is_rejected() -> None:
    net = Net()
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    pils = next(d for s, d in net.wire if d[:4] == b"PILS")
    stranger = TunnelEndpoint(9, InsecureDeterministicRng("s"))
    (ev,) = feed(stranger, pils, ADDR[A], 0.0)
    assert isinstance(ev, InputRejected) and ev.code is ErrorCode.NO_SESSION_KEY and ev.peer == A


@pytest.mark.req("CONS-016", "CONS-019")
def test_replayed_pils_is_rejected_at_the_endpoint() -> None:
    net = Net()
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    pils = next(d for s, d in net.wire if d[:4] == b"PILS")
    (ev,) = feed(net.ep[B], pils, ("6.6.6.6", 9), 1.0)
    assert isinstance(ev, InputRejected) and ev.code is ErrorCode.REPLAY
    assert net.ep[B].peers[A].address == ADDR[A]  # a replay from elsewhere does not move the peer


def _state(ep: TunnelEndpoint) -> object:
    return {
        n: (
            p.address,
            p.state,
            p.authenticated_once,
            p.plaintext_mode,
            tuple(p.pending),
            tuple((s.cipher.fingerprint, s.sealer.counter, s.opener.snapshot()) for s in p.sessions),
            p.offer_public,
        )
        for n, p in ep.peers.items()
    }


@pytest.mark.req("CONS-019", "SEC-005", "SEC-027")
@FAST
@given(
    st.lists(
        st.tuples(st.sampled_from([b"PILS", b"PILK", b"PILA", b"PILT", b"PILP", b"\x01XYZ"]), st.binary(max_size=160)),
        max_size=15,
    )
)
def test_arbitrary_forged_datagrams_never_change_state(frames: list[tuple[bytes, bytes]]) -> None:
    net = Net()
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    before = _state(net.ep[B])
    for magic, body in frames:
        events = feed(net.ep[B], magic + A.to_bytes(4, "big") + body, ("6.6.6.6", 1), 1.0)
        assert all(isinstance(e, InputRejected) for e in events)
        if magic != b"PILP":
            assert events, "a forged datagram must be reported"
        feed(net.ep[B], magic + body, ("6.6.6.6", 1), 1.0)  # any sender (may open anonymous sessions)
    assert _state(net.ep[B])[A] == before[A]  # type: ignore[index]
    assert all(addr != ADDR[A] for _, addr in net.ep[B].datagrams_to_send())
    net.ep[A].send(B, _pkt(A, B, b"still works"), 2.0)
    net.pump(2.0)
    assert net.of(B, PacketReceived)[-1].packet.payload == b"still works"  # type: ignore[attr-defined]


@pytest.mark.req("SEC-005")
def test_plaintext_from_a_keyed_peer_is_refused() -> None:
    net = Net()
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    (ev,) = feed(net.ep[B], b"PILT" + encode_packet(_pkt(A, B)), ADDR[A], 1.0)
    assert isinstance(ev, InputRejected) and ev.code is ErrorCode.PLAINTEXT_REFUSED


@pytest.mark.req("SEC-005", "SEC-007")
def test_plaintext_needs_a_fallback_in_force_for_that_peer_and_its_address() -> None:
    """E-TNL-2: with encryption on, PILT is refused from anyone without a fallback, and from any other address."""
    pilt = b"PILT" + encode_packet(_pkt(A, B))
    fresh = TunnelEndpoint(B, InsecureDeterministicRng("f"))
    (ev,) = feed(fresh, pilt, ADDR[A], 1.0)
    assert isinstance(ev, InputRejected) and ev.code is ErrorCode.PLAINTEXT_REFUSED
    assert fresh.peers == {} and fresh.datagrams_to_send() == []
    fresh.add_peer(A, ADDR[A])
    fresh.allow_plaintext(A)
    (elsewhere,) = feed(fresh, pilt, ("6.6.6.6", 1), 1.0)
    assert isinstance(elsewhere, InputRejected) and elsewhere.code is ErrorCode.PLAINTEXT_REFUSED
    (ok,) = feed(fresh, pilt, ADDR[A], 1.0)
    assert isinstance(ok, PacketReceived) and not ok.encrypted
    off = TunnelEndpoint(B, InsecureDeterministicRng("o"), config=TunnelConfig.for_profile("draft", encryption=False))
    (plain,) = feed(off, pilt, ("6.6.6.6", 1), 1.0)
    assert isinstance(plain, PacketReceived)  # encryption off: PILT is all there is


@pytest.mark.req("SEC-007", "SEC-005")
def test_draft_falls_back_to_plaintext_after_retries_then_never_again_once_keyed() -> None:
    net = Net(TunnelConfig.for_profile("draft"))
    net.drop_from.add(A)  # B never hears A's key exchange
    net.ep[A].send(B, _pkt(A, B, b"q"), 0.0)
    net.pump()
    t = 0.0
    events: list[Event] = []
    while (timer := net.ep[A].get_timer()) is not None:
        t = timer
        events += tick(net.ep[A], t)
        net.pump(t)
    assert events == [KeyExchangeFailed(B, fallback=True, dropped=0)]
    kex = [d for s, d in net.wire if s == A and d[:4] == b"PILA"]
    assert len(kex) == 1 + net.ep[A].config.kex_retries
    assert net.wire[-1][1][:4] == b"PILT"  # the queued packet went out in plaintext
    assert net.ep[A].peers[B].state is KeyState.PLAINTEXT
    # later a key exchange succeeds: from then on only PILS
    net.drop_from.clear()
    net.ep[B].send(A, _pkt(B, A), t + 1)
    net.pump(t + 1)
    mark = len(net.wire)
    for i in range(3):
        net.ep[A].send(B, _pkt(A, B, bytes([i])), t + 2)
    net.pump(t + 2)
    assert all(d[:4] == b"PILS" for s, d in net.wire[mark:] if s == A)


@pytest.mark.req("SEC-007")
def test_go_interop_never_falls_back_to_plaintext() -> None:
    net = Net(TunnelConfig.for_profile("go-interop"))
    net.drop_from.add(A)
    net.ep[A].send(B, _pkt(A, B), 0.0)
    events: list[Event] = []
    while (timer := net.ep[A].get_timer()) is not None:
        events += tick(net.ep[A], timer)
        net.pump(timer)
    assert events == [KeyExchangeFailed(B, fallback=False, dropped=1)]
    assert not any(d[:4] == b"PILT" for _, d in net.wire)


@pytest.mark.req("SEC-003")
def test_encryption_can_be_switched_off_explicitly() -> None:
    assert TunnelConfig.for_profile("draft").encryption is True
    net = Net(TunnelConfig.for_profile("draft", encryption=False))
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    assert [d[:4] for _, d in net.wire] == [b"PILT"]


@pytest.mark.req("SEC-004", "NONCE-002")
def test_shared_x25519_key_mode_and_prefixes_from_the_injected_rng() -> None:
    cfg = TunnelConfig.for_profile("go-interop", ephemeral_per_session=False)
    net = Net(cfg)
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    first = net.ep[A].peers[B].active
    assert first is not None
    net.ep[A].rekey(B, 1.0)
    net.pump(1.0)
    # one X25519 key per endpoint: a re-key with the same keys gives the same AES key but a fresh prefix
    second = net.ep[A].peers[B].active
    assert second is not None and second is not first
    assert second.our_public == first.our_public and second.sealer.prefix != first.sealer.prefix
    assert second.sealer.counter >= cfg.counter_start


@pytest.mark.req("NONCE-002")
def test_prefix_role_bit_separates_directions() -> None:
    net = Net()
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    sa, sb = net.ep[A].peers[B].active, net.ep[B].peers[A].active
    assert sa is not None and sb is not None
    assert sa.sealer.prefix[0] & 0x80 == 0 and sb.sealer.prefix[0] & 0x80 == 0x80  # A < B


@pytest.mark.req("SEC-027")
def test_send_refuses_a_packet_with_a_foreign_source() -> None:
    net = Net()
    with pytest.raises(LocalProtocolError) as info:
        net.ep[A].send(B, _pkt(B, A), 0.0)
    assert info.value.code is ErrorCode.SENDER_MISMATCH
    with pytest.raises(LocalProtocolError):
        net.ep[A].send(77, _pkt(A, 77), 0.0)


@pytest.mark.req("TUN-012")
def test_many_peers_are_demultiplexed_by_sender() -> None:
    cfg = TunnelConfig.for_profile("draft")
    hub_id = 100
    spokes = list(range(200, 205))
    keys = {n: insecure_test_identity(n).public_bytes for n in [hub_id, *spokes]}
    hub = TunnelEndpoint(hub_id, InsecureDeterministicRng("hub"), identity=insecure_test_identity(hub_id),
                         config=cfg, peer_keys=keys)  # fmt: skip
    eps = {n: TunnelEndpoint(n, InsecureDeterministicRng(f"s{n}"), identity=insecure_test_identity(n), config=cfg,
                             peer_keys=keys) for n in spokes}  # fmt: skip
    got: list[Event] = []
    for n, ep in eps.items():
        ep.add_peer(hub_id, ("hub", 1))
        ep.send(hub_id, _pkt(n, hub_id, str(n).encode()), 0.0)
        for d, _ in ep.datagrams_to_send():
            got += feed(hub, d, ("spoke", n), 0.0)
        for d, _ in hub.datagrams_to_send():
            feed(ep, d, ("hub", 1), 0.0)
        for d, _ in ep.datagrams_to_send():
            got += feed(hub, d, ("spoke", n), 0.0)
    received = {e.peer: e.packet.payload for e in got if isinstance(e, PacketReceived)}
    assert received == {n: str(n).encode() for n in spokes}
    assert len({p.active.cipher.fingerprint for p in hub.peers.values() if p.active}) == len(spokes)


def test_config_for_profile_overrides() -> None:
    cfg = TunnelConfig.for_profile("go", counter_limit=9)
    assert (cfg.profile, cfg.counter_start, cfg.plaintext_fallback, cfg.counter_limit) == (
        Profile.GO_INTEROP,
        1,
        False,
        9,
    )
    assert dataclasses.replace(cfg, counter_start=0).counter_start == 0


@pytest.mark.req("NONCE-006", "NONCE-005")
def test_go_interop_holds_packets_while_a_rekey_is_unanswered() -> None:
    net = Net(TunnelConfig.for_profile("go-interop"))
    net.ep[A].send(B, _pkt(A, B, b"0"), 0.0)
    net.pump()
    net.ep[A].rekey(B, 1.0)
    offer = net.ep[A].datagrams_to_send()
    assert [d[:4] for d, _ in offer] == [b"PILA"]
    net.ep[A].send(B, _pkt(A, B, b"1"), 1.0)
    assert net.ep[A].datagrams_to_send() == []  # held, not sealed under the old key
    for d, _ in offer:
        net.events[B] += feed(net.ep[B], d, ADDR[A], 1.0)
    net.pump(1.0)
    assert [e.packet.payload for e in net.of(B, PacketReceived)] == [b"0", b"1"]  # type: ignore[attr-defined]
    assert net.ep[A].peers[B].active is not None and net.ep[A].peers[B].active.sealer.sealed == 1


@pytest.mark.req("NONCE-006", "SEC-005")
def test_unanswered_rekey_keeps_the_old_session_and_never_goes_plaintext() -> None:
    net = Net(TunnelConfig.for_profile("go-interop"))
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    net.drop_from.add(A)
    net.ep[A].rekey(B, 1.0)
    net.ep[A].send(B, _pkt(A, B, b"held"), 1.0)
    events: list[Event] = []
    while (timer := net.ep[A].get_timer()) is not None:
        events += tick(net.ep[A], timer)
        net.pump(timer)
    assert events == [KeyExchangeFailed(B, fallback=False, dropped=0)]
    assert net.wire[-1][1][:4] == b"PILS" and not any(d[:4] == b"PILT" for _, d in net.wire)


@pytest.mark.req("CONS-009", "NONCE-002")
def test_peer_using_our_own_prefix_triggers_a_rekey() -> None:
    # same RNG seed on both sides and no role bit: B draws exactly A's prefix (E-NONCE-3)
    cfg = TunnelConfig.for_profile("draft", prefix_role_bit=False)
    net = Net(cfg)
    for node in (A, B):
        net.ep[node]._rng = InsecureDeterministicRng("same")
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    assert net.ep[A].peers[B].sessions[-1].sealer.prefix == net.ep[B].peers[A].sessions[-1].sealer.prefix
    for node in (A, B):
        net.ep[node]._rng = InsecureDeterministicRng(f"apart/{node}")
    net.ep[B].send(A, _pkt(B, A), 1.0)
    net.pump(1.0)
    net.ep[A].send(B, _pkt(A, B), 1.5)  # B takes the new key once a frame under it arrives (E-TNL-1)
    net.pump(1.5)
    assert any(isinstance(e, Rekeyed) for e in net.events[A] + net.events[B])
    sa, sb = net.ep[A].peers[B].active, net.ep[B].peers[A].active
    assert sa is not None and sb is not None and sa.sealer.prefix != sb.sealer.prefix


@pytest.mark.req("CONS-002", "TUN-017", "TUN-019")
def test_pilk_key_substitution_succeeds_but_pila_substitution_fails() -> None:
    """A man in the middle swapping the X25519 key: invisible in PILK, caught by the PILA signature."""
    mitm_key = insecure_test_x25519("mallory").public_key().public_bytes_raw()
    anon = Net(ident_a=False, ident_b=False)
    anon.ep[A].send(B, _pkt(A, B), 0.0)
    (pilk, _), *_ = anon.ep[A].datagrams_to_send()
    swapped = pilk[:8] + mitm_key
    assert isinstance(feed(anon.ep[B], swapped, ADDR[A], 0.0)[0], KeyEstablished)  # B cannot tell
    auth = Net()
    auth.ep[A].send(B, _pkt(A, B), 0.0)
    (pila, _), *_ = auth.ep[A].datagrams_to_send()
    (ev,) = feed(auth.ep[B], pila[:8] + mitm_key + pila[40:], ADDR[A], 0.0)
    assert isinstance(ev, InputRejected) and ev.code is ErrorCode.BAD_SIGNATURE
    assert A not in auth.ep[B].peers or not auth.ep[B].peers[A].sessions


@pytest.mark.req("CONS-001", "SEC-006")
def test_crc_gives_no_integrity_but_gcm_does() -> None:
    """An attacker who edits a PILT packet and fixes the CRC is accepted; the same edit inside PILS is not."""
    plain = TunnelEndpoint(B, InsecureDeterministicRng("p"), config=TunnelConfig.for_profile("draft", encryption=False))
    edited = _pkt(A, B, b"pay 999")  # attacker re-encodes: encode_packet recomputes the CRC
    (ev,) = feed(plain, b"PILT" + encode_packet(edited), ADDR[A], 0.0)
    assert isinstance(ev, PacketReceived) and ev.packet.payload == b"pay 999"
    net = Net()
    net.ep[A].send(B, _pkt(A, B, b"pay 100"), 0.0)
    net.pump()
    net.ep[A].send(B, _pkt(A, B, b"pay 100"), 1.0)
    (frame, _), *_ = net.ep[A].datagrams_to_send()
    forged = bytearray(frame)
    for i, (a, b) in enumerate(zip(b"100", b"999", strict=True)):  # CTR mode: flipping ciphertext bits flips plaintext
        forged[-19 + i] ^= a ^ b
    (rej,) = feed(net.ep[B], bytes(forged), ADDR[A], 1.0)
    assert isinstance(rej, InputRejected) and rej.code is ErrorCode.AUTH_FAILED


@pytest.mark.req("TUN-019", "CONS-019")
def test_our_own_frames_reflected_back_are_refused() -> None:
    net = Net()
    net.ep[A].send(B, _pkt(A, B), 0.0)
    (pila, _), *_ = net.ep[A].datagrams_to_send()
    (ev,) = feed(net.ep[A], pila, ("6.6.6.6", 1), 0.0)
    assert isinstance(ev, InputRejected) and ev.code is ErrorCode.SPOOFED
    assert set(net.ep[A].peers) == {B}


@pytest.mark.req("NONCE-005", "SEC-011")
def test_stale_key_frame_during_a_rekey_does_not_start_a_key_ping_pong() -> None:
    net = Net()
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    stale = [d for s, d in net.wire if s == B and d[:4] == b"PILA"][-1]
    net.ep[A].rekey(B, 1.0)
    net.events[A] += feed(net.ep[A], stale, ADDR[B], 1.0)  # old answer overtakes the new one
    mark = len(net.wire)
    net.pump(1.0)  # raises if key frames keep bouncing
    assert len(net.wire) - mark <= 4
    net.ep[A].send(B, _pkt(A, B), 1.5)  # B takes the new key once a frame under it arrives (E-TNL-1)
    net.pump(1.5)
    sa, sb = net.ep[A].peers[B].active, net.ep[B].peers[A].active
    assert sa is not None and sb is not None and sa.cipher.fingerprint == sb.cipher.fingerprint


@pytest.mark.req("NONCE-005", "SEC-011", "CONS-019")
@example(["rekey-a", "stale-to-b"])
@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    st.lists(
        st.sampled_from(["a", "b", "rekey-a", "rekey-b", "stale-to-a", "stale-to-b", "lose-a", "lose-b"]),
        min_size=1,
        max_size=25,
    )
)
def test_key_exchange_converges_under_stale_and_lost_frames(ops: list[str]) -> None:
    net = Net(seed="conv")
    net.ep[A].send(B, _pkt(A, B), 0.0)
    net.pump()
    t = 0.0
    for op in ops:
        t += 0.3
        kex_from = {n: [d for s, d in net.wire if s == n and d[:4] == b"PILA"] for n in (A, B)}
        if op in ("a", "b"):
            src, dst = (A, B) if op == "a" else (B, A)
            net.ep[src].send(dst, _pkt(src, dst), t)
        elif op.startswith("rekey"):
            src, dst = (A, B) if op == "rekey-a" else (B, A)
            net.ep[src].rekey(dst, t)
        elif op.startswith("stale"):
            dst, src = (A, B) if op == "stale-to-a" else (B, A)
            if kex_from[src]:
                net.events[dst] += feed(net.ep[dst], kex_from[src][0], ADDR[src], t)
        else:
            src = A if op == "lose-a" else B
            net.ep[src].datagrams_to_send()  # the network eats whatever is queued
        for n in (A, B):
            net.events[n] += tick(net.ep[n], t)
        net.pump(t)  # raises if datagrams never stop
    for _ in range(20):  # let retries run out
        t += 1.0
        for n in (A, B):
            net.events[n] += tick(net.ep[n], t)
        net.pump(t)
    before = {n: len(net.of(n, PacketReceived)) for n in (A, B)}
    net.ep[A].send(B, _pkt(A, B, b"final-a"), t)
    net.ep[B].send(A, _pkt(B, A, b"final-b"), t)
    for _ in range(10):
        net.pump(t)
        t += 1.0
        for n in (A, B):
            net.events[n] += tick(net.ep[n], t)
    net.pump(t)
    got_b = [e.packet.payload for e in net.of(B, PacketReceived)[before[B] :]]  # type: ignore[attr-defined]
    got_a = [e.packet.payload for e in net.of(A, PacketReceived)[before[A] :]]  # type: ignore[attr-defined]
    assert b"final-a" in got_b and b"final-b" in got_a
