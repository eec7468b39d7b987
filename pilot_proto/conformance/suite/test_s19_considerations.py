"""Draft 19: security considerations that show on the wire.

19.7 (metadata exposure): a PILS frame carries its sender's node ID in clear -- the receiver needs it to find the
key -- while the inner header (addresses, ports, sequence numbers) and the payload stay confidential."""

from __future__ import annotations

import pytest

from pilot_proto.conformance.harness import Peer
from pilot_proto.wire.header import encode_packet

ECHO = 7


@pytest.mark.req("CONS-012")
def test_pils_shows_the_sender_id_but_not_the_inner_packet(peer: Peer) -> None:
    """Echo a marker: every datagram from the target is a PILS frame whose cleartext sender field is its node ID,
    and neither the marker nor the inner header of any packet it sent appears in clear."""
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    marker = b"pilot-conformance-cleartext-" + peer.rng.randbytes(8).hex().encode()
    s.send(marker)
    assert s.read(len(marker)) == marker, "the echo service did not return the marker"
    target_id = peer.target_addr().node
    sent = [r.data for r in peer.log.records if r.direction == "in" and r.data[:4] == b"PILS"]
    assert sent, "no PILS frame from the target in the wire log"
    for data in sent:
        assert int.from_bytes(data[4:8], "big") == target_id, (
            f"a PILS frame's cleartext sender is {int.from_bytes(data[4:8], 'big')}, not the target {target_id}"
        )
    inner = [i.packet for i in peer.inbound if i.packet is not None and s.mine(i.packet)]
    assert inner, "no inner packet of the echo connection decoded"
    for data in sent:
        assert marker not in data, "the echoed payload appears in clear inside a PILS frame"
        for pkt in inner:
            head = encode_packet(pkt)[:30]  # addresses, ports, seq, ack, window: everything but the CRC
            assert head[4:] not in data, f"the inner header of {pkt.describe()} appears in clear inside a PILS frame"
