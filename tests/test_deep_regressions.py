"""Regression tests for failures the ``deep`` Hypothesis profile found (tests/conftest.py, issue 13).

Each test pins the minimal falsifying example and the behaviour that is right for it.
"""

from __future__ import annotations

import pytest
from stream_helpers import ACK, FIN, accepted

from pilot_proto.profile import Profile
from pilot_proto.stream import State, StreamConfig
from pilot_proto.stream.events import DataReceived, StreamEnded


@pytest.mark.req("SES-020")
@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
def test_fin_whose_payload_byte_lies_before_rcv_nxt(profile: Profile) -> None:
    """Found by test_random_packets_never_crash_or_break_invariants under ``deep``: a FIN with seq = the
    peer's ISN carrying one byte.  The byte overlaps the SYN's sequence number and is trimmed (nothing is
    delivered); the FIN then sits exactly at rcv_nxt, is accepted and takes one sequence number.  The
    property's bookkeeping (delivered bytes == rcv_nxt - 1) had forgotten the FIN."""
    ep, peer, cid = accepted(StreamConfig.for_profile(profile, mss=100, recv_buf_segments=8), our_isn=0, isn=0)
    conn = ep.connection(cid)
    assert conn.rcv_nxt == 1
    out = peer.feed(peer.packet(FIN, seq=0, ack=0, window=0, payload=b"\x00"), now=0.1)
    assert not [e for e in peer.events if isinstance(e, DataReceived)]
    assert [e for e in peer.events if isinstance(e, StreamEnded)]
    assert conn.rcv_nxt == 2 and conn.state is not State.ESTABLISHED
    assert out and all(p.flags & ACK and p.ack == 2 for p in out)  # the FIN is acknowledged: ack = ISN + 2
