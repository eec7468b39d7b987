"""Session-layer scenario vectors (draft 8, 12.2): ``stream-scenarios.json``.

packetdrill-like scripts another runtime can replay without our code.  Each
test is one endpoint under test (address ``local``) talking to a scripted
peer (``remote``), with a profile, ``config`` overrides of
:class:`~pilot_proto.stream.StreamConfig` (names as in that class, e.g.
``mss``, ``nodelay``, ``recv_buf_segments``), and the initial sequence
numbers the endpoint must use, in order (``isn``).  ``steps`` run in order;
``t`` is absolute time in seconds:

``listen`` {port}
    the application listens.
``connect`` {port}
    the application dials ``remote:port`` (our local port is the first
    ephemeral port, 49152).
``recv`` {packet}
    the peer's packet reaches the endpoint at ``t``.
``app_send`` {data} / ``app_close`` / ``app_read``
    the application writes bytes (hex), closes, or reads everything pending
    (tests whose ``read`` is ``"manual"`` only read at ``app_read``; the others
    read after every step).
``timer``
    the endpoint's next deadline must be exactly ``t`` (within 1 us); the
    timer fires at ``t``.
``expect`` {packets, events}
    everything the endpoint emitted in reaction to the previous step, in
    order.  A step that is not followed by ``expect`` must emit nothing.

Packets: ``flags`` as a list of names (SYN, ACK, FIN, RST), ``version``,
``protocol`` (1 stream), ``src``/``dst`` address text, ``srcPort``,
``dstPort``, ``seq``, ``ack``, ``window`` (free receive segments) and
``payload`` hex; the checksum is whatever the encoding gives.  Events:
``{"type": "Connected" | "ConnectionRequested" | "DataReceived" (with
"data" hex) | "StreamEnded" | "Reset" | "Closed" (with "reason")}``.

The exact packets are what this implementation produces, but the generator
states each scenario's verdict first -- the flags of the packets that matter,
the events and the timer schedule the draft (or the erratum named beside it)
requires -- and refuses to write a scenario our endpoint disagrees with
(issue 13); tests/test_stream_scenarios.py and tests/test_scenario_rules.py
check the shipped file against the draft rules again, independently.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pilot_proto.profile import Profile
from pilot_proto.stream import StreamConfig, StreamEndpoint
from pilot_proto.stream.events import (
    Closed,
    Connected,
    ConnectionRequested,
    DataReceived,
    Event,
    Reset,
    StreamEnded,
)
from pilot_proto.vectors import VectorSuite
from pilot_proto.vectors._format import Doc, ExpectationMismatch, iter_tests, make_doc
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.header import VERSION, Flags, Packet, PacketProtocol

__all__ = ["LOCAL", "REMOTE", "SUITES", "event_to_json", "packet_from_json", "packet_to_json", "replay"]

FILENAME = "stream-scenarios.json"
LOCAL = Addr(1, 0x0000_0010)
REMOTE = Addr(1, 0x0000_0020)
EPHEMERAL = 49152
SERVICE = 1000
_MASK = 0xFFFFFFFF
_FLAG_NAMES = ("SYN", "ACK", "FIN", "RST")
_TIME_TOLERANCE = 1e-6


# -- JSON forms ---------------------------------------------------------------------------------------------------
def packet_to_json(pkt: Packet) -> dict[str, Any]:
    return {
        "flags": [n for n in _FLAG_NAMES if pkt.flags & Flags[n]],
        "version": pkt.version,
        "protocol": int(pkt.protocol),
        "src": str(pkt.src),
        "dst": str(pkt.dst),
        "srcPort": pkt.src_port,
        "dstPort": pkt.dst_port,
        "seq": pkt.seq,
        "ack": pkt.ack,
        "window": pkt.window,
        "payload": pkt.payload.hex(),
    }


def packet_from_json(obj: dict[str, Any]) -> Packet:
    flags = 0
    for name in obj["flags"]:
        flags |= int(Flags[name])
    return Packet(flags, obj["protocol"], Addr.parse(obj["src"], Profile.GO_INTEROP),
                  Addr.parse(obj["dst"], Profile.GO_INTEROP), obj["srcPort"], obj["dstPort"], obj["seq"], obj["ack"],
                  obj["window"], bytes.fromhex(obj["payload"]), obj["version"])  # fmt: skip


def event_to_json(ev: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(ev).__name__}
    if isinstance(ev, DataReceived):
        out["data"] = ev.data.hex()
    elif isinstance(ev, Closed):
        out["reason"] = ev.reason.value
    return out


_TRACKED = (Connected, ConnectionRequested, DataReceived, StreamEnded, Reset, Closed)


# -- replay (used by both the generator and verify) ----------------------------------------------------------------
class _Runner:
    """One endpoint under test plus the bookkeeping shared by generation and replay."""

    def __init__(self, profile: Profile, config: dict[str, Any], isns: list[int], manual_read: bool) -> None:
        it: Iterator[int] = iter(isns)
        self.isn_drawn = 0

        def isn() -> int:
            self.isn_drawn += 1
            return next(it)

        self.ep = StreamEndpoint(LOCAL, config=StreamConfig.for_profile(profile, **config), isn_source=isn)
        self.conn: int | None = None
        self.manual_read = manual_read

    def _events(self, force: bool = False) -> list[dict[str, Any]]:
        if self.manual_read and not force:
            return []
        out = []
        while (ev := self.ep.next_event()) is not None:
            if isinstance(ev, ConnectionRequested | Connected) and self.conn is None:
                self.conn = ev.conn_id
            if isinstance(ev, _TRACKED):
                out.append(event_to_json(ev))
        return out

    def _fire_until(self, t: float, *, allow_output_from: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Fire every timer due by ``t``; output from a deadline before ``allow_output_from`` is an error."""
        ep = self.ep
        packets: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for _ in range(10_000):
            d = ep.get_timer()
            if d is None or d > t:
                return packets, events
            ep.handle_timer(d)
            out = [packet_to_json(p) for p in ep.packets_to_send()]
            evs = self._events()
            if (out or evs) and d < allow_output_from:
                raise AssertionError(f"a timer at t={d!r} emitted {out or evs} before the step's time")
            packets += out
            events += evs
        raise AssertionError(f"timers keep firing at t={ep.get_timer()} without advancing")

    def apply(self, step: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Run one step at its time; returns the (packets, events) it produced as JSON.

        Timers due before an input step fire first and must emit nothing (the script schedules inputs between
        timer expiries); a ``timer`` step fires everything due by ``t`` and only the expiry at ``t`` may emit.
        """
        op, t, ep = step["op"], float(step["t"]), self.ep
        lo = t - _TIME_TOLERANCE
        if op == "timer":
            return self._fire_until(t + _TIME_TOLERANCE, allow_output_from=lo)
        self._fire_until(lo, allow_output_from=float("inf"))
        force = False
        if op == "listen":
            ep.listen(step["port"])
        elif op == "connect":
            self.conn = ep.connect(SocketAddr(REMOTE, step["port"]), t)
        elif op == "recv":
            ep.receive_packet(packet_from_json(step["packet"]), t)
        elif op == "app_send":
            ep.send(self._conn(), bytes.fromhex(step["data"]), t)
        elif op == "app_close":
            ep.close(self._conn(), t)
        elif op == "app_read":
            force = True
        else:
            raise AssertionError(f"unknown op {op!r}")
        events = self._events(force)
        packets = [packet_to_json(p) for p in ep.packets_to_send()]
        events += self._events(force)
        return packets, events

    def _conn(self) -> int:
        if self.conn is None:
            self._events(force=True)
        if self.conn is None:
            raise AssertionError("no connection yet")
        return self.conn


def replay(test: dict[str, Any], profile: Profile) -> list[str]:
    """Replay one scenario; returns mismatch descriptions (empty when it matches)."""
    runner = _Runner(profile, test.get("config", {}), test["isn"], test.get("read") == "manual")
    steps = test["steps"]
    problems: list[str] = []
    i = 0
    while i < len(steps):
        step = steps[i]
        if step["op"] == "expect":
            problems.append(f"step {i}: 'expect' without a preceding input step")
            i += 1
            continue
        try:
            packets, events = runner.apply(step)
        except AssertionError as exc:
            return [*problems, f"step {i} ({step['op']}): {exc}"]
        has_expect = i + 1 < len(steps) and steps[i + 1]["op"] == "expect"
        want = steps[i + 1] if has_expect else {"packets": [], "events": []}
        where = f"step {i} ({step['op']} t={step['t']})"
        if packets != want.get("packets", []):
            problems.append(f"{where}: packets {packets} != expected {want.get('packets')}")
        if events != want.get("events", []):
            problems.append(f"{where}: events {events} != expected {want.get('events')}")
        if problems:
            return problems
        i += 2 if has_expect else 1
    return problems


# -- scenario builder ------------------------------------------------------------------------------------------------
class _Script:
    """Records inputs and our endpoint's outputs as steps."""

    def __init__(self, name: str, comment: str, profile: Profile, *, isn: int = 1000, read: str = "auto",
                 flags: list[str] | None = None, **config: Any) -> None:  # fmt: skip
        self.test: dict[str, Any] = {"comment": comment, "name": name, "flags": flags or [], "config": config,
                                     "isn": [isn], "read": read, "steps": []}  # fmt: skip
        self.runner = _Runner(profile, config, [isn, isn + 7777, isn + 15555], read == "manual")
        self.isn = isn
        self.t = 0.0
        self.last: list[dict[str, Any]] = []
        self.last_events: list[dict[str, Any]] = []
        self.name = name

    def want(self, flags: list[str], events: list[str] | None = None) -> None:
        """State what the last step must have emitted: packet flags ("SYN|ACK") and event names ("Closed:reset")."""
        got_flags = ["|".join(p["flags"]) for p in self.last]
        got_events = [e["type"] + (f":{e['reason']}" if "reason" in e else "") for e in self.last_events]
        if got_flags != flags or (events is not None and got_events != events):
            raise ExpectationMismatch(
                f"scenario {self.name!r} at t={self.t}: emitted {got_flags} {got_events}, stated {flags} {events}"
            )

    def want_times(self, times: list[float]) -> None:
        """State the times of the ``timer`` steps so far (a retransmission schedule)."""
        got = [st["t"] for st in self.test["steps"] if st["op"] == "timer"]
        if len(got) != len(times) or any(abs(a - b) > 1e-6 for a, b in zip(got, times, strict=False)):
            raise ExpectationMismatch(f"scenario {self.name!r}: timers fired at {got}, stated {times}")

    def _step(self, op: str, t: float | None = None, **fields: Any) -> list[dict[str, Any]]:
        if t is not None:
            self.t = t
        step = {"t": self.t, "op": op, **fields}
        packets, events = self.runner.apply(step)
        self.test["steps"].append(step)
        if packets or events:
            self.test["steps"].append({"t": step["t"], "op": "expect", "packets": packets, "events": events})
        self.last = packets
        self.last_events = events
        return packets

    def listen(self, port: int = SERVICE) -> None:
        self._step("listen", port=port)

    def connect(self, port: int = SERVICE, t: float | None = None) -> list[dict[str, Any]]:
        return self._step("connect", t, port=port)

    def recv(self, t: float, flags: str, seq: int, ack: int = 0, window: int = 64, payload: bytes = b"",
             sport: int = SERVICE, dport: int = EPHEMERAL, version: int = VERSION) -> list[dict[str, Any]]:  # fmt: skip
        fl = 0
        for name in flags.split("|"):
            fl |= int(Flags[name])
        pkt = Packet(fl, PacketProtocol.STREAM, REMOTE, LOCAL, sport, dport, seq & _MASK, ack & _MASK, window,
                     payload, version)  # fmt: skip
        return self._step("recv", t, packet=packet_to_json(pkt))

    def send(self, t: float, data: bytes) -> list[dict[str, Any]]:
        return self._step("app_send", t, data=data.hex())

    def close(self, t: float) -> list[dict[str, Any]]:
        return self._step("app_close", t)

    def read(self, t: float) -> list[dict[str, Any]]:
        return self._step("app_read", t)

    def timer(self) -> list[dict[str, Any]]:
        """Advance to the next timer expiry that emits something and record it as a ``timer`` step."""
        ep = self.runner.ep
        for _ in range(1000):
            deadline = ep.get_timer()
            assert deadline is not None, "no timer pending"
            packets, events = self.runner._fire_until(deadline, allow_output_from=deadline)
            if packets or events:
                self.t = deadline
                self.test["steps"].append({"t": deadline, "op": "timer"})
                self.test["steps"].append({"t": deadline, "op": "expect", "packets": packets, "events": events})
                self.last = packets
                self.last_events = events
                return packets
        raise AssertionError("no timer expiry emits anything")

    def pending(self) -> bool:
        return self.runner.ep.get_timer() is not None

    def done(self) -> dict[str, Any]:
        # the ISNs actually drawn: a replayer needs only those
        self.test["isn"] = [self.isn, self.isn + 7777, self.isn + 15555][: self.runner.isn_drawn]
        self.test["result"] = "valid"
        return self.test


def _client(s: _Script, peer_isn: int = 5000, t_synack: float = 0.05, window: int = 64) -> None:
    """Active open from ``s``: our SYN, the peer's SYN-ACK, our ACK."""
    s.connect(t=0.0)
    s.recv(t_synack, "SYN|ACK", peer_isn, s.isn + 1, window)


def _server(s: _Script, peer_isn: int = 5000, window: int = 64, listen: bool = True) -> None:
    """Passive open: SYN in, SYN-ACK out, the peer's ACK in."""
    if listen:
        s.listen()
    s.recv(0.0, "SYN", peer_isn, 0, window, sport=EPHEMERAL, dport=SERVICE)
    s.recv(0.05, "ACK", peer_isn + 1, s.isn + 1, window, sport=EPHEMERAL, dport=SERVICE)


def _scenarios(profile: Profile) -> list[dict[str, Any]]:
    P = profile
    tests = []
    srv: dict[str, Any] = {"sport": EPHEMERAL, "dport": SERVICE}

    draft = P is Profile.DRAFT
    s = _Script("handshake-active", "SYN, SYN-ACK, ACK from the initiator's side (8.2)", P)
    s.connect(t=0.0)
    s.want(["SYN"], [])
    s.recv(0.05, "SYN|ACK", 5000, s.isn + 1, 64)
    s.want(["ACK"], ["Connected"])
    tests.append(s.done())

    s = _Script("handshake-passive", "a listening port answers SYN with SYN-ACK and completes on the ACK (8.2)", P)
    s.listen()
    s.recv(0.0, "SYN", 5000, 0, 64, sport=EPHEMERAL, dport=SERVICE)
    s.want(["SYN|ACK"], ["ConnectionRequested"])
    s.recv(0.05, "ACK", 5001, s.isn + 1, 64, sport=EPHEMERAL, dport=SERVICE)
    s.want([], ["Connected"])
    tests.append(s.done())

    s = _Script("syn-backoff", "SYN retransmitted with exponential backoff, then the dial fails (8.5.1)", P)
    s.connect(t=0.0)
    while s.pending():
        s.timer()
        if s.pending():
            s.want(["SYN"], [])
    s.want([], ["Closed:connect_timeout"])
    # E-SES-8: draft waits 1, 2, 4, 8, 8, 8 s; go-interop 1, 2, 4, 1, 2, 4, 8 s (relay restart)
    s.want_times([1, 3, 7, 15, 23, 31] if draft else [1, 3, 7, 8, 10, 14, 22])
    tests.append(s.done())

    s = _Script("delayed-ack", "one segment waits up to 40 ms for its ACK; a second segment is ACKed at once (8.11)",
                P, mss=100)  # fmt: skip
    _server(s)
    s.recv(0.10, "ACK", 5001, s.isn + 1, payload=b"a" * 100, **srv)
    s.want([], ["DataReceived"])
    s.timer()  # the 40 ms delayed ACK
    s.want(["ACK"], [])
    s.want_times([0.14])
    s.recv(0.20, "ACK", 5101, s.isn + 1, payload=b"b" * 100, **srv)
    s.want([], ["DataReceived"])
    s.recv(0.21, "ACK", 5201, s.isn + 1, payload=b"c" * 100, **srv)
    s.want(["ACK"], ["DataReceived"])
    tests.append(s.done())

    s = _Script("send-segmentation", "a write larger than MSS leaves as MSS-sized segments within cwnd (8.10, 8.7)",
                P, mss=100, nodelay=True)  # fmt: skip
    _client(s)
    s.send(0.1, bytes(range(250)))
    s.want(["ACK", "ACK", "ACK"], [])
    if [len(p["payload"]) // 2 for p in s.last] != [100, 100, 50]:
        raise ExpectationMismatch("send-segmentation: segments are not 100, 100, 50 bytes")
    s.recv(0.15, "ACK", 5001, s.isn + 1 + 250)
    tests.append(s.done())

    s = _Script("fast-retransmit", "three duplicate ACKs retransmit the first unacknowledged segment (8.7)", P,
                mss=100, nodelay=True)  # fmt: skip
    _client(s)
    s.send(0.1, b"\x11" * 500)
    for i in range(4):  # one ACK of the first segment, then three duplicates of it
        s.recv(0.15 + i * 0.001, "ACK", 5001, s.isn + 101)
        s.want(["ACK"] if i == 3 else [], [])
    if s.last[0]["seq"] != (s.isn + 101) & _MASK:
        raise ExpectationMismatch("fast-retransmit: the third duplicate ACK does not resend the first unACKed byte")
    s.recv(0.2, "ACK", 5001, s.isn + 501)
    tests.append(s.done())

    s = _Script("sack-receiver", "out-of-order data is ACKed at once with a SACK block; filling the gap ACKs all (8.6)",
                P, mss=100)  # fmt: skip
    _server(s)
    s.recv(0.10, "ACK", 5001, s.isn + 1, payload=b"1" * 100, **srv)
    s.recv(0.11, "ACK", 5201, s.isn + 1, payload=b"3" * 100, **srv)
    s.want(["ACK"], [])  # out of order: ACKed at once, with a SACK block
    s.recv(0.12, "ACK", 5401, s.isn + 1, payload=b"5" * 100, **srv)
    s.want(["ACK"], [])
    s.recv(0.13, "ACK", 5101, s.isn + 1, payload=b"2" * 100, **srv)
    s.want(["ACK"], ["DataReceived"])
    s.recv(0.14, "ACK", 5301, s.isn + 1, payload=b"4" * 100, **srv)
    s.want(["ACK"], ["DataReceived"])
    if s.last[0]["ack"] != 5501 or s.last[0]["payload"]:
        raise ExpectationMismatch("sack-receiver: filling the last gap does not ACK everything with a plain ACK")
    tests.append(s.done())

    s = _Script("sack-sender", "duplicate ACKs carrying SACK blocks retransmit only the missing segment (8.6, 8.7)",
                P, mss=100, nodelay=True)  # fmt: skip
    _client(s)
    s.send(0.1, b"\x22" * 500)
    base = s.isn + 1

    def sack(*blocks: tuple[int, int]) -> bytes:
        from pilot_proto.wire.sack import encode_sack

        return encode_sack([((base + a) & _MASK, (base + b) & _MASK) for a, b in blocks])

    s.recv(0.15, "ACK", 5001, base + 100)
    s.recv(0.151, "ACK", 5001, base + 100, payload=sack((200, 300)))
    s.recv(0.152, "ACK", 5001, base + 100, payload=sack((200, 400)))
    s.recv(0.153, "ACK", 5001, base + 100, payload=sack((200, 500)))
    s.want(["ACK"], [])
    if (s.last[0]["seq"], len(s.last[0]["payload"]) // 2) != ((base + 100) & _MASK, 100):
        raise ExpectationMismatch("sack-sender: the retransmission is not exactly the missing segment")
    s.recv(0.2, "ACK", 5001, base + 500)
    tests.append(s.done())

    s = _Script("rto-backoff", "an unacknowledged segment is retransmitted on RTO, doubling each time, until the "
                "connection is closed (8.5.1)", P, mss=100, nodelay=True)  # fmt: skip
    _client(s)
    s.send(0.1, b"x" * 50)
    while s.pending():
        s.timer()
        if s.pending():
            s.want(["ACK"], [])
    s.want(["RST"], ["Closed:timeout"])
    # RTO 200 ms doubling to the 10 s cap (8.5.1); 8 retransmissions (draft) or 7 (go-interop, E-SES-7)
    schedule = [0.3, 0.7, 1.5, 3.1, 6.3, 12.7, 22.7, 32.7, 42.7]
    s.want_times(schedule if draft else schedule[:-1])
    tests.append(s.done())

    s = _Script("zero-window-sender", "a zero window stops data; 1-byte probes back off until the window opens (8.8.1)",
                P, mss=100, nodelay=True)  # fmt: skip
    _client(s, window=1)
    s.send(0.1, b"z" * 150)
    s.recv(0.15, "ACK", 5001, s.isn + 101, window=0)
    for _ in range(3):
        s.timer()
        s.want(["ACK"], [])
        # draft: a 1-byte probe (8.8.1); go-interop reads window 0 as unlimited (E-SES-3) and retransmits
        if len(s.last[0]["payload"]) // 2 != (1 if draft else 50):
            raise ExpectationMismatch("zero-window-sender: wrong probe/retransmission size")
    # probes back off: 500 ms doubling (E-SES-9); go-interop: the RTO doubling from 200 ms
    s.want_times([0.65, 1.65, 3.65] if draft else [0.35, 0.75, 1.55])
    probe_ack = s.isn + 101 + (1 if P is Profile.DRAFT else 0)
    s.recv(s.t + 0.05, "ACK", 5001, probe_ack, window=4)
    tests.append(s.done())

    s = _Script("zero-window-receiver", "an application that does not read sees the advertised window fall to 0; "
                "reading reopens it (8.8)", P, mss=100, recv_buf_segments=2, read="manual")  # fmt: skip
    _server(s)
    s.recv(0.10, "ACK", 5001, s.isn + 1, payload=b"p" * 100, **srv)
    s.recv(0.11, "ACK", 5101, s.isn + 1, payload=b"q" * 100, **srv)
    s.want(["ACK"], [])
    if s.last[0]["window"] != (0 if draft else 1):  # go-interop never advertises 0 (E-SES-3)
        raise ExpectationMismatch("zero-window-receiver: a full buffer does not advertise a zero window")
    s.recv(0.20, "ACK", 5201, s.isn + 1, payload=b"r" * 100, **srv)
    s.read(0.30)
    if not s.last or s.last[-1]["window"] < 1:
        raise ExpectationMismatch("zero-window-receiver: reading does not reopen the window")
    tests.append(s.done())

    s = _Script("close-active", "our FIN, the peer's ACK and FIN, our ACK; TIME_WAIT lasts 10 s from the ACK of our "
                "FIN: a retransmitted peer FIN is ACKed just before, answered with RST just after (8.3, 8.13)",
                P)  # fmt: skip
    _client(s)
    s.close(0.1)
    s.want(["ACK|FIN"] if draft else ["FIN"], [])  # E-SES-2: draft FIN|ACK, go-interop a bare FIN
    s.recv(0.15, "ACK", 5001, s.isn + 2)
    s.want([], [])
    s.recv(0.16, "FIN|ACK", 5001, s.isn + 2)
    s.want(["ACK"], ["StreamEnded", "Closed:normal"])
    s.recv(10.14, "FIN|ACK", 5001, s.isn + 2)
    s.want(["ACK"], [])  # still in TIME_WAIT (10 s from 0.15)
    s.recv(10.16, "FIN|ACK", 5001, s.isn + 2)
    s.want(["RST"], [])  # TIME_WAIT is over: no connection
    tests.append(s.done())

    s = _Script("close-passive", "the peer's FIN ends the stream; we answer with our FIN and close on its ACK (8.3)", P)
    _server(s)
    s.recv(0.1, "FIN|ACK", 5001, s.isn + 1, **srv)
    s.want(["ACK|FIN"], ["StreamEnded"])  # E-SES-2: the answer carries our FIN and the ACK of theirs
    s.recv(0.15, "ACK", 5002, s.isn + 2, **srv)
    s.want([], ["Closed:normal"])
    tests.append(s.done())

    s = _Script("rst-in-window", "an in-window RST aborts the connection and reports a reset (6.4)", P)
    _client(s)
    s.recv(0.1, "RST", 5001, 0, 0)
    s.want([], ["Reset", "Closed:reset"])
    tests.append(s.done())

    s = _Script("rst-out-of-window", "an RST whose sequence is outside the receive window (8.1)", P)
    _client(s)
    s.recv(0.1, "RST", 5001 + 10_000_000, 0, 0)
    s.want([], [] if draft else ["Reset", "Closed:reset"])  # E-SES-11: draft ignores it, Go accepts any RST
    tests.append(s.done())

    s = _Script("rst-no-listener", "a SYN to a port nobody listens on is answered with RST; an RST is never answered",
                P)  # fmt: skip
    s.recv(0.0, "SYN", 5000, 0, 64, sport=EPHEMERAL, dport=2000)
    s.want(["RST"], [])
    s.recv(0.1, "RST", 5000, 0, 0, sport=EPHEMERAL, dport=2000)
    s.want([], [])
    tests.append(s.done())

    s = _Script("version-mismatch", "a SYN with version 2 is refused with RST (draft) and a version-2 segment on a "
                "connection is dropped silently (12.2)", P)  # fmt: skip
    s.listen()
    s.recv(0.0, "SYN", 7000, 0, 64, sport=EPHEMERAL + 1, dport=SERVICE, version=2)
    s.want(["RST"] if draft else [], [])  # E-VER-1
    _server(s, listen=False)
    s.recv(0.1, "ACK", 5001, s.isn + 1, payload=b"v2", version=2, **srv)
    s.want([], [])  # a version-2 segment is dropped silently (12.2)
    tests.append(s.done())
    return tests


def generate() -> Doc:
    groups = [
        {"type": "StreamScenario", "profile": p.value, "local": str(LOCAL), "remote": str(REMOTE),
         "tests": _scenarios(p)}
        for p in (Profile.DRAFT, Profile.GO_INTEROP)
    ]  # fmt: skip
    return make_doc(
        "PilotStreamScenarios",
        "stream_scenarios_schema_v1.json",
        groups,
        header=[
            "Session-layer scripts (draft 8, 12.2): inputs to one endpoint and the exact packets and events it must",
            "emit, replayable by any runtime (see pilot_proto/vectors/stream_scenarios.py for the step language).",
        ],
    )


def verify(doc: Doc) -> list[str]:
    failures: list[str] = []
    for group, test in iter_tests(doc):
        profile = Profile.parse(group["profile"])
        for problem in replay(test, profile):
            failures.append(f"tcId {test['tcId']} ({test.get('name')}): {problem}")
    return failures


SUITES = [VectorSuite(FILENAME, generate, verify)]
