"""Freshness, binding and admission of tunnel sessions (issue 9; errata E-TNL-1, E-TNL-2, E-TNL-3)."""

from __future__ import annotations

import dataclasses

import pytest

from pilot_proto.errors import ErrorCode
from pilot_proto.profile import Profile
from pilot_proto.sansio import Event, InputRejected, drain
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
from pilot_proto.tunnel import KeyEstablished, PacketReceived, Rekeyed, TunnelConfig, TunnelEndpoint
from pilot_proto.tunnel.endpoint import KEX_FLAG_REQUEST, KEX_FLAG_RESPONSE, parse_pila_trailer
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import KeyExchangeFrame, encode_frame
from pilot_proto.wire.header import Packet, PacketProtocol

A, B = 1, 2
ADDR = {A: ("127.0.0.1", 1001), B: ("127.0.0.1", 1002)}
EVIL = ("127.0.0.1", 6666)


def _pkt(src: int, dst: int, payload: bytes = b"p") -> Packet:
    return Packet(0, PacketProtocol.DATAGRAM, Addr(0, src), Addr(0, dst), 1000, 1001, payload=payload)


def feed(ep: TunnelEndpoint, data: bytes, addr: object, now: float) -> list[Event]:
    ep.receive_datagram(data, addr, now)
    return drain(ep)


class Pair:
    """Two endpoints back to back; ``wire`` keeps every datagram as (from node, bytes)."""

    def __init__(self, profile: str = "draft", *, ident: bool = True, seed: str = "fresh", **cfg: object) -> None:
        config = TunnelConfig.for_profile(profile, **cfg)
        keys = {n: insecure_test_identity(n).public_bytes for n in (A, B)}
        self.ep = {
            n: TunnelEndpoint(
                n,
                InsecureDeterministicRng(f"{seed}/{n}"),
                identity=insecure_test_identity(n) if ident else None,
                config=config,
                peer_keys={k: v for k, v in keys.items() if k != n} if ident else None,
            )
            for n in (A, B)
        }
        self.ep[A].add_peer(B, ADDR[B])
        self.ep[B].add_peer(A, ADDR[A])
        self.wire: list[tuple[int, bytes]] = []
        self.events: dict[int, list[Event]] = {A: [], B: []}
        self.addr = dict(ADDR)

    def pump(self, now: float) -> None:
        for _ in range(50):
            moved = False
            for src, dst in ((A, B), (B, A)):
                for dgram in self.ep[src].datagrams_to_send():
                    moved = True
                    self.wire.append((src, dgram.data))
                    self.events[dst] += feed(self.ep[dst], dgram.data, self.addr[src], now)
            if not moved:
                return
        raise AssertionError("datagrams kept flowing")

    def exchange(self, now: float, tag: bytes = b"x") -> tuple[list[bytes], list[bytes]]:
        """Each side sends one packet; return what each side received (payloads) from this exchange."""
        mark = {n: len(self.events[n]) for n in (A, B)}
        self.ep[A].send(B, _pkt(A, B, b"a:" + tag), now)
        self.ep[B].send(A, _pkt(B, A, b"b:" + tag), now)
        self.pump(now)
        got = {
            n: [e.packet.payload for e in self.events[n][mark[n] :] if isinstance(e, PacketReceived)] for n in (A, B)
        }
        return got[A], got[B]

    def kex_frames(self, node: int) -> list[bytes]:
        return [d for s, d in self.wire if s == node and d[:4] in (b"PILA", b"PILK")]


def _session_state(ep: TunnelEndpoint, node: int) -> tuple[object, ...]:
    peer = ep.peers[node]
    return (peer.address, tuple(s.cipher.fingerprint for s in peer.sessions))


@pytest.mark.req("SEC-011", "CONS-019")
def test_replayed_older_pila_after_a_rekey_changes_nothing_in_use() -> None:
    """Issue 9: one captured older PILA, replayed from another address after a re-key, used to lock the peer out."""
    pair = Pair()
    assert pair.exchange(0.0, b"0") == ([b"b:0"], [b"a:0"])
    old_pila = pair.kex_frames(A)[0]
    pair.ep[A].rekey(B, 1.0)
    pair.pump(1.0)
    assert pair.exchange(1.5, b"1") == ([b"b:1"], [b"a:1"])
    before = _session_state(pair.ep[B], A)
    events = feed(pair.ep[B], old_pila, EVIL, 2.0)
    assert [e.code for e in events if isinstance(e, InputRejected)] == [ErrorCode.REPLAY]
    assert pair.ep[B].datagrams_to_send() == []  # not even an answer to the replayer
    assert _session_state(pair.ep[B], A) == before
    assert pair.exchange(2.5, b"2") == ([b"b:2"], [b"a:2"])  # the real peer is not locked out
    assert pair.ep[B].peers[A].address == ADDR[A]


@pytest.mark.req("SEC-011")
def test_replayed_live_pila_from_elsewhere_is_answered_there_and_moves_nothing() -> None:
    pair = Pair()
    pair.exchange(0.0)
    live = pair.kex_frames(A)[-1]
    before = _session_state(pair.ep[B], A)
    assert feed(pair.ep[B], live, EVIL, 5.0) == []
    assert [d.addr for d in pair.ep[B].datagrams_to_send()] == [EVIL]  # its repeat is answered at its source
    assert _session_state(pair.ep[B], A) == before
    assert pair.exchange(6.0) == ([b"b:x"], [b"a:x"])


@pytest.mark.req("SEC-011")
def test_a_pila_while_our_offer_is_pending_cannot_complete_it_with_the_live_key_under_draft() -> None:
    pair = Pair()
    pair.exchange(0.0)
    live_b = pair.kex_frames(B)[-1]
    pair.ep[A].rekey(B, 2.0)
    offer = pair.ep[A].datagrams_to_send()
    before = _session_state(pair.ep[A], B)
    assert feed(pair.ep[A], live_b, EVIL, 2.0) == []  # a repeat, not an answer (E-TNL-1, draft)
    assert _session_state(pair.ep[A], B) == before and pair.ep[A].peers[B].offer_private is not None
    pair.ep[A].datagrams_to_send()
    for d in offer:
        pair.events[B] += feed(pair.ep[B], d.data, ADDR[A], 2.0)
    pair.pump(2.0)
    assert pair.exchange(2.5) == ([b"b:x"], [b"a:x"])
    sa, sb = pair.ep[A].peers[B].active, pair.ep[B].peers[A].active
    assert sa is not None and sb is not None and sa.cipher.fingerprint == sb.cipher.fingerprint
    assert sa.cipher.fingerprint not in before[1]


@pytest.mark.req("TUN-016", "SEC-029")
def test_anonymous_pilk_claiming_a_live_session_from_another_address_is_refused() -> None:
    pair = Pair(ident=False)
    pair.exchange(0.0)
    before = _session_state(pair.ep[B], A)
    rogue = encode_frame(KeyExchangeFrame(A, bytes(range(1, 33))))
    (ev,) = feed(pair.ep[B], rogue, EVIL, 1.0)
    assert isinstance(ev, InputRejected) and ev.code is ErrorCode.SPOOFED and ev.error.field == "pilk.sender"
    assert pair.ep[B].datagrams_to_send() == [] and _session_state(pair.ep[B], A) == before
    assert pair.exchange(1.5) == ([b"b:x"], [b"a:x"])


@pytest.mark.req("TUN-016")
def test_pilk_peer_restart_from_its_address_is_tentative_until_its_first_pils() -> None:
    pair = Pair(ident=False)
    pair.exchange(0.0)
    old = _session_state(pair.ep[B], A)
    cfg = pair.ep[A].config
    pair.ep[A] = TunnelEndpoint(A, InsecureDeterministicRng("restarted"), config=cfg)  # lost all state
    pair.ep[A].add_peer(B, ADDR[B])
    pair.ep[A].send(B, _pkt(A, B, b"after restart"), 3.0)
    (pilk,) = pair.ep[A].datagrams_to_send()
    assert feed(pair.ep[B], pilk.data, ADDR[A], 3.0) == []  # tentative: answered, nothing replaced yet
    assert _session_state(pair.ep[B], A) == old and len(pair.ep[B].peers[A].tentative) == 1
    for d in pair.ep[B].datagrams_to_send():
        pair.events[A] += feed(pair.ep[A], d.data, ADDR[B], 3.0)
    pair.pump(3.0)
    got = [e for e in pair.events[B] if isinstance(e, (Rekeyed, PacketReceived))][-2:]
    assert isinstance(got[0], Rekeyed) and got[0].reason == "peer proved a new key"
    assert isinstance(got[1], PacketReceived) and got[1].packet.payload == b"after restart"
    assert pair.exchange(4.0) == ([b"b:x"], [b"a:x"])


@pytest.mark.req("SEC-011", "CONS-019")
def test_a_restarted_peer_at_a_new_address_moves_only_with_its_first_authenticated_frame() -> None:
    pair = Pair()
    pair.exchange(0.0)
    cfg = pair.ep[A].config
    pair.ep[A] = TunnelEndpoint(
        A,
        InsecureDeterministicRng("moved"),
        identity=insecure_test_identity(A),
        config=cfg,
        peer_keys={B: insecure_test_identity(B).public_bytes},
    )
    pair.ep[A].add_peer(B, ADDR[B])
    new_home = ("127.0.0.1", 2001)
    pair.addr[A] = new_home
    pair.ep[A].send(B, _pkt(A, B, b"hello from the new home"), 5.0)
    (pila,) = pair.ep[A].datagrams_to_send()
    feed(pair.ep[B], pila.data, new_home, 5.0)
    assert pair.ep[B].peers[A].address == ADDR[A]  # a key exchange never moves the endpoint
    answers = pair.ep[B].datagrams_to_send()
    assert [d.addr for d in answers] == [new_home]  # answered at its source
    for d in answers:
        feed(pair.ep[A], d.data, ADDR[B], 5.0)
    pair.pump(5.0)
    assert pair.ep[B].peers[A].address == new_home
    assert pair.exchange(6.0) == ([b"b:x"], [b"a:x"])


@pytest.mark.req("TUN-005")
def test_the_go_heads_138_byte_pila_is_go_interop_only() -> None:
    """E-TNL-3: GoC appends uvarint(caps) uvarint(flags); draft stays strict."""
    ident = insecure_test_identity(A)
    pila = encode_frame(ident_frame := _pila(A, bytes(range(1, 33))))
    assert len(pila) == 136 and ident_frame.sender == A and ident is not None
    go138 = pila + bytes([0x01, KEX_FLAG_REQUEST])
    assert len(go138) == 138 and parse_pila_trailer(go138[136:]) == (1, KEX_FLAG_REQUEST)
    strict = _endpoint(B, "draft")
    (ev,) = feed(strict, go138, ADDR[A], 0.0)
    assert isinstance(ev, InputRejected) and ev.code is ErrorCode.TRAILING_DATA
    assert strict.peers == {} and strict.datagrams_to_send() == []
    lenient = _endpoint(B, "go-interop")
    (ok,) = feed(lenient, go138, ADDR[A], 0.0)
    assert isinstance(ok, KeyEstablished) and ok.authenticated
    assert len(lenient.datagrams_to_send()) == 1  # our answer (136 bytes, no trailer)


@pytest.mark.req("TUN-005")
def test_a_repeat_flagged_as_a_response_is_never_answered() -> None:
    lenient = _endpoint(B, "go-interop")
    pila = encode_frame(_pila(A, bytes(range(1, 33))))
    feed(lenient, pila, ADDR[A], 0.0)
    lenient.datagrams_to_send()
    assert feed(lenient, pila + bytes([0x01, KEX_FLAG_RESPONSE]), ADDR[A], 5.0) == []
    assert lenient.datagrams_to_send() == []  # no answer to an answer: no ping-pong
    feed(lenient, pila + bytes([0x01, KEX_FLAG_REQUEST]), ADDR[A], 10.0)
    assert len(lenient.datagrams_to_send()) == 1


def test_parse_pila_trailer_reads_what_go_writes_and_zero_for_garbage() -> None:
    assert parse_pila_trailer(b"") == (0, 0)
    assert parse_pila_trailer(b"\x01") == (1, 0)
    assert parse_pila_trailer(b"\x00\x02") == (0, 2)
    assert parse_pila_trailer(b"\xac\x02\x03") == (300, 3)
    assert parse_pila_trailer(b"\x80") == (0, 0)  # unterminated varint


def _pila(node: int, x25519: bytes):  # type: ignore[no-untyped-def]
    from pilot_proto.tunnel import NodeIdentity

    return NodeIdentity(node, insecure_test_identity(node)).auth_kex_frame(x25519)


def _endpoint(node: int, profile: str, **cfg: object) -> TunnelEndpoint:
    keys = {n: insecure_test_identity(n).public_bytes for n in range(1, 5) if n != node}
    return TunnelEndpoint(
        node,
        InsecureDeterministicRng(f"ep/{node}/{profile}"),
        identity=insecure_test_identity(node),
        config=TunnelConfig.for_profile(profile, **cfg),
        peer_keys=keys,
    )


# -- admission -----------------------------------------------------------------------------------------------


def _pilk(sender: int, seed: int) -> bytes:
    key = bytes((seed + i) % 251 + 1 for i in range(32))
    return encode_frame(KeyExchangeFrame(sender, key))


@pytest.mark.req("SEC-025")
def test_key_exchange_work_per_source_is_bounded_and_another_source_is_unaffected() -> None:
    ep = TunnelEndpoint(9, InsecureDeterministicRng("adm"), config=TunnelConfig.for_profile("draft"))
    cfg = ep.config
    outcomes = []
    for i in range(100):
        ep.receive_datagram(_pilk(1000 + i, i), EVIL, 0.0)
        outcomes.append(type(drain(ep)[0]).__name__)
    burst = int(2 * cfg.kex_rate_per_source)
    assert outcomes.count("KeyEstablished") == burst  # the per-source burst, then refused before any X25519
    assert len(ep.datagrams_to_send()) == burst
    assert ep.stats["rate_limited"] == 100 - burst
    ep.receive_datagram(_pilk(5, 999), ("127.0.0.1", 4242), 0.0)
    assert isinstance(drain(ep)[0], KeyEstablished)  # a different source still gets its key exchange
    ep.receive_datagram(_pilk(2000, 1), EVIL, 1.0)  # refills at the configured rate
    assert isinstance(drain(ep)[0], KeyEstablished)


@pytest.mark.req("SEC-025")
def test_a_spoofed_flood_spends_the_unknown_budget_not_the_known_one() -> None:
    cfg = TunnelConfig.for_profile("draft", kex_rate_unknown=50.0)
    ep = TunnelEndpoint(9, InsecureDeterministicRng("adm2"), config=cfg)
    ep.add_peer(7, ("127.0.0.1", 7007))
    accepted = 0
    for i in range(200):
        ep.receive_datagram(_pilk(1000 + i, i), ("10.0.0.1", 10000 + i), 0.0)  # every one from a new source
        accepted += isinstance(drain(ep)[0], KeyEstablished)
    assert accepted == 50
    ep.receive_datagram(_pilk(7, 3), ("127.0.0.1", 7007), 0.0)
    assert isinstance(drain(ep)[0], KeyEstablished)  # the configured peer is served from the known budget


@pytest.mark.req("SEC-025")
def test_inbound_peers_are_capped_evicting_the_oldest_unproven_and_never_a_talking_one() -> None:
    cfg = TunnelConfig.for_profile("draft", max_inbound_peers=3, kex_rate_per_source=1000.0)
    hub = TunnelEndpoint(9, InsecureDeterministicRng("hub"), config=cfg)
    spoke = TunnelEndpoint(1, InsecureDeterministicRng("spoke"), config=cfg)
    spoke.add_peer(9, ("hub", 9))
    spoke.send(9, _pkt(1, 9, b"talking"), 0.0)
    for _ in range(3):  # a real peer that talks (its PILS authenticates)
        for d in spoke.datagrams_to_send():
            hub.receive_datagram(d.data, ("spoke", 1), 0.0)
        for d in hub.datagrams_to_send():
            spoke.receive_datagram(d.data, ("hub", 9), 0.0)
    assert hub.peers[1].confirmed
    for i in range(10):
        hub.receive_datagram(_pilk(100 + i, i), ("10.0.0.2", 1), 0.0)
    drain(hub)
    assert len(hub.peers) == 3 and 1 in hub.peers  # 1 talking + the 2 newest unproven
    assert hub.stats["peers_evicted"] == 8
    full = TunnelEndpoint(9, InsecureDeterministicRng("full"), config=dataclasses.replace(cfg, max_inbound_peers=1))
    full.receive_datagram(_pilk(100, 1), ("10.0.0.3", 1), 0.0)
    full.peers[100].confirmed = True  # as if it had talked
    full.receive_datagram(_pilk(101, 2), ("10.0.0.3", 2), 0.0)
    events = drain(full)
    assert isinstance(events[-1], InputRejected) and events[-1].code is ErrorCode.TABLE_FULL
    assert list(full.peers) == [100]


def test_rejections_queue_is_bounded_when_nobody_pulls_events() -> None:
    cfg = TunnelConfig.for_profile("draft", max_queued_rejections=10)
    ep = TunnelEndpoint(9, InsecureDeterministicRng("q"), config=cfg)
    for i in range(50):
        ep.receive_datagram(b"junk" + bytes([i]), EVIL, 0.0)
    events = drain(ep)
    assert len(events) == 10 and ep.stats["rejections_unreported"] == 40 and ep.stats["bad_magic"] == 50
    ep.receive_datagram(b"junk", EVIL, 0.0)
    assert len(drain(ep)) == 1  # reported again once the reader caught up


@pytest.mark.parametrize("profile", [Profile.DRAFT, Profile.GO_INTEROP])
def test_rekeys_keep_the_session_the_peer_still_seals_with(profile: Profile) -> None:
    pair = Pair(profile.value)
    pair.exchange(0.0)
    for i in range(3):  # quick re-keys, no traffic in between
        pair.ep[A].rekey(B, 1.0 + i)
        pair.pump(1.0 + i)
    assert pair.exchange(5.0) == ([b"b:x"], [b"a:x"])
    assert pair.exchange(6.0, b"y") == ([b"b:y"], [b"a:y"])


# -- every per-peer table has its bound (spec/bounds.md) ------------------------------------------------------


def test_per_peer_tables_are_bounded() -> None:
    cfg = TunnelConfig.for_profile("draft", kex_rate_per_source=1e6, kex_rate_known=1e6)
    pair = Pair(seed="bounds")
    pair.ep = {n: TunnelEndpoint(n, InsecureDeterministicRng(f"b/{n}"), config=cfg) for n in (A, B)}
    pair.ep[A].add_peer(B, ADDR[B])
    pair.ep[B].add_peer(A, ADDR[A])
    pair.exchange(0.0)
    hub = pair.ep[B]
    for i in range(40):  # fresh PILKs for A's live session from A's own address: each one is tentative
        hub.receive_datagram(_pilk(A, 100 + i), ADDR[A], 1.0 + i)
        drain(hub)
        hub.datagrams_to_send()
    peer = hub.peers[A]
    assert len(peer.tentative) == cfg.max_tentative
    assert len(peer.key_history) == cfg.key_history
    for i in range(6):  # re-keys answered at once (ours): sessions stay at 1 + max_old_sessions (+1 in use)
        pair.ep[A].rekey(B, 50.0 + i)
        pair.pump(50.0 + i)
    assert len(pair.ep[A].peers[B].sessions) <= 2 + cfg.max_old_sessions
    lonely = TunnelEndpoint(A, InsecureDeterministicRng("lonely"), config=cfg)
    lonely.add_peer(7, ("127.0.0.1", 7))
    for i in range(200):  # no answer ever comes: packets queue up to max_pending, oldest dropped
        lonely.send(7, _pkt(A, 7, bytes([i % 256])), 0.0)
    assert len(lonely.peers[7].pending) == cfg.max_pending
    assert lonely.peers[7].pending[0][34:] == bytes([200 - cfg.max_pending])


# -- an on-path replayer of everything it ever saw ------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_OPS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "rekey-a", "rekey-b", "replay-to-a", "replay-to-b", "tick"]),
        st.integers(0, 10_000),
        st.booleans(),
    ),
    min_size=1,
    max_size=30,
)


@pytest.mark.req("CONS-019", "SEC-011")
@pytest.mark.parametrize("profile", ["draft", "go-interop"])
@settings(max_examples=40, derandomize=True, deadline=None)
@given(ops=_OPS)
def test_replaying_any_captured_frame_never_moves_or_breaks_a_session(profile: str, ops: list) -> None:  # type: ignore[type-arg]
    """Two honest endpoints talk and re-key; an attacker replays any datagram it ever saw, from its own address
    or the sender's.  Afterwards both still deliver both ways, and neither moved the other's address."""
    pair = Pair(profile, seed=f"replayer/{profile}")
    pair.exchange(0.0, b"start")
    t = 1.0
    for op, pick, from_evil in ops:
        t += 0.4
        if op in ("a", "b"):
            src, dst = (A, B) if op == "a" else (B, A)
            pair.ep[src].send(dst, _pkt(src, dst), t)
        elif op.startswith("rekey"):
            src, dst = (A, B) if op == "rekey-a" else (B, A)
            pair.ep[src].rekey(dst, t)
        elif op.startswith("replay"):
            dst = A if op == "replay-to-a" else B
            seen = [d for s, d in pair.wire if s != dst]
            if seen:
                frame = seen[pick % len(seen)]
                feed(pair.ep[dst], frame, EVIL if from_evil else pair.addr[B if dst == A else A], t)
                pair.ep[dst].datagrams_to_send()  # whatever it answers goes to the attacker or nowhere useful
        else:
            for n in (A, B):
                pair.events[n] += drain_timer(pair.ep[n], t)
        pair.pump(t)
    for _ in range(8):  # let retries settle
        t += 1.0
        for n in (A, B):
            pair.events[n] += drain_timer(pair.ep[n], t)
        pair.pump(t)
    assert pair.exchange(t, b"end") == ([b"b:end"], [b"a:end"])
    assert pair.exchange(t + 0.5, b"end2") == ([b"b:end2"], [b"a:end2"])
    assert pair.ep[A].peers[B].address == ADDR[B] and pair.ep[B].peers[A].address == ADDR[A]


def drain_timer(ep: TunnelEndpoint, now: float) -> list[Event]:
    ep.handle_timer(now)
    return drain(ep)
