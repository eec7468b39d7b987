"""Sanity check, run first and last: the target keys a tunnel and answers through it (draft 7.3, 10.2).

If the first check fails every other test is ``inconclusive``: nothing else can be judged against a
target that does not answer.  The last check proves the run did not leave the target wedged.
"""

from __future__ import annotations

import pytest

from pilot_proto.conformance.harness import Peer


def _sanity(peer: Peer) -> None:
    keys = peer.key_exchange()
    assert keys is not None, "the target did not answer a PILK key exchange within 3 s (x --timeout-scale)"
    if peer.target.node_id is not None:
        assert keys.target_id == peer.target.node_id, f"target answered as node {keys.target_id}"
    if peer.ping() is not None:
        return
    # no ping service: a SYN to the echo port must at least get an answer (SYN-ACK or RST)
    s = peer.stream(7)
    s.syn()
    assert s.reply(3.0) is not None, "the target answers neither a Control ping nor a SYN through the tunnel"


@pytest.mark.conformance_sanity("first")
@pytest.mark.req("TUN-016", "SEC-005")
def test_sanity_first(peer: Peer) -> None:
    _sanity(peer)


@pytest.mark.conformance_sanity("last")
@pytest.mark.req("TUN-016", "SEC-005")
def test_sanity_last(peer: Peer) -> None:
    _sanity(peer)
