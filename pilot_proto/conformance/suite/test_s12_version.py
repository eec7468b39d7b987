"""Draft 12: version negotiation.  A SYN of an unsupported version is refused with RST (12.2); any
other packet of another version is silently discarded."""

from __future__ import annotations

import pytest

from pilot_proto.conformance.harness import RST, Peer
from pilot_proto.conformance.suite._common import QUIET
from pilot_proto.profile import Profile

ECHO = 7


@pytest.mark.req("VER-005", "VER-003")
@pytest.mark.parametrize("version", [2, 15])
def test_syn_with_unsupported_version_gets_rst(peer: Peer, version: int) -> None:
    peer.keyed()
    peer.require_ping()
    s = peer.stream(ECHO)
    s.syn(version=version)
    ans = s.reply(1.5)
    if peer.target.profile is Profile.DRAFT:
        assert ans is not None, f"draft 12.2: a version-{version} SYN must be answered with RST; nothing came"
        assert ans.flags & RST, f"expected RST to a version-{version} SYN, got {ans.describe()}"
    else:
        assert ans is None or ans.flags & RST, f"go-interop: a version-{version} SYN was accepted: {ans.describe()}"


@pytest.mark.req("VER-006", "VER-004")
def test_data_with_other_version_is_discarded(peer: Peer) -> None:
    peer.keyed()
    s = peer.stream(ECHO)
    synack = s.connect()
    assert synack.version == 1, f"the SYN-ACK carries version {synack.version}, not the SYN's 1 (VER-004)"
    from pilot_proto.conformance.harness import ACK, raw_header

    pkt = s.packet(ACK, b"v2data")
    peer.send_packet(raw_header(flags=ACK, src=pkt.src, dst=pkt.dst, src_port=pkt.src_port, dst_port=pkt.dst_port,
                                seq=pkt.seq, ack=pkt.ack, window=pkt.window, payload=b"v2data", version=2))  # fmt: skip
    assert s.reply(QUIET, s.is_data) is None, "data in a version-2 packet was delivered"
    s.send(b"v1data")
    assert s.read(6) == b"v1data", "the connection stopped working after a version-2 packet"
