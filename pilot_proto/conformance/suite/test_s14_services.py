"""Draft 14.1, 8.10, 6.3: the echo service on port 7, segmentation, and datagrams."""

from __future__ import annotations

import pytest

from pilot_proto.conformance.harness import DATAGRAM, STREAM, Peer
from pilot_proto.conformance.suite._common import QUIET
from pilot_proto.conformance.verdicts import NotApplicable
from pilot_proto.profile import Profile
from pilot_proto.wire.header import Packet

ECHO = 7


@pytest.mark.req("SVC-001", "PORT-012")
@pytest.mark.parametrize("size", [1, 1000])
def test_echo_returns_bytes_unchanged(peer: Peer, size: int) -> None:
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    data = bytes(peer.rng.getrandbits(8) for _ in range(size))
    s.send(data)
    assert s.read(size) == data


@pytest.mark.req("SVC-001", "SES-093", "SES-040")
def test_echo_of_many_segments(peer: Peer) -> None:
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    data = peer.rng.randbytes(20000)
    for off in range(0, len(data), 1000):
        s.send(data[off : off + 1000])
    assert s.read(len(data), 8.0) == data, "20 kB echoed through 20 segments came back different"


@pytest.mark.req("SES-064")
def test_sack_lookalike_data_is_data(peer: Peer) -> None:
    if peer.target.profile is not Profile.DRAFT:
        raise NotApplicable("go-interop: Go parses SACK-looking data as SACK (erratum E-SACK-1)")
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    data = b"SACK\x01" + bytes(8)
    s.send(data)
    assert s.read(len(data)) == data, "data that looks like a SACK payload was not delivered as data"


@pytest.mark.req("SES-150", "SES-151")
def test_datagram_to_unbound_port_gets_no_stream_answer(peer: Peer) -> None:
    peer.keyed()
    pkt = Packet(0, DATAGRAM, peer.addr(), peer.target_addr(), peer.new_port(), 4094, payload=b"datagram")
    peer.send_packet(pkt)
    got = [p for p in peer.packets_during(QUIET) if p.protocol == STREAM]
    assert not got, f"a datagram was answered with stream packets: {[p.describe() for p in got]}"
    peer.alive()
