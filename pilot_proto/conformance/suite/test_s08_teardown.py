"""Draft 8.3, 8.13: teardown, FIN retransmission and re-acknowledgement, reuse of a closed 4-tuple.

Driven by hand against the echo service on port 7.  The echo only ever closes passively (its FIN answers
ours), so the target's side of every close here is the remote's: CLOSE_WAIT / LAST_ACK, then CLOSED
(draft 8.3 figure; Go moves to TIME_WAIT on a received FIN instead, E-ORC-1).  A target that closes first on
its own cannot be made to do so from the wire, so the closer's TIME_WAIT is judged on our side only."""

from __future__ import annotations

import time

import pytest

from pilot_proto.conformance.harness import ACK, FIN, MASK32, RST, SYN, Peer, Stream
from pilot_proto.conformance.suite._common import QUIET
from pilot_proto.conformance.verdicts import Inconclusive
from pilot_proto.wire.header import Packet

ECHO = 7
PROMPT = 0.15  # seconds: an answer this soon after our duplicate FIN answers it (x --timeout-scale)


def _close_until_target_fin(peer: Peer) -> tuple[Stream, int, Packet]:
    """Connect, echo one byte, send our FIN and wait for the target's FIN (not yet acknowledged by us)."""
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    s.send(b"z")
    assert s.read(1) == b"z", "the echo did not return one byte before the close"
    fin_seq = s.snd_nxt
    s.send(b"", ACK | FIN)
    fin = s.reply(3.0, lambda p: bool(p.flags & FIN))
    if fin is None:
        raise Inconclusive("the echo side sent no FIN of its own within 3 s after ours (test_close_is_acknowledged...)")
    assert fin.ack == (fin_seq + 1) & MASK32, f"the target's FIN acknowledges {fin.ack}, our FIN was seq {fin_seq}"
    return s, fin_seq, fin


@pytest.mark.req("SES-020", "SES-022", "SES-052")
def test_retransmitted_fin_is_reacknowledged(peer: Peer) -> None:
    """Our FIN again (as if the target's ACK of it had been lost) while its own FIN is outstanding: re-ACKed.

    A pure ACK of our FIN counts whenever it comes (within 2 s); one that carries the target's FIN again (GoB
    answers every FIN with FIN|ACK) counts only within :data:`PROMPT` of the duplicate, since after that it may
    be the target's own FIN retransmission, which comes on its timer (RTO >= 200 ms, SES-044), not in answer."""
    s, fin_seq, fin = _close_until_target_fin(peer)
    s.send(b"", ACK | FIN, seq=fin_seq)  # the same FIN, same sequence number; rcv_nxt excludes the target's FIN
    sent = time.monotonic()
    prompt = peer.wait(PROMPT)

    def reack(p: Packet) -> bool:
        if p.flags & (SYN | RST) or p.ack != (fin_seq + 1) & MASK32:
            return False
        return not p.flags & FIN or time.monotonic() - sent <= prompt

    again = s.reply(2.0, reack)
    assert again is not None, (
        f"a retransmitted FIN (seq {fin_seq}) was not acknowledged again: no ACK within 2 s, and no FIN|ACK within "
        f"{prompt:.2f} s"
    )
    s.absorb(fin)
    s.ack()
    assert s.reply(QUIET, lambda p: bool(p.flags & RST) or s.is_data(p)) is None, "RST or data after a clean close"


@pytest.mark.level("SHOULD")
@pytest.mark.req("SES-022", "SES-040", "SES-020")
def test_unacknowledged_fin_is_retransmitted_then_stops(peer: Peer) -> None:
    """The remote's FIN is reliable: retransmitted while unacknowledged, and the close ends once we ACK it.

    SHOULD-level: the draft's figure (8.3) has the remote only acknowledge and close, and its closer enters
    TIME_WAIT without waiting for the remote's FIN (E-SES-14), so a lost remote FIN harms no draft rule; a FIN
    that is sent, though, takes sequence space like data (8.5), and ours is retransmitted (E-STR-2)."""
    s, _fin_seq, fin = _close_until_target_fin(peer)
    again = s.reply(6.0, lambda p: bool(p.flags & FIN) and p.seq == fin.seq)
    assert again is not None, f"the target's FIN (seq {fin.seq}) was not retransmitted within 6 s without an ACK"
    s.absorb(fin)
    s.ack()
    late = s.reply(1.5, lambda p: bool(p.flags & FIN) or s.is_data(p))
    assert late is None, f"after we acknowledged its FIN the target still sent {late.describe() if late else ''}"
    peer.alive()


@pytest.mark.req("SES-022", "SES-121", "SES-010", "SES-011")
def test_syn_reusing_a_closed_tuple_opens_a_new_connection(peer: Peer) -> None:
    """After a complete close (we closed first, so TIME_WAIT is ours), a SYN from the same ports with a new ISN
    starts a new connection: the remote went to CLOSED (draft 8.3); go-interop reuses the tuple (E-SES-10)."""
    s, _fin_seq, fin = _close_until_target_fin(peer)
    s.absorb(fin)
    s.ack()
    isn = (s.isn + 0x10000000) & MASK32
    s2 = peer.stream(ECHO, src_port=s.src_port, isn=isn)
    s2.syn()
    ans = s2.reply(3.0, lambda p: bool(p.flags & (SYN | RST)) or p.ack == (isn + 1) & MASK32)
    if ans is None:
        s2.syn()
        ans = s2.reply(3.0, lambda p: bool(p.flags & (SYN | RST)) or p.ack == (isn + 1) & MASK32)
    assert ans is not None, f"no answer to a SYN reusing the closed 4-tuple (port {s.src_port} -> {ECHO})"
    assert not ans.flags & RST, f"a SYN reusing the closed tuple was refused: {ans.describe()}"
    assert ans.flags & (SYN | ACK) == SYN | ACK, f"expected a SYN-ACK for the new connection, got {ans.describe()}"
    assert ans.ack == (isn + 1) & MASK32, f"the SYN-ACK acknowledges {ans.ack}, the new ISN + 1 is {(isn + 1) & MASK32}"
    s2.synack, s2.irs, s2.rcv_nxt = ans, ans.seq, (ans.seq + 1) & MASK32
    s2.ack()
    s2.send(b"again")
    assert s2.read(5) == b"again", "the new connection on the reused tuple did not carry data"
