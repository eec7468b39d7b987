"""Draft 8.12: a connection idle for 120 s is closed -- a long test (``--long``; deselected by default, the report
says so).  The keepalive half of 8.12 is ``test_s08_timers.py::test_idle_connection_sends_keepalive``."""

from __future__ import annotations

import time

import pytest

from pilot_proto.conformance.harness import ACK, FIN, RST, Peer
from pilot_proto.profile import Profile

ECHO = 7
IDLE = 120.0  # draft 8.12
#: Judged within IDLE - 10 .. IDLE + 20 s: a sender that checks idleness on a coarse tick (GoB: every 15 s) closes up
#: to 15 s late.
EARLY, LATE = 10.0, 20.0


@pytest.mark.conformance_long
@pytest.mark.req("SES-111")
def test_idle_connection_is_closed_after_120_s(peer: Peer) -> None:
    """Exchange one byte over echo, then send no data: the target must close the connection (FIN or RST) about
    120 s later.  Retransmitted data is acknowledged again.  Under ``draft`` the keepalives (pure ACKs) are answered
    too -- idle means no data, so a live but silent peer is closed; under ``go-interop`` they are not, since GoB
    counts any ACK as activity and closes only a connection whose peer sent nothing at all (erratum E-CB-3)."""
    answer_keepalives = peer.target.profile is Profile.DRAFT
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    s.send(b"i")
    assert s.read(1) == b"i", "the echo service did not return the byte"
    t0 = time.monotonic()
    end = None
    keepalives = 0
    deadline = t0 + peer.wait(IDLE + LATE + 10.0)
    while (left := (deadline - time.monotonic()) / peer.target.scale) > 0:
        p = s.reply(left)
        if p is None:
            break
        if p.flags & (FIN | RST):
            end = p
            break
        if p.payload:
            s.absorb(p)
            s.ack()  # a retransmission of data we already have (our ACK was lost or ignored)
        else:
            keepalives += 1
            if answer_keepalives:
                s.ack()  # answer the probe as a live peer would: an ACK, no data
    took = time.monotonic() - t0
    assert end is not None, f"the connection was still open {took:.0f} s after the last data ({keepalives} keepalives)"
    assert IDLE - EARLY <= took <= (IDLE + LATE) * peer.target.scale, (
        f"the idle connection was closed ({end.describe()}) after {took:.1f} s; draft 8.12: 120 s"
    )
    if end.flags & FIN and not end.flags & RST:
        s.absorb(end)
        s.send(b"", FIN | ACK)  # finish our side so the target does not keep retransmitting its FIN
