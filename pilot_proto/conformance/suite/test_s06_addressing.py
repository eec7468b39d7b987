"""Draft 6.3, 5: inner packets by protocol and port -- Control pings of any payload size, datagrams to ports
nothing is bound to.  Every packet rides inside a valid PILS frame."""

from __future__ import annotations

import pytest

from pilot_proto.conformance.harness import CONTROL, DATAGRAM, Peer
from pilot_proto.conformance.suite._common import QUIET, keyed_with_ping
from pilot_proto.wire.header import Packet

CLOSED = 4094  # a registered-range port no reference service binds


@pytest.mark.req("SES-152", "SVC-041", "SVC-042", "PORT-010")
@pytest.mark.parametrize("size", [0, 1, 1200], ids=["empty", "1-byte", "1200-bytes"])
def test_ping_payload_is_echoed_exactly(peer: Peer, size: int) -> None:
    keyed_with_ping(peer)
    payload = bytes([0, 0xFF, 0x80]) + peer.rng.randbytes(size - 3) if size > 3 else bytes(size)
    req = peer.ping_packet(payload=payload)
    peer.send_packet(req)
    rep = peer.expect_packet(lambda p: p.protocol == CONTROL and p.dst_port == req.src_port and p.src_port == 0, 2.0)
    assert rep is not None, f"no reply to a ping carrying {size} payload bytes"
    assert rep.seq == req.seq and rep.ack == (req.seq + 1) & 0xFFFFFFFF, f"reply fields: {rep.describe()}"
    how = "with different content" if len(rep.payload) == size else f"as {len(rep.payload)} bytes"
    assert rep.payload == req.payload, f"the ping payload ({size} bytes) came back {how}"


@pytest.mark.req("SES-151", "SES-150", "PKT-012")
def test_datagram_to_closed_port_gets_no_answer(peer: Peer) -> None:
    keyed_with_ping(peer)
    pkt = Packet(0, DATAGRAM, peer.addr(), peer.target_addr(), peer.new_port(), CLOSED, payload=b"anyone there?")
    peer.send_packet(pkt)
    got = peer.packets_during(QUIET)
    assert not got, f"a datagram to unbound port {CLOSED} was answered: {[p.describe() for p in got]}"
    peer.alive()
