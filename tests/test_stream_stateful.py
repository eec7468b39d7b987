"""Hypothesis stateful tests: two endpoints over a bad network still move bytes exactly (draft 8.5-8.8).

A ``RuleBasedStateMachine`` drives a :class:`~pilot_proto.testing.pair.StreamPair`:
both applications write random chunks, time advances by random amounts, the
link's impairments change (up to 30 % loss per direction plus reordering,
duplication, jitter and bit corruption caught by the CRC), and the receiving
application sometimes stops reading so the window closes.  After every step
the bytes each side has delivered are a prefix of what the other side wrote,
and every buffer and window is within its configured bound; at the end both
sides close and must have received exactly what was written.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pilot_proto.profile import Profile
from pilot_proto.stream.config import StreamConfig
from pilot_proto.stream.events import CloseReason
from pilot_proto.testing.link import LinkConfig
from pilot_proto.testing.pair import Side, StreamPair
from pilot_proto.wire import Flags, Packet
from pilot_proto.wire.sack import decode_sack

REQS = ("SES-040", "SES-050", "SES-051", "SES-052", "SES-062", "SES-077", "SES-081", "SES-093", "SES-134", "PKT-010")
MSS = 512  # small segments: more packets per byte, more chances to lose and reorder
BUF_SEGMENTS = 16
#: extra StreamConfig overrides (empty: the profiles' defaults); a place to pin a work-around while a bug is open
EXTRA: dict[str, object] = {}


class StreamOverBadNetwork(RuleBasedStateMachine):
    """One connection a <-> b; both directions carry data."""

    pair: StreamPair
    conns: dict[Side, int]

    @initialize(
        seed=st.integers(0, 2**32 - 1),
        profile=st.sampled_from([Profile.DRAFT, Profile.GO_INTEROP]),
        nodelay=st.booleans(),
    )
    def setup(self, seed: int, profile: Profile, nodelay: bool) -> None:
        self.cfg = StreamConfig.for_profile(profile, mss=MSS, recv_buf_segments=BUF_SEGMENTS, nodelay=nodelay, **EXTRA)
        self.pair = StreamPair(self.cfg, link=LinkConfig(delay=0.01), seed=seed)
        self.problems: list[str] = []
        self.pair.observers.append(self._check_packet)
        conn_a, conn_b = self.pair.connect()
        self.conns = {"a": conn_a, "b": conn_b}
        self.written: dict[Side, bytearray] = {"a": bytearray(), "b": bytearray()}
        self.counter = 0

    def _check_packet(self, side: Side, pkt: Packet, now: float) -> None:
        """Every packet on the wire respects the segment size, the window field and the SACK block limit."""
        if len(pkt.payload) > MSS and not pkt.flags & Flags.SYN:
            self.problems.append(f"{side}: payload {len(pkt.payload)} > mss {MSS}")
        if pkt.window > BUF_SEGMENTS:
            self.problems.append(f"{side}: advertised window {pkt.window} > buffer {BUF_SEGMENTS} segments")
        if pkt.flags == Flags.ACK and pkt.payload.startswith(b"SACK"):
            try:
                blocks = decode_sack(pkt.payload)
            except Exception as exc:  # our own SACK must always decode
                self.problems.append(f"{side}: undecodable SACK {pkt.payload.hex()}: {exc}")
            else:
                if len(blocks) > 4:
                    self.problems.append(f"{side}: {len(blocks)} SACK blocks")

    def _chunk(self, n: int) -> bytes:
        # a recognisable, non-repeating pattern: any misplaced or duplicated byte shows up
        out = bytearray()
        while len(out) < n:
            out += self.counter.to_bytes(4, "big")
            self.counter += 1
        return bytes(out[:n])

    # -- rules ---------------------------------------------------------------------
    @rule(side=st.sampled_from(["a", "b"]), size=st.integers(1, 6000))
    def write(self, side: Side, size: int) -> None:
        data = self._chunk(size)
        self.pair.send(side, self.conns[side], data)
        self.written[side] += data

    @rule(dt=st.floats(0.001, 3.0))
    def advance(self, dt: float) -> None:
        self.pair.advance(dt)

    @rule(
        direction=st.sampled_from(["both", "ab", "ba"]),
        loss=st.sampled_from([0.0, 0.01, 0.1, 0.2, 0.3]),
        reorder=st.sampled_from([0.0, 0.1, 0.3]),
        duplicate=st.sampled_from([0.0, 0.05, 0.2]),
        jitter=st.sampled_from([0.0, 0.005, 0.02]),
        corrupt=st.sampled_from([0.0, 0.0, 0.02]),
        bandwidth=st.sampled_from([None, 200_000.0]),
    )
    def impair(
        self,
        direction: str,
        loss: float,
        reorder: float,
        duplicate: float,
        jitter: float,
        corrupt: float,
        bandwidth: float | None,
    ) -> None:
        cfg = LinkConfig(delay=0.01, jitter=jitter, loss=loss, reorder=reorder, duplicate=duplicate, corrupt=corrupt,
                         bandwidth=bandwidth, queue_limit=64 if bandwidth else None)  # fmt: skip
        a, b = self.pair.addrs["a"], self.pair.addrs["b"]
        if direction == "both":
            self.pair.link.configure(cfg)
        elif direction == "ab":
            self.pair.link.configure(cfg, a, b)
        else:
            self.pair.link.configure(cfg, b, a)

    @precondition(lambda self: "b" not in self.pair.paused)
    @rule()
    def stop_reading(self) -> None:
        self.pair.pause_reading("b")

    @precondition(lambda self: "b" in self.pair.paused)
    @rule()
    def start_reading(self) -> None:
        self.pair.resume_reading("b")

    # -- invariants ------------------------------------------------------------------
    @invariant()
    def delivered_is_prefix_of_written(self) -> None:
        for side, other in (("a", "b"), ("b", "a")):
            got = self.pair.sides[side].data(self.conns[side])  # type: ignore[index]
            sent = self.written[other]  # type: ignore[index]
            assert sent.startswith(got), f"{side} delivered bytes that {other} never wrote at that offset"

    @invariant()
    def buffers_within_bounds(self) -> None:
        assert not self.problems, self.problems[:5]
        for side in ("a", "b"):
            ep = self.pair.sides[side].endpoint
            for conn in ep.connections():
                assert conn.recv_unread + conn.ooo_bytes <= self.cfg.recv_buf_bytes, (
                    f"{side}: receive buffer {conn.recv_unread}+{conn.ooo_bytes} over {self.cfg.recv_buf_bytes}"
                )
                assert 0 < conn.cwnd <= self.cfg.max_cwnd
                assert conn.bytes_in_flight >= 0
                assert conn.send_buffer_size <= min(len(self.written[side]), self.cfg.send_buffer_bytes)
                # the scoreboard holds only unacknowledged positions, so it is bounded by the send buffer (+ FIN)
                segs = conn.rec.segs
                held = sum(s.end - s.start for s in segs)
                assert held <= conn.snd_nxt - conn.snd_una <= self.cfg.send_buffer_bytes + 1
                assert all(a.end <= b.start for a, b in itertools.pairwise(segs))

    @invariant()
    def nothing_failed(self) -> None:
        for side in ("a", "b"):
            st_ = self.pair.sides[side]
            assert not st_.reset, f"{side} saw a reset"
            bad = [c for c in st_.closed.values() if c.reason is not CloseReason.NORMAL]
            assert not bad, f"{side} closed abnormally: {bad}"

    def teardown(self) -> None:
        if not hasattr(self, "pair"):
            return
        pair = self.pair
        pair.resume_reading("b")
        sides: tuple[Side, Side] = ("a", "b")

        def delivered() -> bool:
            return all(len(pair.sides[s].data(self.conns[s])) >= len(self.written[o]) for s, o in (sides, sides[::-1]))

        # 1. everything written arrives, exactly once and in order.  Loss is capped at 10 % for this phase: the
        # draft bounds retransmissions (8.5.1: 8 attempts, 7 under go-interop, E-SES-7), so under sustained loss
        # p each way one segment fails them all with probability about (1 - (1 - p)^2)^8 -- 0.5 % at p = 0.3,
        # which a few hundred segments reach (the deep hypothesis profile did: go-interop, 30 % both ways, RST
        # after the last attempt), against 2e-6 at p = 0.1.  Giving up then is the draft's rule, not a bug.
        a, b = pair.addrs["a"], pair.addrs["b"]
        for src, dst in ((a, b), (b, a)):
            cfg = pair.link.config_for(src, dst)
            pair.link.configure(cfg.with_(loss=min(cfg.loss, 0.1)), src, dst)
        pair.run_until(delivered, max_time=pair.now + 600.0)
        for side, other in (sides, sides[::-1]):
            got = pair.sides[side].data(self.conns[side])
            assert got == bytes(self.written[other]), (
                f"{side} got {len(got)} bytes, {other} wrote {len(self.written[other])}"
            )
        # 2. both close; each sees the other's FIN and a normal close.  Loss is lifted for this phase (reordering,
        # duplication and jitter stay): with sustained heavy loss the 10 s TIME_WAIT (8.13) can expire before the
        # peer's backed-off FIN retransmission (RTO up to 10 s, 8.5.1) and the peer then gets an RST, by design
        # (as in TCP when the final ACK is lost more than once).
        for src, dst in ((a, b), (b, a)):
            cfg = pair.link.config_for(src, dst)
            pair.link.configure(cfg.with_(loss=0.0, corrupt=0.0, queue_limit=None), src, dst)
        for side in sides:
            pair.close(side, self.conns[side])
        done = pair.run_until(
            lambda: all(self.conns[s] in pair.sides[s].closed for s in sides), max_time=pair.now + 600.0
        )
        assert done, f"close did not complete by t={pair.now}"
        for side in sides:
            s = pair.sides[side]
            assert self.conns[side] in s.ended, f"{side} never saw the peer's FIN"
            assert s.closed[self.conns[side]].reason is CloseReason.NORMAL, s.closed
            assert not s.reset
        # 3. TIME_WAIT expires and nothing is left behind
        pair.run_until(None, max_time=pair.now + 60.0)
        assert not list(pair.a.connections()) and not list(pair.b.connections())
        assert pair.a.get_timer() is None and pair.b.get_timer() is None


StreamOverBadNetwork.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStreamOverBadNetwork = pytest.mark.req(*REQS)(StreamOverBadNetwork.TestCase)


@pytest.mark.req("SES-063", "SES-064", "SES-065", "SES-134")
def test_stale_sack_is_not_data() -> None:
    """Found by the state machine above (STREAM-B bug 1, fixed in eb2bc3a): a reordered SACK that arrives after the
    cumulative ACK passed its blocks is SACK (and ignored), never 13 bytes of application data."""
    from pilot_proto.stream.events import DataReceived
    from pilot_proto.wire import PacketProtocol
    from pilot_proto.wire.sack import encode_sack

    cfg = StreamConfig.for_profile(Profile.DRAFT, mss=MSS, nodelay=True)
    pair = StreamPair(cfg, link=LinkConfig(delay=0.01), seed=1)
    ca, cb = pair.connect()
    pair.send("a", ca, bytes(3 * MSS))
    pair.run_until(lambda: pair.a.connection(ca).bytes_in_flight == 0, max_time=10.0)
    conn_a, conn_b = pair.a.connection(ca), pair.b.connection(cb)
    assert conn_a.snd_una == conn_a.snd_nxt == 1 + 3 * MSS
    mask = 0xFFFFFFFF
    stale = encode_sack([((conn_a.iss + 1 + MSS) & mask, (conn_a.iss + 1 + 2 * MSS) & mask)])
    pkt = Packet(Flags.ACK, PacketProtocol.STREAM, pair.addrs["b"], pair.addrs["a"], conn_b.local_port,
                 conn_a.local_port, (conn_b.iss + conn_b.snd_nxt) & mask, (conn_a.iss + conn_a.snd_nxt) & mask,
                 cfg.recv_buf_segments, stale)  # fmt: skip
    pair.a.receive_packet(pkt, pair.now)
    data = [ev for ev in pair.a.events() if isinstance(ev, DataReceived)]
    assert data == [], f"stale SACK delivered as data: {data}"
