"""Helpers shared by the suite's modules (not tests)."""

from __future__ import annotations

from pilot_proto.conformance.harness import CONTROL, Peer

#: Seconds of silence that count as "the target dropped it" (x --timeout-scale).
QUIET = 0.4


def answered(peer: Peer, src_port: int, seq: int, duration: float = QUIET) -> bool:
    """Did a Control reply to (src_port, seq) arrive within ``duration``?"""
    got = peer.expect_packet(lambda p: p.protocol == CONTROL and p.dst_port == src_port and p.seq == seq, duration)
    return got is not None


def keyed_with_ping(peer: Peer, *, auth: bool = False) -> Peer:
    """Key a tunnel and make sure the target answers pings (else the test is Unsupported)."""
    peer.keyed(auth=auth)
    peer.require_ping()
    return peer
