"""Two stream endpoints joined by an :class:`~pilot_proto.testing.link.ImpairedLink`, on a fake clock.

The session-layer analogue of h11's ``ConnectionPair`` and aioquic's
``client_and_server()``: tests push application calls into either side and
let :meth:`StreamPair.run_until` move time forward.  Each step advances the
clock straight to the earliest of the two endpoints' timers and the link's
next delivery, so a run with minutes of simulated timeouts takes
milliseconds and is exactly reproducible from its seed.

By default the link carries decoded :class:`~pilot_proto.wire.Packet`
objects (fast).  With ``wire=True`` -- or whenever the link may corrupt --
packets cross the link as encoded bytes and are decoded on arrival, so a
damaged packet meets the CRC check (draft 6.5) and is counted in
:attr:`StreamPair.rejected` instead of reaching the endpoint.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pilot_proto.errors import PilotError
from pilot_proto.stream import StreamConfig, StreamEndpoint
from pilot_proto.stream.events import Closed, Connected, ConnectionRequested, DataReceived, Event, Reset, StreamEnded
from pilot_proto.testing.clock import FakeClock
from pilot_proto.testing.link import ImpairedLink, LinkConfig
from pilot_proto.trace import PACKET_RECEIVED, PACKET_SENT, Tracer, TraceRecord
from pilot_proto.wire import Addr, Flags, Packet, SocketAddr, decode_packet
from pilot_proto.wire.header import HEADER_SIZE

__all__ = ["ADDR_A", "ADDR_B", "Side", "SideState", "StreamPair"]

_MAX_STEPS_AT_ONE_TIME = 10_000
ADDR_A = Addr(1, 1)
ADDR_B = Addr(1, 2)

Side = Literal["a", "b"]
_Datagram = Packet | bytes


def _size(d: _Datagram) -> int:
    return HEADER_SIZE + len(d.payload) if type(d) is Packet else len(d)


def _corrupt(d: _Datagram, rng: random.Random) -> _Datagram:
    raw = bytearray(d if isinstance(d, bytes) else d.encode())
    raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    return bytes(raw)


def _flag_names(flags: int) -> str:
    return "|".join(f.name for f in Flags if f and flags & f and f.name) or "NONE"


@dataclass
class SideState:
    """What one side's application has seen, accumulated from its events."""

    endpoint: StreamEndpoint
    events: list[Event] = field(default_factory=list)
    received: dict[int, bytearray] = field(default_factory=dict)
    connected: set[int] = field(default_factory=set)
    ended: set[int] = field(default_factory=set)
    closed: dict[int, Closed] = field(default_factory=dict)
    reset: set[int] = field(default_factory=set)
    accepted: list[int] = field(default_factory=list)

    def data(self, conn_id: int) -> bytes:
        return bytes(self.received.get(conn_id, b""))


class StreamPair:
    """Endpoint ``a`` (address ``addr_a``) and ``b`` (``addr_b``) over one impaired link.

    ``keep_events=False`` stops the per-side event list from growing (received
    data is still accumulated); benchmarks use it.
    """

    def __init__(
        self,
        config: StreamConfig | None = None,
        *,
        config_b: StreamConfig | None = None,
        link: LinkConfig | None = None,
        seed: int = 0,
        start: float = 0.0,
        addr_a: Addr = ADDR_A,
        addr_b: Addr = ADDR_B,
        tracer: Tracer | None = None,
        wire: bool = False,
        keep_events: bool = True,
        collect_data: bool = True,
    ) -> None:
        cfg_a = config or StreamConfig.for_profile()
        cfg_b = config_b or cfg_a
        self.clock = FakeClock(start)
        self.rng = random.Random(seed)
        self.link: ImpairedLink[_Datagram, Addr] = ImpairedLink(
            link, rng=random.Random(self.rng.getrandbits(64)), size_of=_size, corrupter=_corrupt
        )
        self.wire = wire
        self.keep_events = keep_events
        self.collect_data = collect_data
        self.tracer = tracer
        self.rejected = 0  # datagrams that failed to decode on arrival (corruption)
        #: sides whose application is not reading: their events (and receive window) pile up
        self.paused: set[Side] = set()
        #: called with (side, packet, now) for every packet a side puts on the link
        self.observers: list[Callable[[Side, Packet, float], None]] = []
        isn_rng = random.Random(self.rng.getrandbits(64))
        self.addrs: dict[Side, Addr] = {"a": addr_a, "b": addr_b}
        self.sides: dict[Side, SideState] = {}

        def isn() -> int:
            return isn_rng.getrandbits(32)

        plan: tuple[tuple[Side, Addr, StreamConfig], ...] = (("a", addr_a, cfg_a), ("b", addr_b, cfg_b))
        for side, addr, cfg in plan:
            tr = self._side_tracer(side) if tracer else None
            self.sides[side] = SideState(StreamEndpoint(addr, config=cfg, isn_source=isn, tracer=tr))
        self._by_addr: dict[Addr, Side] = {addr_a: "a", addr_b: "b"}

    # -- access ----------------------------------------------------------------
    @property
    def a(self) -> StreamEndpoint:
        return self.sides["a"].endpoint

    @property
    def b(self) -> StreamEndpoint:
        return self.sides["b"].endpoint

    @property
    def now(self) -> float:
        return self.clock.now

    def _side_tracer(self, side: Side) -> Tracer:
        sink = self.tracer
        assert sink is not None

        def emit(record: TraceRecord) -> None:
            record = dict(record)
            record["side"] = side
            if record.get("time") is None:  # endpoint-level records may not know the time
                record["time"] = self.clock.now
            record.setdefault("conn", "endpoint")
            sink(record)

        return emit

    def _trace_packet(self, name: str, side: Side, pkt: Packet, now: float) -> None:
        assert self.tracer is not None
        if name == PACKET_SENT:
            local_port, remote = pkt.src_port, SocketAddr(pkt.dst, pkt.dst_port)
        else:
            local_port, remote = pkt.dst_port, SocketAddr(pkt.src, pkt.src_port)
        conn = self.sides[side].endpoint.find(remote, local_port)
        self.tracer(
            {"time": now, "name": name, "conn": conn.id if conn is not None else f"{local_port}>{remote.port}",
             "side": side, "seq": pkt.seq, "ack": pkt.ack, "len": len(pkt.payload), "window": pkt.window,
             "flags": _flag_names(pkt.flags)}
        )  # fmt: skip

    # -- application helpers -----------------------------------------------------
    def connect(self, port: int = 1000, *, listen: bool = True, max_time: float = 60.0) -> tuple[int, int]:
        """``b`` listens on ``port``, ``a`` dials it; runs until both report the connection."""
        if listen:
            self.b.listen(port)
        conn_a = self.a.connect(SocketAddr(self.addrs["b"], port), self.now)
        self.flush()
        sa, sb = self.sides["a"], self.sides["b"]
        ok = self.run_until(lambda: conn_a in sa.connected and bool(sb.connected), max_time=max_time)
        if not ok:
            raise TimeoutError(f"handshake did not complete by t={self.now}")
        return conn_a, next(iter(sb.connected)) if len(sb.connected) == 1 else sb.accepted[-1]

    def send(self, side: Side, conn_id: int, data: bytes) -> None:
        self.sides[side].endpoint.send(conn_id, data, self.now)
        self.flush()

    def close(self, side: Side, conn_id: int) -> None:
        self.sides[side].endpoint.close(conn_id, self.now)
        self.flush()

    def pause_reading(self, side: Side) -> None:
        """Stop draining ``side``'s events, as an application that does not read (its window fills)."""
        self.paused.add(side)

    def resume_reading(self, side: Side) -> None:
        self.paused.discard(side)
        self._drain_events()
        self.flush()

    # -- the loop ----------------------------------------------------------------
    def flush(self) -> int:
        """Move every queued outgoing packet of both sides onto the link; returns how many."""
        n = 0
        now = self.clock.now
        send = self.link.send
        tracer, observers, wire = self.tracer, self.observers, self.wire
        plain = tracer is None and not observers and not wire  # the benchmark case: hand packets straight over
        for side, state in self.sides.items():
            pkts = state.endpoint.packets_to_send()
            n += len(pkts)
            if plain:
                for pkt in pkts:
                    send(pkt.src, pkt.dst, pkt, now)
                continue
            for pkt in pkts:
                if tracer is not None:
                    self._trace_packet(PACKET_SENT, side, pkt, now)
                for observe in observers:
                    observe(side, pkt, now)
                send(pkt.src, pkt.dst, pkt.encode() if wire else pkt, now)
        return n

    def _drain_events(self) -> None:
        for side, state in self.sides.items():
            if side in self.paused:
                continue
            next_event = state.endpoint.next_event
            keep, collect = self.keep_events, self.collect_data
            received = state.received
            while (ev := next_event()) is not None:
                if keep:
                    state.events.append(ev)
                if type(ev) is DataReceived:
                    if collect:
                        buf = received.get(ev.conn_id)
                        if buf is None:
                            buf = received[ev.conn_id] = bytearray()
                        buf += ev.data
                elif isinstance(ev, Connected):
                    state.connected.add(ev.conn_id)
                elif isinstance(ev, ConnectionRequested):
                    state.accepted.append(ev.conn_id)
                elif isinstance(ev, StreamEnded):
                    state.ended.add(ev.conn_id)
                elif isinstance(ev, Closed):
                    state.closed[ev.conn_id] = ev
                elif isinstance(ev, Reset):
                    state.reset.add(ev.conn_id)

    def next_time(self) -> float | None:
        """The earliest pending deadline: either endpoint's timer or the next delivery."""
        best = self.link.next_delivery_time()
        for state in self.sides.values():
            t = state.endpoint.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def step(self, max_time: float = float("inf")) -> bool:
        """Advance to the next deadline (not past ``max_time``) and process it; False if nothing is pending."""
        when = self.next_time()
        if when is None or when > max_time:
            return False
        now = self.clock.advance_to(when)
        by_addr = self._by_addr
        sides = self.sides
        tracer = self.tracer
        for _, _, dst, item in self.link.deliverable(now):
            side = by_addr.get(dst)
            if side is None:
                continue
            ep = sides[side].endpoint
            if type(item) is Packet and tracer is None:
                ep.receive_packet(item, now)  # the common case: decoded packets, no tracing
                continue
            if type(item) is bytes:
                try:
                    pkt = decode_packet(item, ep.config.profile, check_version=False)
                except PilotError:
                    self.rejected += 1
                    continue
            else:
                pkt = item  # type: ignore[assignment]
            if tracer is not None:
                self._trace_packet(PACKET_RECEIVED, side, pkt, now)
            ep.receive_packet(pkt, now)
        for state in self.sides.values():
            timer = state.endpoint.get_timer()
            if timer is not None and timer <= now:
                state.endpoint.handle_timer(now)
        self.flush()
        self._drain_events()
        return True

    def run_until(
        self, predicate: Callable[[], bool] | None = None, max_time: float = 300.0, max_steps: int = 10_000_000
    ) -> bool:
        """Step until ``predicate()`` holds (True) or nothing is pending / ``max_time`` passes (False).

        With no predicate, runs until both sides are quiet (no timers, empty link).
        """
        self.flush()
        self._drain_events()
        last, stuck = self.clock.now, 0
        for _ in range(max_steps):
            if predicate is not None and predicate():
                return True
            if not self.step(max_time):
                return predicate is None or predicate()
            if self.clock.now == last:
                stuck += 1
                if stuck > _MAX_STEPS_AT_ONE_TIME:
                    raise RuntimeError(f"livelock: {stuck} steps at t={last} without time advancing (a timer "
                                       f"that fires without moving its deadline?)")  # fmt: skip
            else:
                last, stuck = self.clock.now, 0
        raise RuntimeError(f"run_until: {max_steps} steps without reaching the predicate (t={self.now})")

    def advance(self, seconds: float) -> None:
        """Process everything due within the next ``seconds`` and leave the clock exactly there."""
        end = self.clock.now + seconds
        self.run_until(None, max_time=end)
        self.clock.advance_to(end)
