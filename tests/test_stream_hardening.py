"""Issue 9, session layer: admission control, backpressure, bounded memory, nothing acknowledged is lost.

* A SYN flood from one peer never denies service to another (per-source then node-wide SYN rate limits,
  draft 10.8; per-peer connection cap).
* ``send`` takes at most the send-buffer bound and says how much it took; ``Writable`` follows a short
  write once room opens (draft 8.10).
* Memory under floods is measured with ``tracemalloc``: 10^4 SYNs (one source, and 10^4 sources) and
  100 MiB pushed at an echo whose peer advertises a zero window stay bounded.
* Data and FIN in one segment, a FIN that overtakes its data, and a simultaneous close all deliver every
  byte the endpoint acknowledged, and an echo on top answers them before its FIN.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from stream_helpers import ACK, FIN, LOCAL, REMOTE, RST, SYN, Echo, RawPeer

from pilot_proto.errors import Action
from pilot_proto.profile import Profile
from pilot_proto.sansio import InputRejected
from pilot_proto.stream import State, StreamConfig, StreamEndpoint
from pilot_proto.stream.events import CloseReason, Writable
from pilot_proto.testing.link import LinkConfig
from pilot_proto.testing.pair import StreamPair
from pilot_proto.wire import Addr, Packet, SocketAddr

PROFILES = [Profile.DRAFT, Profile.GO_INTEROP]
OUR_ISN, PEER_ISN = 100, 7000
M32 = 0xFFFFFFFF
PEER_B = Addr(0, 3)


def _listening(profile: Profile = Profile.DRAFT, **cfg: Any) -> StreamEndpoint:
    ep = StreamEndpoint(LOCAL, config=StreamConfig.for_profile(profile, **cfg), isn_source=lambda: OUR_ISN)
    ep.listen(7)
    return ep


def _syn(src: Addr, port: int, seq: int = 1, window: int = 512) -> Packet:
    return Packet(SYN, 1, src, LOCAL, port, 7, seq, 0, window)


def _accept(ep: StreamEndpoint, peer: RawPeer, window: int = 512, now: float = 0.0) -> int:
    out = peer.feed(peer.packet(SYN, window=window), now)
    assert [p.flags for p in out] == [SYN | ACK], out
    peer.seq = peer.isn + 1
    peer.feed(peer.packet(ACK, ack=OUR_ISN + 1, window=window), now)
    conn = ep.find(SocketAddr(REMOTE, peer.port), peer.local_port)
    assert conn is not None and conn.state is State.ESTABLISHED
    return conn.id


# ----------------------------------------------------------------------------------------------- admission
@pytest.mark.req("SEC-025", "SES-004")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.value)
def test_a_syn_flood_from_one_peer_never_denies_another(profile: Profile) -> None:
    """The issue-9 probe: 1,100 SYNs from one peer in 70 ms got 1,024 SYN-ACKs and locked the port for ~30 s."""
    ep = _listening(profile)
    answered = rejected = 0
    for i in range(1100):
        ep.receive_packet(_syn(REMOTE, 10_000 + i), i * 0.07 / 1100)
        answered += sum(p.flags == SYN | ACK for p in ep.packets_to_send())
        rejected += sum(isinstance(e, InputRejected) and e.error.code.value == "rate_limited" for e in ep.events())
    cfg = ep.config
    assert answered <= cfg.syn_burst_per_source + 1  # 10 at once, plus what 70 ms refill at 10/s
    assert answered + rejected == 1100  # every refused SYN is one InputRejected, nothing silent
    assert ep.dropped["syn_rate_source"] == rejected
    # the other peer gets in at once, and keeps getting in, while the flood goes on
    for k in range(5):
        t = 0.08 + k * 0.01
        ep.receive_packet(_syn(REMOTE, 30_000 + k, seq=k), t)  # the flood continues
        ep.receive_packet(_syn(PEER_B, 40_000 + k, seq=k), t)
        out = ep.packets_to_send()
        assert [(p.dst, p.flags) for p in out if p.dst == PEER_B] == [(PEER_B, SYN | ACK)]
        assert not any(p.flags & RST for p in out)


@pytest.mark.req("SEC-025")
def test_a_flood_from_one_peer_does_not_spend_the_node_wide_budget() -> None:
    """Per-source is judged first: a source's refused SYNs never take node-wide tokens (unlike GoB, E-STR-1)."""
    ep = _listening(syn_rate_global=1.0, syn_burst_global=20, syn_burst_per_source=5)
    for i in range(1000):
        ep.receive_packet(_syn(REMOTE, 10_000 + i), 0.0)
    assert ep.active_count == 5 and ep.dropped["syn_rate_source"] == 995 and "syn_rate_global" not in ep.dropped
    for n in range(15):  # the 15 node-wide tokens the flood did not spend are there for 15 other peers
        ep.receive_packet(_syn(Addr(0, 100 + n), 5000), 0.0)
    assert ep.active_count == 20
    ep.receive_packet(_syn(Addr(0, 999), 5000), 0.0)  # and then the node-wide limit holds
    assert ep.dropped["syn_rate_global"] == 1 and ep.active_count == 20


@pytest.mark.req("SES-004")
def test_per_peer_cap_keeps_the_port_open_for_others() -> None:
    ep = _listening(syn_rate_per_source=None, syn_rate_global=None, max_connections_per_peer=50)
    for i in range(60):
        ep.receive_packet(_syn(REMOTE, 10_000 + i), 0.0)
    out = ep.packets_to_send()
    assert sum(p.flags == SYN | ACK for p in out) == 50 and sum(p.flags == RST for p in out) == 10
    assert ep.dropped["peer_connection_limit"] == 10
    ep.receive_packet(_syn(PEER_B, 5000), 0.0)
    assert [p.flags for p in ep.packets_to_send()] == [SYN | ACK]
    # a connection of the capped peer that ends gives its place back
    victim = ep.find(SocketAddr(REMOTE, 10_000), 7)
    assert victim is not None
    ep.abort(victim.id, 0.1)
    ep.packets_to_send()
    ep.receive_packet(_syn(REMOTE, 20_000), 0.2)
    assert [p.flags for p in ep.packets_to_send()] == [SYN | ACK]


@pytest.mark.req("SEC-025")
def test_the_per_source_table_is_bounded() -> None:
    ep = _listening(max_syn_sources=100, syn_rate_global=None, max_connections=20_000, max_connections_per_port=20_000)
    for i in range(2000):
        ep.receive_packet(_syn(Addr(1, i), 5000), 0.0)
    assert ep._admission.tracked_sources == 100 and ep.active_count == 2000


def _syn_flood_memory(distinct_sources: bool) -> tuple[int, int, int]:
    """(peak traced bytes above the start, connections left, events seen) for 10^4 SYNs in one second."""
    ep = _listening()
    ep.receive_packet(_syn(PEER_B, 1), 0.0)  # warm the code paths before measuring
    ep.packets_to_send(), ep.events()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    events = 0
    for i in range(10_000):
        src = Addr(1, i) if distinct_sources else REMOTE
        ep.receive_packet(_syn(src, 10_000 + i % 50_000), i * 1e-4)
        ep.packets_to_send()
        events += len(ep.events())  # drained as a node does
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak, ep.active_count, events


@pytest.mark.req("SEC-025", "SES-133")
@pytest.mark.parametrize("distinct_sources", [False, True], ids=["one-source", "10k-sources"])
def test_ten_thousand_syns_stay_bounded(distinct_sources: bool) -> None:
    peak, conns, events = _syn_flood_memory(distinct_sources)
    print(f"\n10^4 SYNs ({'10^4 sources' if distinct_sources else 'one source'}): peak +{peak / 1024:.0f} KiB "
          f"traced, {conns} connections held, {events} events")  # fmt: skip
    assert events == 10_000  # one event per SYN: ConnectionRequested or InputRejected
    # one source: its burst plus 1 s at 10/s; many sources: the node-wide burst plus 1 s at 100/s
    assert conns <= (1 + 20 if not distinct_sources else 1 + 200)
    assert peak < (1 << 20) + conns * 8192  # bounded by the connections admitted, not by the SYNs sent


# -------------------------------------------------------------------------------------------- backpressure
@pytest.mark.req("SES-093", "SES-081")
def test_send_takes_at_most_the_buffer_and_writable_follows_a_short_write() -> None:
    ep = _listening(send_buffer_bytes=10_000, mss=1000)
    peer = RawPeer(ep, local_port=7)
    cid = _accept(ep, peer)
    assert ep.send(cid, bytes(6000), 0.1) == 6000
    assert ep.send(cid, bytes(6000), 0.1) == 4000  # short write: the buffer holds 10,000
    assert ep.send(cid, b"more", 0.1) == 0 and ep.connection(cid).send_buffer_free == 0
    sent = ep.packets_to_send()
    assert sum(len(p.payload) for p in sent) == 10_000  # the initial window (10 segments) takes it all
    assert not any(isinstance(e, Writable) for e in ep.events())
    peer.feed(peer.packet(ACK, ack=OUR_ISN + 1 + 3000), 0.2)  # 3,000 free: below the low-water mark
    assert not any(isinstance(e, Writable) for e in peer.events)
    peer.feed(peer.packet(ACK, ack=OUR_ISN + 1 + 6000), 0.3)
    writable = [e for e in peer.events if isinstance(e, Writable)]
    assert writable == [Writable(cid, 6000)]
    assert ep.send(cid, bytes(7000), 0.3) == 6000  # short again: 16,000 written, 6,000 acknowledged
    peer.feed(peer.packet(ACK, ack=OUR_ISN + 1 + 10_000), 0.4)  # 4,000 free: still below half, no event
    assert [e for e in peer.events if isinstance(e, Writable)] == [Writable(cid, 6000)]
    assert ep.connection(cid).snd_nxt == 1 + 16_000  # everything written went out meanwhile
    peer.feed(peer.packet(ACK, ack=OUR_ISN + 1 + 16_000), 0.5)
    assert [e for e in peer.events if isinstance(e, Writable)] == [Writable(cid, 6000), Writable(cid, 10_000)]


@pytest.mark.req("SES-082", "SES-051")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.value)
def test_100_mib_into_a_zero_window_stays_bounded(profile: Profile) -> None:
    """The issue-9 probe: the echo's send buffer grew by every byte while the peer advertised window 0.

    The peer opens with window 0 and keeps sending 100 MiB at our echo, retransmitting whatever we did not
    take; the echo's replies can never leave.  Memory stays within the send buffer plus the receive buffer.
    """
    mss = 4096
    ep = _listening(profile, mss=mss)
    cfg = ep.config
    echo = Echo(ep)
    peer = RawPeer(ep, local_port=7)
    # go-interop reads window 0 as "no limit" (E-SES-3): there the peer opens with 1 and then never acknowledges
    cid = _accept(ep, peer, window=0 if profile is Profile.DRAFT else 1)
    peer.events.clear()
    chunk = bytes(range(256)) * (mss // 256)
    total = 100 << 20
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    pushed = 0
    acked = PEER_ISN + 1  # what our endpoint acknowledged of the peer's stream
    now = 0.1
    while pushed < total:
        seq = acked  # the peer sends from what we acknowledged: everything beyond our window is retransmitted
        for _ in range(64):
            ep.receive_packet(Packet(ACK, 1, REMOTE, LOCAL, peer.port, 7, seq & M32, OUR_ISN + 1, 0, chunk), now)
            seq += mss
            pushed += mss
        now += 0.01
        ep.handle_timer(now)
        echo.pump(now)
        for p in ep.packets_to_send():
            if p.flags & ACK:
                acked = max(acked, p.ack if p.ack >= acked & M32 else p.ack + (1 << 32))
    conn = ep.connection(cid)
    current, peak = (v - base for v in tracemalloc.get_traced_memory())
    tracemalloc.stop()
    taken = (acked - PEER_ISN - 1) & M32
    print(f"\n100 MiB at a zero-window echo ({profile.value}): peak +{peak / 1048576:.2f} MiB traced, now "
          f"+{current / 1048576:.2f} MiB; acknowledged {taken / 1048576:.2f} MiB; send buffer "
          f"{conn.send_buffer_size} B, echo holds {sum(map(len, echo.pending.values()))} B")  # fmt: skip
    assert pushed >= total
    assert conn.send_buffer_size <= cfg.send_buffer_bytes
    assert sum(map(len, echo.pending.values())) <= cfg.recv_buf_bytes  # retained bytes keep our window shut
    assert taken <= cfg.send_buffer_bytes + cfg.recv_buf_bytes  # we stopped acknowledging: nothing was lost
    assert peak < cfg.send_buffer_bytes + 2 * cfg.recv_buf_bytes + (4 << 20)


# ------------------------------------------------------------------------------ nothing acknowledged lost
def _echo_session(profile: Profile, segments: list[tuple[int, bytes, bool]]) -> tuple[bytes, list[Packet], Echo]:
    """Feed (offset, data, fin) segments to an echo on port 7; returns the echoed bytes and all it sent."""
    ep = _listening(profile)
    echo = Echo(ep)
    peer = RawPeer(ep, local_port=7)
    _accept(ep, peer)
    echo.pump(0.0)
    out: list[Packet] = []
    now = 0.1
    for off, data, fin in segments:
        flags = ACK | (FIN if fin else 0)
        ep.receive_packet(peer.packet(flags, seq=PEER_ISN + 1 + off, ack=OUR_ISN + 1, payload=data), now)
        echo.pump(now)
        out += ep.packets_to_send()
        now += 0.01
    for _ in range(50):  # let timers (delayed ACK, Nagle) run; the peer acknowledges everything we send
        t = ep.get_timer()
        if t is None or t > now + 1:
            break
        now = max(now, t)
        ep.handle_timer(now)
        echo.pump(now)
        got = ep.packets_to_send()
        out += got
        if got:
            top = max(p.seq + len(p.payload) + (1 if p.flags & FIN else 0) for p in got) & M32
            ep.receive_packet(peer.packet(ACK, seq=PEER_ISN + 1 + 10_000, ack=top), now)
            echo.pump(now)
            out += ep.packets_to_send()
    echoed = b"".join(p.payload for p in sorted({p.seq: p for p in out if p.payload}.values(), key=lambda p: p.seq))
    return echoed, out, echo


@pytest.mark.req("SES-134", "SES-020", "SES-022")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.value)
@pytest.mark.parametrize(
    "shape",
    ["data+fin in one segment", "fin overtakes its data", "fin overtakes two segments"],
)
def test_every_acknowledged_byte_is_echoed_before_our_fin(profile: Profile, shape: str) -> None:
    """The issue-9 probe: data and FIN to the echo port were ACKed, never echoed, and 'send after close' escaped."""
    msg = bytes(i % 251 for i in range(3000))
    if shape == "data+fin in one segment":
        segments = [(0, msg, True)]
    elif shape == "fin overtakes its data":
        segments = [(len(msg), b"", True), (0, msg, False)]
    else:
        segments = [(len(msg), b"", True), (1500, msg[1500:], False), (0, msg[:1500], False)]
    echoed, out, echo = _echo_session(profile, segments)
    assert echoed == msg  # every byte, once, in order
    acks = [p.ack for p in out if p.flags & ACK]
    assert max(acks) == (PEER_ISN + 1 + len(msg) + 1) & M32  # data and FIN acknowledged
    fins = [p for p in out if p.flags & FIN]
    assert len(fins) >= 1 and fins[0].seq == (OUR_ISN + 1 + len(msg)) & M32  # our FIN after the echoed bytes
    first_fin = out.index(fins[0])
    assert sum(len(p.payload) for p in out[:first_fin]) >= len(msg)
    assert echo.rejected == []


@pytest.mark.req("SES-134", "SES-020", "SES-006")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.value)
def test_simultaneous_close_delivers_both_directions(profile: Profile) -> None:
    cfg = StreamConfig.for_profile(profile, mss=1000)
    pair = StreamPair(cfg, link=LinkConfig(delay=0.01), seed=5)
    ca, cb = pair.connect()
    up, down = bytes(i % 253 for i in range(20_000)), bytes(i % 241 for i in range(15_000))
    pair.a.send(ca, up, pair.now)
    pair.b.send(cb, down, pair.now)
    pair.a.close(ca, pair.now)  # both close at the same instant, with data still in flight
    pair.b.close(cb, pair.now)
    sa, sb = pair.sides["a"], pair.sides["b"]
    assert pair.run_until(lambda: ca in sa.closed and cb in sb.closed, max_time=60)
    assert sb.data(cb) == up and sa.data(ca) == down
    assert sa.closed[ca].reason is CloseReason.NORMAL and sb.closed[cb].reason is CloseReason.NORMAL


# ------------------------------------------------------------------------------------------ other bounds
@pytest.mark.req("SES-051", "SES-050")
def test_out_of_order_bytes_are_bounded_across_connections() -> None:
    """One node-wide budget: a connection cannot hold more than what the others left; closing gives it back."""
    ep = _listening(max_ooo_bytes_total=3000, mss=1000)
    p1, p2 = RawPeer(ep, port=5001, local_port=7), RawPeer(ep, port=5002, local_port=7)
    c1, c2 = _accept(ep, p1), _accept(ep, p2)
    ep.events()

    def hole(peer: RawPeer, k: int) -> None:  # segment k beyond a one-segment gap
        peer.feed(peer.packet(ACK, seq=PEER_ISN + 1 + 1000 * (k + 1), ack=OUR_ISN + 1, payload=bytes(1000)), 0.1)

    for k in range(3):
        hole(p1, k)
    assert ep.connection(c1).ooo_bytes == 3000 and ep.outbox.ooo_used == 3000
    p2.events.clear()
    hole(p2, 0)  # the budget is spent: refused, reported, not acknowledged
    assert ep.connection(c2).ooo_bytes == 0
    assert [e.error.code.value for e in p2.events if isinstance(e, InputRejected)] == ["buffer_full"]
    p1.feed(p1.packet(ACK, seq=PEER_ISN + 1, ack=OUR_ISN + 1, payload=bytes(1000)), 0.2)  # gap filled: drained
    assert ep.connection(c1).ooo_bytes == 0 and ep.outbox.ooo_used == 0
    hole(p2, 0)
    hole(p2, 1)
    assert ep.outbox.ooo_used == 2000
    ep.abort(c2, 0.3)  # a connection that goes away returns what it held
    assert ep.outbox.ooo_used == 0


@pytest.mark.req("SES-051")
def test_out_of_order_segments_per_connection_are_capped_when_configured() -> None:
    ep = _listening(max_ooo_segments=4, mss=100)
    peer = RawPeer(ep, local_port=7)
    cid = _accept(ep, peer)
    for k in range(10):
        peer.feed(peer.packet(ACK, seq=PEER_ISN + 1 + 200 * (k + 1), ack=OUR_ISN + 1, payload=bytes(100)), 0.1)
    conn = ep.connection(cid)
    assert conn._rx.ooo_segments == 4 and conn.ooo_bytes == 400
    assert sum(isinstance(e, InputRejected) for e in peer.events) == 6


@pytest.mark.req("SES-152")
def test_outstanding_pings_are_bounded() -> None:
    ep = _listening()
    for i in range(5000):
        ep.ping(REMOTE, i * 0.001)
    ep.packets_to_send()
    assert len(ep._pings) == 1024  # the oldest are forgotten: their late replies are refused, not matched


@pytest.mark.req("VER-005", "VER-006", "VER-002")
@pytest.mark.parametrize("version", [0, 2, 15])
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.value)
def test_a_syn_of_another_version_is_answered_with_rst(profile: Profile, version: int) -> None:
    """Draft 12.2 at the session layer (the issue-9 probe sent versions 0, 2 and 15); go-interop drops (E-VER-1)."""
    ep = _listening(profile)
    ep.receive_packet(_syn(REMOTE, 6000)._replace(version=version), 0.0)
    out, events = ep.packets_to_send(), ep.events()
    (ev,) = events
    assert isinstance(ev, InputRejected) and ep.active_count == 0
    if profile is Profile.DRAFT:
        (rst,) = out
        assert rst.flags == RST and rst.version == 1 and rst.dst == REMOTE and rst.dst_port == 6000
        assert ev.error.requirement == "VER-005" and ev.action is Action.RST
    else:
        assert out == [] and ev.error.requirement == "VER-006" and ev.action is Action.DROP
