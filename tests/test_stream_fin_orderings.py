"""Hypothesis stateful test: arbitrary segment orderings, duplicates and FINs never lose acknowledged data.

A scripted peer cuts a message into segments at random places and hands them, its FIN (alone or riding on
the last data segment) and its ACKs of our replies to an echo service on our endpoint in any order, any
number of times, with time passing in between.  After every step: what we acknowledged has been handed to
the application, every byte we sent back is the message's byte at that position, and our FIN, once sent,
sits exactly after the whole message.  At the end the peer retransmits everything and our echo must have
answered every byte, then closed (draft 8.3, 8.5, 8.5.2; issue 9 "nothing acknowledged is lost").
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from stream_helpers import ACK, FIN, LOCAL, REMOTE, SYN, Echo

from pilot_proto.profile import Profile
from pilot_proto.stream import State, StreamConfig, StreamEndpoint
from pilot_proto.wire import Packet, SocketAddr

OUR_ISN, PEER_ISN = 5000, 0xFFFFFF00  # the peer's sequence numbers wrap during the test
M32 = 0xFFFFFFFF
PORT = 4000


class FinOrderings(RuleBasedStateMachine):
    @initialize(
        profile=st.sampled_from([Profile.DRAFT, Profile.GO_INTEROP]),
        msg=st.binary(min_size=0, max_size=3000),
        cuts=st.lists(st.integers(1, 2999), max_size=8),
        small_buffers=st.booleans(),
    )
    def setup(self, profile: Profile, msg: bytes, cuts: list[int], small_buffers: bool) -> None:
        extra = {"send_buffer_bytes": 700, "recv_buf_segments": 4} if small_buffers else {}
        cfg = StreamConfig.for_profile(profile, mss=400, **extra)
        self.ep = StreamEndpoint(LOCAL, config=cfg, isn_source=lambda: OUR_ISN)
        self.ep.listen(7)
        self.echo = Echo(self.ep)
        self.msg = msg
        edges = sorted({0, len(msg), *(c for c in cuts if c < len(msg))})
        self.segments = [(a, msg[a:b]) for a, b in itertools.pairwise(edges) if b > a]
        self.now = 0.0
        self.got: dict[int, int] = {}  # our reply bytes by relative position (first byte -> byte value)
        self.our_fin: int | None = None
        self.our_ack = 0  # highest relative position of the peer's stream we acknowledged
        self.peer_acked = 0  # how much of our reply the peer has acknowledged
        self._send(Packet(SYN, 1, REMOTE, LOCAL, PORT, 7, PEER_ISN, 0, 16))
        self._send(self._pkt(ACK, 0))
        conn = self.ep.find(SocketAddr(REMOTE, PORT), 7)
        assert conn is not None and conn.state is State.ESTABLISHED
        self.cid = conn.id

    def _pkt(self, flags: int, off: int, payload: bytes = b"") -> Packet:
        return Packet(flags, 1, REMOTE, LOCAL, PORT, 7, (PEER_ISN + 1 + off) & M32,
                      (OUR_ISN + 1 + self.peer_acked) & M32, 16, payload)  # fmt: skip

    def _send(self, pkt: Packet) -> None:
        self.ep.receive_packet(pkt, self.now)
        self._collect()

    def _collect(self) -> None:
        self.echo.pump(self.now)
        for p in self.ep.packets_to_send():
            rel = (p.seq - OUR_ISN - 1) & M32
            if p.payload and not p.flags & SYN and not (p.flags == ACK and p.payload[:4] == b"SACK"):
                for i, b in enumerate(p.payload):
                    assert self.got.setdefault(rel + i, b) == b, "a byte we sent changed on retransmission"
            if p.flags & FIN:
                assert self.our_fin in (None, rel), "our FIN moved"
                self.our_fin = rel
            if p.flags & ACK and not p.flags & SYN:
                ack = (p.ack - PEER_ISN - 1) & M32
                if ack <= len(self.msg) + 1:
                    self.our_ack = max(self.our_ack, ack)

    # -- the peer's moves ------------------------------------------------------------------------------
    @precondition(lambda self: bool(self.segments))
    @rule(data=st.data())
    def segment(self, data: st.DataObject) -> None:
        off, payload = data.draw(st.sampled_from(self.segments))
        self._send(self._pkt(ACK, off, payload))

    @rule(with_last=st.booleans())
    def fin(self, with_last: bool) -> None:
        if with_last and self.segments:
            off, payload = self.segments[-1]
            self._send(self._pkt(ACK | FIN, off, payload))
        else:
            self._send(self._pkt(ACK | FIN, len(self.msg)))

    @rule()
    def ack_our_reply(self) -> None:
        top = 0
        while top in self.got:
            top += 1
        if self.our_fin is not None and top == self.our_fin:
            top += 1
        self.peer_acked = max(self.peer_acked, top)
        self._send(self._pkt(ACK, len(self.msg) + 1 if self.our_ack > len(self.msg) else 0))

    @rule(dt=st.sampled_from([0.001, 0.05, 0.3, 1.5]))
    def wait(self, dt: float) -> None:
        self.now += dt
        deadline = self.ep.get_timer()
        while deadline is not None and deadline <= self.now:
            self.ep.handle_timer(deadline)
            self._collect()
            deadline = self.ep.get_timer()

    # -- what must hold after every step -------------------------------------------------------------------
    @invariant()
    def acknowledged_means_delivered(self) -> None:
        if not hasattr(self, "ep"):
            return
        read = self.echo.received.get(self.cid, 0)
        ended = self.cid in self.echo.ended
        assert self.our_ack <= read + (1 if ended else 0), f"acked {self.our_ack}, app read {read}, ended {ended}"

    @invariant()
    def replies_are_the_message(self) -> None:
        if not hasattr(self, "ep"):
            return
        for pos, b in self.got.items():
            assert pos < len(self.msg) and self.msg[pos] == b
        if self.our_fin is not None:
            assert self.our_fin == len(self.msg), f"our FIN at {self.our_fin}, message {len(self.msg)} B"

    def teardown(self) -> None:
        if not hasattr(self, "ep"):
            return
        for _ in range(200):  # the peer retransmits everything it has and acknowledges what it got
            if self.our_fin is not None and self.peer_acked > self.our_fin:
                break
            for off, payload in self.segments:
                self._send(self._pkt(ACK, off, payload))
            self._send(self._pkt(ACK | FIN, len(self.msg)))
            self.ack_our_reply()
            self.wait(0.3)
        assert self.echo.received.get(self.cid, 0) == len(self.msg)
        assert bytes(self.got[i] for i in range(len(self.got))) == self.msg
        assert self.our_fin == len(self.msg) and self.peer_acked == len(self.msg) + 1


FinOrderings.TestCase.settings = settings(
    max_examples=30, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_fin_orderings_never_lose_acknowledged_data = pytest.mark.req("SES-134", "SES-050", "SES-052", "SES-020")(
    FinOrderings.TestCase
)
