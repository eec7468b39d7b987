"""NodeDriver hardening (issue 9) over real UDP on 127.0.0.1: peer input never raises out of the driver, the
flush and timer re-arm always happen, notices and closed connections are bounded, and the echo service
delivers data that came with (or before) a FIN and keeps its memory bounded against a peer that never reads."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pilot_proto.drivers.udp import BackgroundNode
from pilot_proto.node import Node
from pilot_proto.testing.scripted_peer import ScriptedPeer, seq_add
from pilot_proto.wire.header import Flags, Packet

TARGET, US = 0x505, 0x81
ISN = 5000


class ExplodingNode(Node):
    """Processes every datagram normally, then raises for ones starting with PILK (a bug below the driver)."""

    def receive_datagram(self, data: bytes, udp_addr: Any, now: float) -> None:
        super().receive_datagram(data, udp_addr, now)
        if data[:4] == b"PILK":
            raise RuntimeError("injected failure after processing")


def _established(peer: ScriptedPeer, window: int = 512) -> Packet:
    if not peer.sessions:
        peer.handshake(timeout=3.0)
    peer.send_packet(peer.packet(Flags.SYN, dst_port=7, seq=ISN, window=window))
    synack = peer.expect_packet(lambda p: p.flags == Flags.SYN | Flags.ACK, timeout=3.0)
    assert synack is not None
    peer.ack(synack, seq=ISN + 1, window=window)
    return synack


def test_an_exception_below_the_driver_is_recorded_and_the_output_still_flushed() -> None:
    with BackgroundNode(ExplodingNode(TARGET, os.urandom), echo_ports=[7]) as bg, ScriptedPeer(US, bg.address) as peer:
        # the PILK is processed, the node raises, and yet its PILK answer goes out (flush) ...
        assert peer.handshake(timeout=3.0) == TARGET
        synack = _established(peer)
        peer.send_packet(peer.packet(Flags.ACK, dst_port=7, seq=ISN + 1, ack=seq_add(synack.seq, 1), payload=b"x"))
        assert peer.expect_packet(lambda p: p.payload == b"x", timeout=3.0) is not None
        faults = bg.call(lambda: list(bg.driver.faults))
        # ... and the timer is armed where the node wants it (the echo's data awaits our ACK: RTO pending)
        armed = bg.call(lambda: (bg.driver._timer_at, bg.node.get_timer()))
    pilks = [r for r in peer.records if r.direction == "out" and r.kind == "PILK"]
    assert [f.stage for f in faults] == ["receive"] * len(pilks) and len(pilks) >= 1  # one per PILK
    assert all("injected failure" in f.error and f.source == peer.address for f in faults)
    assert armed[1] is not None and armed[0] == armed[1]


@pytest.mark.req("SES-040")
def test_echo_answers_data_that_arrives_with_the_fin() -> None:
    with BackgroundNode(Node(TARGET, os.urandom), echo_ports=[7]) as bg, ScriptedPeer(US, bg.address) as peer:
        synack = _established(peer)
        their = seq_add(synack.seq, 1)
        peer.send_packet(peer.packet(Flags.ACK | Flags.FIN, dst_port=7, seq=ISN + 1, ack=their, payload=b"data+fin"))
        echoed = peer.expect_packet(lambda p: p.payload == b"data+fin", timeout=3.0)
        fin = peer.expect_packet(lambda p: bool(p.flags & Flags.FIN), timeout=3.0)
        faults = bg.call(lambda: list(bg.driver.faults))
    assert echoed is not None and echoed.ack == ISN + 1 + len(b"data+fin") + 1  # data and FIN acknowledged
    assert fin is not None and fin.seq == seq_add(their, len(b"data+fin"))  # FIN after the echoed bytes
    assert faults == []


@pytest.mark.req("SES-040")
def test_echo_answers_data_overtaken_by_its_fin() -> None:
    with BackgroundNode(Node(TARGET, os.urandom), echo_ports=[7]) as bg, ScriptedPeer(US, bg.address) as peer:
        synack = _established(peer)
        their = seq_add(synack.seq, 1)
        peer.send_packet(peer.packet(Flags.ACK | Flags.FIN, dst_port=7, seq=ISN + 1 + 5, ack=their))
        peer.listen(0.05)
        peer.send_packet(peer.packet(Flags.ACK, dst_port=7, seq=ISN + 1, ack=their, payload=b"early"))
        echoed = peer.expect_packet(lambda p: p.payload == b"early", timeout=3.0)
        fin = peer.expect_packet(lambda p: bool(p.flags & Flags.FIN), timeout=3.0)
        faults = bg.call(lambda: list(bg.driver.faults))
    assert echoed is not None and fin is not None and fin.seq == seq_add(their, 5)
    assert faults == []


def test_notices_and_faults_are_bounded_under_a_garbage_flood() -> None:
    node = Node(TARGET, os.urandom)
    with BackgroundNode(node, max_notices=50) as bg, ScriptedPeer(US, bg.address) as peer:
        for i in range(400):
            peer.send_raw(b"PILS" + i.to_bytes(4, "big") + bytes(40))
        peer.handshake(timeout=3.0)  # still serves a real peer after the flood
        seen = bg.call(lambda: (len(bg.driver.notices), bg.driver.datagrams_received, US in bg.driver.keyed))
    assert seen[0] <= 50 and seen[1] == 401 and seen[2]


def _syn_ack_to(port: int) -> Callable[[Packet], bool]:
    return lambda p: p.dst_port == port and bool(p.flags & Flags.SYN)


def test_closed_connections_are_forgotten_beyond_max_closed() -> None:
    with BackgroundNode(Node(TARGET, os.urandom), echo_ports=[7], max_closed=3) as bg:
        with ScriptedPeer(US, bg.address) as peer:
            peer.handshake(timeout=3.0)
            for i in range(6):
                port = 50000 + i
                peer.send_packet(peer.packet(Flags.SYN, src_port=port, dst_port=7, seq=ISN))
                synack = peer.expect_packet(_syn_ack_to(port))
                assert synack is not None
                peer.send_packet(peer.packet(Flags.RST, src_port=port, dst_port=7, seq=ISN + 1))
            peer.listen(0.1)
        conns = bg.call(lambda: {cid: st.closed for cid, st in bg.driver.conns.items()})
    assert len(conns) == 3 and all(reason is not None for reason in conns.values())


def test_echo_memory_is_bounded_when_the_peer_never_reads() -> None:
    """The peer advertises window 0 and keeps sending: the echo holds at most its bounds, then aborts."""
    opts: dict[str, Any] = {"echo_buffer": 8192, "echo_pending_limit": 32768}
    with BackgroundNode(Node(TARGET, os.urandom), echo_ports=[7], **opts) as bg, ScriptedPeer(US, bg.address) as peer:
        synack = _established(peer, window=0)
        their, seq = seq_add(synack.seq, 1), ISN + 1
        chunk = b"z" * 4000
        sent = 0
        rst = None
        for _ in range(20):  # 80 kB, well past the 8 kB + 32 kB the echo may hold
            peer.send_packet(peer.packet(Flags.ACK, dst_port=7, seq=seq, ack=their, window=0, payload=chunk))
            seq, sent = seq_add(seq, len(chunk)), sent + len(chunk)
            rst = peer.expect_packet(lambda p: bool(p.flags & Flags.RST), timeout=0.02)
            if rst is not None:
                break
        if rst is None:
            rst = peer.expect_packet(lambda p: bool(p.flags & Flags.RST), timeout=2.0)
        faults = bg.call(lambda: [f.error for f in bg.driver.faults])
        held = bg.call(lambda: [len(st.pending) for st in bg.driver.conns.values()])
        windows = [r.packet.window for r in peer.records if r.direction == "in" and r.packet is not None]
    assert rst is not None, f"no RST after {sent} bytes into a zero window"
    assert sent <= 8192 + 32768 + 2 * len(chunk)
    assert any("does not read" in f for f in faults) and held == [0]
    # what the echo holds back stays counted as unread, so the window it advertises closes (retain_received)
    before_rst = windows[:-1]
    assert before_rst == sorted(before_rst, reverse=True) and before_rst[-1] < before_rst[0]


class _NullTransport:
    """Stands in for the UDP socket so a flood can be fed straight into datagram_received."""

    def __init__(self) -> None:
        self.sent = 0

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "sockname" else None

    def is_closing(self) -> bool:
        return False

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent += 1

    def close(self) -> None:
        pass


def test_driver_memory_stays_flat_under_a_garbage_flood() -> None:
    """tracemalloc: 16000 garbage datagrams cost what the first 4000 cost (the notices ring holds 1024)."""
    import asyncio
    import gc
    import tracemalloc

    from pilot_proto.drivers.udp import NodeDriver

    async def flood() -> tuple[int, int, int]:
        drv = NodeDriver(Node(TARGET, os.urandom), echo_ports=[7])
        drv.connection_made(_NullTransport())  # type: ignore[arg-type]
        junk = [b"PILS" + i.to_bytes(4, "big") + bytes(40) for i in range(1000)]

        def feed(n: int) -> int:
            for i in range(n):
                drv.datagram_received(junk[i % 1000], ("127.0.0.1", 40000 + i % 1000))
            gc.collect()
            return tracemalloc.get_traced_memory()[0]

        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            after_1 = feed(4_000)
            after_4 = feed(12_000)
        finally:
            tracemalloc.stop()
            drv.shutdown()
        assert drv.datagrams_received == 16_000 and len(drv.notices) == 1024
        return base, after_1, after_4

    base, after_1, after_4 = asyncio.run(flood())
    kib_1, kib_4 = (after_1 - base) / 1024, (after_4 - base) / 1024
    print(f"\ndriver flood: +{kib_1:.0f} KiB after 4000 datagrams, +{kib_4:.0f} KiB after 16000")
    assert after_4 - after_1 < 64 * 1024  # the last 12000 datagrams left (almost) nothing behind


class _RecordingTransport(_NullTransport):
    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        super().sendto(data, addr)
        self.out.append(data)


@settings(max_examples=60, deadline=None, derandomize=True)
@example(segments=[(0x2 | 0x4, 0, b"data+fin", 512)], garbage=[])  # issue 9: data and FIN in one segment
@example(segments=[(0x2 | 0x4, 5, b"", 512), (0x2, 0, b"early", 512)], garbage=[])  # FIN overtakes data
@given(
    segments=st.lists(
        st.tuples(
            st.sampled_from([0x2, 0x2 | 0x4, 0x4, 0x1, 0x8, 0x2 | 0x8, 0x0, 0x2 | 0x1]),  # ACK, FIN|ACK, FIN, SYN ...
            st.integers(0, 40),  # seq offset from our ISN
            st.binary(max_size=24),
            st.integers(0, 512),
        ),
        max_size=25,
    ),
    garbage=st.lists(st.binary(max_size=60), max_size=5),
)
def test_no_segment_order_makes_the_node_raise_under_the_driver(
    segments: list[tuple[int, int, bytes, int]], garbage: list[bytes]
) -> None:
    """Arbitrary stream segments (FINs, RSTs, SYNs, overlaps, data after FIN) to the echo port, sealed under a
    real session, plus garbage: nothing raises anywhere below the driver (no DriverFault) and output flows."""
    import asyncio

    from pilot_proto.drivers.udp import NodeDriver
    from pilot_proto.testing.keys import InsecureDeterministicRng
    from pilot_proto.tunnel.dangerous import CraftedSession, X25519Keypair, derive_session_key, pilk_frame
    from pilot_proto.wire.address import Addr

    async def run() -> tuple[int, int]:
        drv = NodeDriver(Node(TARGET, InsecureDeterministicRng("drv")), echo_ports=[7])
        transport = _RecordingTransport()
        drv.connection_made(transport)  # type: ignore[arg-type]
        src = ("127.0.0.1", 40000)
        kp = X25519Keypair.generate(InsecureDeterministicRng("peer"))
        drv.datagram_received(pilk_frame(US, kp.public), src)
        session = CraftedSession(derive_session_key(kp.private, transport.out[-1][8:40]), US)
        us, them = Addr(0, US), Addr(0, TARGET)
        drv.datagram_received(session.seal(Packet(0x1, 1, us, them, 50000, 7, ISN, 0, 512).encode()), src)
        for flags, off, payload, window in segments:
            pkt = Packet(flags, 1, us, them, 50000, 7, seq_add(ISN + 1, off), 1, window, payload)
            drv.datagram_received(session.seal(pkt.encode()), src)
        for junk in garbage:
            drv.datagram_received(junk, src)
        if drv._timer is not None:
            drv._on_timer()  # fire whatever is due once
        drv.shutdown()
        return drv.fault_count, transport.sent

    faults, sent = asyncio.run(run())
    assert faults == 0 and sent >= 2  # the PILK answer and the SYN-ACK at least


@pytest.mark.req("SES-080", "SES-133")
def test_echo_into_a_zero_window_holds_one_receive_window_at_most() -> None:
    """tracemalloc: 8 MiB pushed at the echo by a peer advertising window 0 (and ignoring ours) leaves the echo
    holding one receive window (retained, so ours stays closed) plus its send buffer -- no growth beyond, no abort."""
    import asyncio
    import gc
    import tracemalloc

    from pilot_proto.drivers.udp import NodeDriver
    from pilot_proto.testing.keys import InsecureDeterministicRng
    from pilot_proto.tunnel.dangerous import CraftedSession, X25519Keypair, derive_session_key, pilk_frame
    from pilot_proto.wire.address import Addr

    async def run() -> tuple[int, Any, int, int]:
        node = Node(TARGET, InsecureDeterministicRng("zw"))
        drv = NodeDriver(node, echo_ports=[7], echo_buffer=256 * 1024)  # default: the stream's 4 MiB send buffer
        transport = _RecordingTransport()
        drv.connection_made(transport)  # type: ignore[arg-type]
        src = ("127.0.0.1", 40000)
        kp = X25519Keypair.generate(InsecureDeterministicRng("zw-peer"))
        drv.datagram_received(pilk_frame(US, kp.public), src)
        session = CraftedSession(derive_session_key(kp.private, transport.out[-1][8:40]), US)
        us, them = Addr(0, US), Addr(0, TARGET)
        for flags, seq in ((0x1, ISN), (0x2, ISN + 1)):
            drv.datagram_received(session.seal(Packet(flags, 1, us, them, 50000, 7, seq, 1 if flags == 2 else 0, 0)
                                               .encode()), src)  # fmt: skip
        chunk, seq = b"z" * 4096, ISN + 1
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(8 * 256):
                pkt = Packet(0x2, 1, us, them, 50000, 7, seq, 1, 0, chunk)
                drv.datagram_received(session.seal(pkt.encode()), src)
                seq = seq_add(seq, len(chunk))
                transport.out.clear()
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        (cid, st) = next(iter(drv.conns.items()))
        sent_buffer = node.stream.connection(cid).send_buffer_size
        drv.shutdown()
        return grown, st, sent_buffer, drv.fault_count

    grown, st, send_buffer, faults = asyncio.run(run())
    window = 512 * 4096
    held = len(st.pending)
    print(f"\n8 MiB into a zero window: +{grown / 2**20:.2f} MiB; echo holds {held} B, send buffer {send_buffer} B")
    assert faults == 0 and st.closed is None  # nothing raised, nobody aborted
    assert len(st.pending) <= window and st.retained == len(st.pending) and send_buffer <= 256 * 1024
    assert grown < window + 256 * 1024 + (2 << 20)  # the held window + send buffer + bounded rings, not 8 MiB
