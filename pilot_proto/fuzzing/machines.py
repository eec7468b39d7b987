"""State-machine harnesses: a fuzzed *script* of datagrams, replays, tampering and clock steps.

Each harness builds the machine under test twice (``A`` and its twin ``B``, same deterministic
RNG, same config) plus a legitimate peer, and interprets the input bytes as a script of operations:
the peer sends real traffic (so the script gets past the cryptography), raw bytes arrive from the
peer's or a stranger's address, earlier datagrams are replayed or tampered with, the application
sends, and the clock moves.  The oracles:

* **no crash** -- nothing escapes a receive or timer call (the idiom of :mod:`pilot_proto.sansio`);
  an application call may raise only :class:`~pilot_proto.errors.LocalProtocolError`;
* **twin** -- an input that ``A`` rejects with action *drop* is withheld from ``B``; every later
  output of ``A`` and ``B`` (datagrams and events) must be identical, so a dropped input changed no
  state.  Inputs rejected with another action (rst, rekey, close) go to both: acting on them is a
  state change by design, and both copies must act the same way;
* **exactly one rejection** -- a rejected datagram yields exactly one ``InputRejected``;
* **timers** -- after ``handle_timer(now)`` the next deadline is in the future (three tries), so a
  driver never spins, and a deadline is never ``NaN``;
* **no nonce reuse** (tunnel, node) -- no two PILS frames we send carry the same 12-byte nonce
  (draft 11: prefix and counter; a repeat under one key breaks AES-GCM);
* **nothing acknowledged is lost, nothing delivered is wrong** (stream) -- after every step, each
  connection has handed the application at least every byte it acknowledged, and what it handed
  over is a prefix of what the peer's application wrote on that connection;
* **bounds** (tunnel, stream) -- run with small caps, the peer and connection tables never exceed them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pilot_proto.errors import Action, LocalProtocolError
from pilot_proto.errors import PilotError as PilotErrorType
from pilot_proto.fuzzing.harness import Finding, Harness
from pilot_proto.profile import Profile
from pilot_proto.sansio import Datagram, InputRejected

__all__ = ["Script", "Twin", "harnesses"]

PEER = ("127.0.0.1", 40002)
STRANGER = ("127.0.0.1", 40666)
TARGET = ("127.0.0.1", 40001)
MAX_OPS = 48


class Script:
    """Reads operations out of fuzzer bytes; past the end every read is 0 (so any input is a script)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        b = self.data[self.pos]
        self.pos += 1
        return b

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def _drain(machine: Any) -> list[Any]:
    out = []
    while (ev := machine.next_event()) is not None:
        out.append(ev)
    return out


def _norm(x: Any) -> Any:
    """Events compared by value: errors inside them (which compare by identity) by their ``to_dict()``."""
    if isinstance(x, PilotErrorType):
        return ("error", tuple(sorted(x.to_dict().items())))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x).__name__, tuple(_norm(getattr(x, f.name)) for f in dataclasses.fields(x)))
    return x


def _same_event(a: Any, b: Any) -> bool:
    return bool(_norm(a) == _norm(b))


@dataclass
class StepOutput:
    datagrams: list[Datagram]
    events: list[Any]


class Twin:
    """Drives machine ``a`` and its twin ``b`` in lockstep and checks the twin oracle at every step."""

    def __init__(self, a: Any, b: Any, name: str, *, outer_layers: frozenset[str]) -> None:
        self.a, self.b, self.name = a, b, name
        self.outer = outer_layers
        #: Kinds of behaviour reached (event types, rejection codes, datagram first bytes): the outcome.
        self.seen: set[object] = set()

    def _outputs(self, m: Any) -> StepOutput:
        # Pulling an event can queue output (popping DataReceived frees receive window, and the node
        # sends the window update on the next pull), so pull until both are quiet: all of it belongs
        # to this step.
        out = StepOutput(list(m.datagrams_to_send()), _drain(m))
        for _ in range(4):
            more = list(m.datagrams_to_send())
            if not more:
                break
            out.datagrams += more
            out.events += _drain(m)
        if m is self.a:
            seen = self.seen
            for ev in out.events:
                seen.add(ev.error.code if isinstance(ev, InputRejected) else type(ev).__name__)
            for d in out.datagrams:
                seen.add(d.data[:1])
        return out

    def outcome(self) -> tuple[str, ...]:
        return tuple(sorted(map(str, self.seen)))

    def _compare(self, what: str, oa: StepOutput, ob: StepOutput) -> None:
        if [tuple(d) for d in oa.datagrams] != [tuple(d) for d in ob.datagrams]:
            raise Finding("twin", f"{self.name}: after {what} the twins sent different datagrams "
                          f"({len(oa.datagrams)} vs {len(ob.datagrams)})")  # fmt: skip
        if len(oa.events) != len(ob.events) or not all(map(_same_event, oa.events, ob.events)):
            raise Finding("twin", f"{self.name}: after {what} the twins reported {oa.events!r} vs {ob.events!r}")

    def receive(self, data: bytes, addr: Any, now: float) -> StepOutput:
        try:
            self.a.receive_datagram(data, addr, now)
        except Exception as exc:
            raise Finding("crash", f"{self.name}.receive_datagram raised {type(exc).__name__}: {exc!r}") from exc
        oa = self._outputs(self.a)
        rejections = [e for e in oa.events if isinstance(e, InputRejected) and e.layer in self.outer]
        if len(rejections) > 1:
            raise Finding("rejection", f"{self.name}: one datagram gave {len(rejections)} InputRejected events")
        if rejections and rejections[0].action is Action.DROP:
            if oa.datagrams:
                raise Finding("twin", f"{self.name}: a dropped input ({rejections[0].error}) made us send "
                              f"{len(oa.datagrams)} datagram(s)")  # fmt: skip
            return oa  # withheld from the twin
        self.b.receive_datagram(data, addr, now)
        self._compare(f"a datagram of {len(data)} bytes", oa, self._outputs(self.b))
        return oa

    def timer(self, now: float) -> StepOutput:
        merged = StepOutput([], [])
        for _ in range(3):
            for m in (self.a, self.b):
                try:
                    m.handle_timer(now)
                except Exception as exc:
                    raise Finding("crash", f"{self.name}.handle_timer raised {type(exc).__name__}: {exc!r}") from exc
            oa, ob = self._outputs(self.a), self._outputs(self.b)
            self._compare(f"the timer at t={now:.3f}", oa, ob)
            merged.datagrams += oa.datagrams
            merged.events += oa.events
            deadline = self.a.get_timer()
            if deadline is not None and math.isnan(deadline):
                raise Finding("timer", f"{self.name}: get_timer() is NaN")
            if deadline is None or deadline > now:
                return merged
        raise Finding("timer", f"{self.name}: after handle_timer({now}) three times the deadline is still {deadline}")

    def call(self, what: str, fn: Callable[[Any], object]) -> StepOutput | None:
        """An application call on both copies: only LocalProtocolError may escape, and from both alike."""
        results: list[object] = []
        for m in (self.a, self.b):
            try:
                fn(m)
                results.append(None)
            except LocalProtocolError as err:
                results.append(err.code)
            except Exception as exc:
                raise Finding("crash", f"{self.name}: {what} raised {type(exc).__name__}: {exc!r}") from exc
        if results[0] != results[1]:
            raise Finding("twin", f"{self.name}: {what} gave {results[0]} on one twin and {results[1]} on the other")
        oa, ob = self._outputs(self.a), self._outputs(self.b)
        self._compare(what, oa, ob)
        return oa


class _Nonces:
    """Every PILS nonce a machine sent (bytes 8..20 of the frame); a repeat is a finding."""

    def __init__(self, name: str) -> None:
        self.name, self.seen = name, set[bytes]()

    def check(self, out: StepOutput) -> None:
        for d in out.datagrams:
            if d.data[:4] == b"PILS" and len(d.data) >= 20:
                nonce = bytes(d.data[8:20])
                if nonce in self.seen:
                    raise Finding("nonce-reuse", f"{self.name} sent two PILS frames with nonce {nonce.hex()}")
                self.seen.add(nonce)


class _History:
    """Datagrams seen so far (bounded), for replay and tampering operations."""

    def __init__(self) -> None:
        self.items: list[bytes] = []

    def add(self, data: bytes) -> None:
        if len(self.items) < 64:
            self.items.append(data)

    def pick(self, index: int) -> bytes | None:
        return self.items[index % len(self.items)] if self.items else None


def _tamper(data: bytes, script: Script) -> bytes:
    if not data:
        return b"\x00"
    out = bytearray(data)
    pos = (script.byte() << 8 | script.byte()) % len(out)
    out[pos] ^= 1 << (script.byte() & 7)
    return bytes(out)


def _sender(pkt: Any, now: float) -> Callable[[Any], object]:
    return _calling("send", 2, pkt, now)


def _calling(method: str, *args: Any) -> Callable[[Any], object]:
    """``machine.method(*args)`` as a one-argument callable, for :meth:`Twin.call`."""
    return lambda m: getattr(m, method)(*args)


# -- tunnel ---------------------------------------------------------------------------------------------


def _tunnel(profile: Profile) -> Harness:
    from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
    from pilot_proto.tunnel import TunnelConfig, TunnelEndpoint
    from pilot_proto.wire import control
    from pilot_proto.wire.address import Addr

    ids = {n: insecure_test_identity(f"fuzz-{n}") for n in (1, 2, 3)}
    # Small caps so a script can reach them: the bounds oracle checks they hold.
    cfg = TunnelConfig.for_profile(profile, max_inbound_peers=4)

    def endpoint(node: int, peer: int, rng_label: str) -> TunnelEndpoint:
        ep = TunnelEndpoint(node, InsecureDeterministicRng(rng_label), identity=ids[node], config=cfg,
                            peer_keys={peer: ids[peer].public_bytes})  # fmt: skip
        return ep

    def fuzz_one_input(data: bytes) -> object:
        script = Script(data)
        a, b = endpoint(1, 2, "A"), endpoint(1, 2, "A")
        peer = endpoint(2, 1, "P")
        for m in (a, b):
            m.add_peer(2, PEER)
        peer.add_peer(1, TARGET)
        twin = Twin(a, b, f"tunnel@{profile.value}", outer_layers=frozenset({"tunnel"}))
        history = _History()
        now = 0.0
        seq = 0
        nonces = _Nonces(f"tunnel@{profile.value}")

        def to_peer(out: StepOutput) -> None:
            nonces.check(out)
            if len(a.peers) > cfg.max_inbound_peers + 1:  # + the peer we configured ourselves
                raise Finding("bounds", f"tunnel@{profile.value} holds {len(a.peers)} peers, cap "
                              f"{cfg.max_inbound_peers} inbound + 1 configured")  # fmt: skip
            for d in out.datagrams:
                if d.addr == PEER:
                    peer.receive_datagram(d.data, TARGET, now)
            _drain(peer)

        def from_peer() -> None:
            for d in peer.datagrams_to_send():
                history.add(d.data)
                to_peer(twin.receive(d.data, PEER, now))

        for _ in range(MAX_OPS):
            if script.done:
                break
            op = script.byte()
            kind, src = op & 7, (STRANGER if op & 0x80 else PEER)
            if kind == 0:  # the peer sends a real packet (PILS once keyed, a key exchange first)
                seq += 1
                ping = control.build_ping(Addr(0, 2), Addr(0, 1), 49152, seq, script.take(script.byte() & 31))
                peer.send(1, ping, now)
                from_peer()
            elif kind == 1:  # raw bytes
                raw = script.take(script.byte())
                history.add(raw)
                to_peer(twin.receive(raw, src, now))
            elif kind == 2:  # replay
                old = history.pick(script.byte())
                if old is not None:
                    to_peer(twin.receive(old, src, now))
            elif kind == 3:  # tamper with an earlier datagram
                old = history.pick(script.byte())
                if old is not None:
                    to_peer(twin.receive(_tamper(old, script), src, now))
            elif kind == 4:  # the clock moves
                now += (script.byte() + 1) * 0.05 * (1 + (op >> 4 & 7) * 10)
                to_peer(twin.timer(now))
                peer.handle_timer(now)
                from_peer()
            elif kind == 5:  # our application sends
                seq += 1
                pkt = control.build_ping(Addr(0, 1), Addr(0, 2), 49152, seq, script.take(script.byte() & 31))
                out = twin.call("send", _sender(pkt, now))
                if out is not None:
                    to_peer(out)
                from_peer()
            elif kind == 6:  # the peer re-keys
                peer.rekey(1, now)
                from_peer()
            else:  # a datagram from the peer's output, delivered from the stranger's address
                for d in peer.datagrams_to_send():
                    history.add(d.data)
                    to_peer(twin.receive(d.data, STRANGER, now))
        return twin.outcome()

    def seeds() -> list[bytes]:
        return [bytes([0, 3]) + b"abc" + bytes([0, 0, 4, 10, 0, 1]), bytes([5, 2]) + b"hi" + bytes([4, 20, 0, 0, 2, 1]),
                bytes([0, 0, 0, 0, 6, 0, 0, 3, 0, 0, 0, 2, 1, 0x82, 0]), bytes([0, 0, 1, 40]) + bytes(40)]  # fmt: skip

    return Harness(f"machine:tunnel@{profile.value}", fuzz_one_input, seeds, "machine",
                   "TunnelEndpoint with a real PILA peer: replays, tampering, strangers, clock")  # fmt: skip


# -- stream ---------------------------------------------------------------------------------------------


def _stream(profile: Profile) -> Harness:
    from pilot_proto.stream import StreamConfig, StreamEndpoint
    from pilot_proto.wire.address import Addr, SocketAddr

    cfg = StreamConfig.for_profile(profile, max_connections=6, max_connections_per_port=4)

    class _Adapter:
        """Gives a StreamEndpoint the datagram face of the idiom: packets in and out as bytes."""

        def __init__(self, ep: StreamEndpoint) -> None:
            self.ep = ep

        def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
            self.ep.receive_bytes(data, now)

        def datagrams_to_send(self) -> list[Datagram]:
            return [Datagram(p.encode(), PEER) for p in self.ep.packets_to_send()]

        def next_event(self) -> Any:
            return self.ep.next_event()

        def get_timer(self) -> float | None:
            return self.ep.get_timer()

        def handle_timer(self, now: float) -> None:
            self.ep.handle_timer(now)

    def endpoint(node: int) -> StreamEndpoint:
        counter = iter(range(1000, 10**9, 7919))
        return StreamEndpoint(Addr(0, node), config=cfg, isn_source=lambda: next(counter))

    def fuzz_one_input(data: bytes) -> object:
        script = Script(data)
        a, b = endpoint(1), endpoint(1)
        for m in (a, b):
            m.listen(7)
        peer = endpoint(2)
        twin = Twin(_Adapter(a), _Adapter(b), f"stream@{profile.value}", outer_layers=frozenset({"stream"}))
        history = _History()
        now = 0.0
        conns: list[int] = []
        sent: dict[int, bytearray] = {}  # peer connection -> what its application wrote (and the stream took)
        peer_conn_at: dict[int, int] = {}  # peer's local port -> its connection (the latest one)
        ours: dict[int, int] = {}  # our connection -> the peer connection it was requested by
        delivered: dict[int, bytearray] = {}  # our connection -> bytes handed to our application
        fin: set[int] = set()

        def to_peer(out: StepOutput) -> None:
            for ev in out.events:
                name = type(ev).__name__
                if name == "ConnectionRequested":
                    pc = peer_conn_at.get(ev.remote.port)
                    if pc is not None:
                        ours[ev.conn_id] = pc
                elif name == "DataReceived":
                    delivered.setdefault(ev.conn_id, bytearray()).extend(ev.data)
                elif name == "StreamEnded":
                    fin.add(ev.conn_id)
            check()
            for d in out.datagrams:
                peer.receive_bytes(d.data, now)
            for ev in _drain(peer):
                if type(ev).__name__ == "Connected":
                    conns.append(ev.conn_id)

        def check() -> None:
            live = list(a.connections())
            active = [c for c in live if a.is_active_state(c.state)]  # TIME_WAIT is bounded by time, not the cap
            if len(active) > cfg.max_connections:
                raise Finding("bounds", f"stream@{profile.value}: {len(active)} active connections, "
                              f"cap {cfg.max_connections}")  # fmt: skip
            for conn in live:
                got = delivered.get(conn.id, b"")
                acked = conn.rcv_nxt - 1 - (conn.id in fin)  # absolute: 0 is the peer's SYN (connection.py)
                if conn.irs and len(got) < acked:
                    raise Finding("lost", f"stream@{profile.value}: connection {conn.id} acknowledged {acked} "
                                  f"bytes but handed over {len(got)}")  # fmt: skip
                pc = ours.get(conn.id)
                if pc is not None and not bytes(sent.get(pc, b"")).startswith(bytes(got)):
                    raise Finding("corrupt", f"stream@{profile.value}: connection {conn.id} handed over bytes "
                                  "the peer never wrote there")  # fmt: skip

        def from_peer() -> None:
            for p in peer.packets_to_send():
                raw = p.encode()
                history.add(raw)
                to_peer(twin.receive(raw, PEER, now))

        for _ in range(MAX_OPS):
            if script.done:
                break
            op = script.byte()
            kind = op & 7
            try:
                if kind == 0:
                    pc = peer.connect(SocketAddr(Addr(0, 1), 7 if op & 0x80 else 9), now)
                    peer_conn_at[peer.connection(pc).local_port] = pc
                    from_peer()
                elif kind == 1 and conns:
                    pc = conns[script.byte() % len(conns)]
                    chunk = script.take(script.byte())
                    taken = peer.send(pc, chunk, now)
                    sent.setdefault(pc, bytearray()).extend(chunk[:taken])
                    from_peer()
                elif kind == 2 and conns:
                    peer.close(conns[script.byte() % len(conns)], now)
                    from_peer()
                elif kind == 3:
                    old = history.pick(script.byte())
                    if old is not None:
                        to_peer(twin.receive(_tamper(old, script) if op & 0x80 else old, PEER, now))
                elif kind == 4:
                    now += (script.byte() + 1) * 0.01 * (1 + (op >> 4 & 7) * 20)
                    to_peer(twin.timer(now))
                    peer.handle_timer(now)
                    from_peer()
                elif kind == 5:
                    raw = script.take(script.byte())
                    to_peer(twin.receive(raw, PEER, now))
                elif kind == 6 and conns:
                    peer.abort(conns[script.byte() % len(conns)], now)
                    from_peer()
                else:
                    from_peer()
            except LocalProtocolError:
                continue  # the *peer's* misuse (a closed connection ...) is the script's problem, not a finding
        return twin.outcome()

    def seeds() -> list[bytes]:
        return [bytes([0x80, 4, 1, 1, 0, 5]) + b"hello" + bytes([4, 1, 2, 0, 4, 50, 0, 4, 50, 0]),
                bytes([0x80, 1, 0, 200]) + bytes(200) + bytes([3, 1, 0x83, 2, 0, 1, 4, 4, 0, 0x14, 0])]  # fmt: skip

    return Harness(f"machine:stream@{profile.value}", fuzz_one_input, seeds, "machine",
                   "StreamEndpoint on port 7 with a real peer: replays, tampering, raw bytes, clock")  # fmt: skip


# -- beacon server ---------------------------------------------------------------------------------------


def _beacon_server(profile: Profile) -> Harness:
    from pilot_proto.nat import BeaconConfig, BeaconServer

    cfg = BeaconConfig.for_profile(profile)
    sources = [("127.0.0.1", 41000 + i) for i in range(6)]

    def fuzz_one_input(data: bytes) -> object:
        script = Script(data)
        twin = Twin(BeaconServer(cfg), BeaconServer(cfg), f"beacon-server@{profile.value}",
                    outer_layers=frozenset({"beacon-server"}))  # fmt: skip
        now = 0.0
        for _ in range(MAX_OPS):
            if script.done:
                break
            op = script.byte()
            if op & 7 == 4:
                now += (script.byte() + 1) * 0.5
                twin.timer(now)
            else:
                twin.receive(script.take(script.byte() & 127), sources[op % len(sources)], now)
        return twin.outcome()

    def seeds() -> list[bytes]:
        return [bytes([0, 5, 1, 0, 0, 0, 7, 1, 5, 1, 0, 0, 0, 9, 0, 9, 3, 0, 0, 0, 7, 0, 0, 0, 9, 4, 30])]

    return Harness(f"machine:beacon-server@{profile.value}", fuzz_one_input, seeds, "machine",
                   "BeaconServer fed datagrams from six sources and a moving clock")  # fmt: skip


# -- node ------------------------------------------------------------------------------------------------


def _node(profile: Profile) -> Harness:
    from pilot_proto.node import Node
    from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
    from pilot_proto.wire.address import Addr, SocketAddr

    ids = {n: insecure_test_identity(f"fuzz-node-{n}") for n in (1, 2)}

    def node(n: int, peer: int, label: str) -> Node:
        counter = iter(range(5000, 10**9, 104729))
        m = Node(n, InsecureDeterministicRng(label), profile=profile, identity=ids[n],
                 peer_keys={peer: ids[peer].public_bytes}, isn_source=lambda: next(counter))  # fmt: skip
        m.add_peer(peer, PEER if n == 1 else TARGET)
        return m

    def fuzz_one_input(data: bytes) -> object:
        script = Script(data)
        a, b, peer = node(1, 2, "A"), node(1, 2, "A"), node(2, 1, "P")
        for m in (a, b):
            m.listen(7)
        # A PILS frame the tunnel accepts but whose inner packet the stream layer refuses still moved the
        # tunnel (its replay window), so only the tunnel's and the node's own rejections count as drops.
        twin = Twin(a, b, f"node@{profile.value}", outer_layers=frozenset({"tunnel", "node"}))
        history = _History()
        now = 0.0
        conns: list[int] = []
        nonces = _Nonces(f"node@{profile.value}")

        def to_peer(out: StepOutput) -> None:
            nonces.check(out)
            for d in out.datagrams:
                if d.addr == PEER:
                    peer.receive_datagram(d.data, TARGET, now)
            for ev in _drain(peer):
                if type(ev).__name__ == "Connected":
                    conns.append(ev.conn_id)

        def from_peer() -> None:
            for _ in range(4):
                out = peer.datagrams_to_send()
                if not out:
                    return
                for d in out:
                    history.add(d.data)
                    to_peer(twin.receive(d.data, PEER, now))

        for _ in range(MAX_OPS):
            if script.done:
                break
            op = script.byte()
            kind, src = op & 7, (STRANGER if op & 0x80 else PEER)
            try:
                if kind == 0:
                    peer.connect(SocketAddr(Addr(0, 1), 7), now)
                    from_peer()
                elif kind == 1 and conns:
                    peer.send(conns[script.byte() % len(conns)], script.take(script.byte()), now)
                    from_peer()
                elif kind == 2 and conns:
                    peer.close(conns[script.byte() % len(conns)], now)
                    from_peer()
                elif kind == 3:
                    old = history.pick(script.byte())
                    if old is not None:
                        to_peer(twin.receive(_tamper(old, script) if op & 0x40 else old, src, now))
                elif kind == 4:
                    now += (script.byte() + 1) * 0.01 * (1 + (op >> 4 & 7) * 20)
                    to_peer(twin.timer(now))
                    peer.handle_timer(now)
                    from_peer()
                elif kind == 5:
                    raw = script.take(script.byte())
                    history.add(raw)
                    to_peer(twin.receive(raw, src, now))
                elif kind == 6:
                    peer.ping(Addr(0, 1), now, script.take(script.byte() & 15))
                    from_peer()
                else:
                    from_peer()
            except LocalProtocolError:
                continue
        return twin.outcome()

    def seeds() -> list[bytes]:
        data = bytes([0, 4, 1, 1, 0, 5]) + b"hello" + bytes([4, 2, 2, 0, 4, 50, 0x14, 50])
        ping_then_data = bytes([6, 3]) + b"abc" + bytes([0, 1, 0, 100]) + bytes(100) + bytes([3, 1, 0x43, 2, 0, 4, 4])
        return [data, ping_then_data]

    return Harness(f"machine:node@{profile.value}", fuzz_one_input, seeds, "machine",
                   "Node (tunnel + stream) with a real peer node: connect, data, ping, replays, tampering")  # fmt: skip


# -- registry ---------------------------------------------------------------------------------------------


# -- path manager (NAT traversal, draft 9) -----------------------------------------------------------------


def _path_messages(profile: Profile) -> Callable[[Script], bytes]:
    """Well-formed beacon messages from the script (so it reaches the path rules), or raw bytes."""
    from pilot_proto.wire import beacon as bw
    from pilot_proto.wire.beacon import Endpoint

    def message(script: Script) -> bytes:
        kind = script.byte() % 5
        ep = Endpoint("127.0.0.1", 49001 + (script.byte() & 1))
        if kind == 0:
            return bw.encode_beacon(bw.DiscoverReply(ep))
        if kind == 1:
            return bw.encode_beacon(bw.PunchCommand(ep))
        if kind == 2:
            return bw.encode_delivery(2 + (script.byte() & 1), b"PILT" + script.take(script.byte() & 63), profile)
        if kind == 3:
            return b"PILP" + script.take(4)
        return script.take(script.byte() & 63)

    return message


def _path(profile: Profile) -> Harness:
    from pilot_proto.nat import NatConfig, PathManager
    from pilot_proto.wire.beacon import Endpoint

    cfg = NatConfig.for_profile(profile)
    beacon_at = Endpoint("127.0.0.1", 49000)
    others = [Endpoint("127.0.0.1", 49001), Endpoint("127.0.0.1", 49002)]
    sources = [beacon_at, *others]

    message = _path_messages(profile)

    def fuzz_one_input(data: bytes) -> object:
        script = Script(data)
        twin = Twin(PathManager(1, beacon_at, cfg), PathManager(1, beacon_at, cfg), f"path@{profile.value}",
                    outer_layers=frozenset({"path", "beacon-client"}))  # fmt: skip
        now = 0.0
        twin.call("start", _calling("start", now))
        for _ in range(MAX_OPS):
            if script.done:
                break
            op = script.byte()
            kind = op & 7
            peer = 2 + (op >> 3 & 1)
            if kind in (0, 1):
                twin.receive(message(script), sources[(op >> 4) % 3], now)
            elif kind == 2:
                twin.call("connect", _calling("connect", peer, now, others[peer - 2]))
            elif kind == 3:
                frame = b"PILT" + script.take(8)
                twin.call("send", _calling("send", peer, frame, now))
            elif kind == 4:
                now += (script.byte() + 1) * 0.1 * (1 + (op >> 4 & 7) * 10)
                twin.timer(now)
            elif kind == 5:
                twin.call("confirm_direct", _calling("confirm_direct", peer, others[peer - 2], now))
            elif kind == 6:
                twin.call("confirm_relay", _calling("confirm_relay", peer, now))
            else:
                twin.receive(script.take(script.byte() & 63), sources[(op >> 4) % 3], now)
        return twin.outcome()

    def seeds() -> list[bytes]:
        return [bytes([0, 0, 0, 2, 4, 10, 0, 1, 0, 3]) + b"12345678" + bytes([4, 40, 4, 40, 0x10, 2, 1, 5, 6, 3]),
                bytes([2, 4, 5, 4, 5, 4, 200, 4, 200, 3]) + b"abcdefgh" + bytes([0x21, 3, 0, 5])]  # fmt: skip

    return Harness(f"machine:path@{profile.value}", fuzz_one_input, seeds, "machine",
                   "PathManager (3 direct, 3 relay): beacon messages from the beacon and strangers, clock")  # fmt: skip


# -- beacon client (draft 9.1-9.3) --------------------------------------------------------------------------


def _beacon_client(profile: Profile) -> Harness:
    from pilot_proto.nat import NatConfig
    from pilot_proto.nat.beacon_client import BeaconClient
    from pilot_proto.wire.beacon import Endpoint

    cfg = NatConfig.for_profile(profile)
    beacon_at = Endpoint("127.0.0.1", 49000)
    sources = [beacon_at, Endpoint("127.0.0.1", 49001), Endpoint("127.0.0.1", 49002)]
    path_messages = _path_messages(profile)

    def fuzz_one_input(data: bytes) -> object:
        script = Script(data)
        twin = Twin(BeaconClient(1, beacon_at, cfg), BeaconClient(1, beacon_at, cfg),
                    f"beacon-client@{profile.value}", outer_layers=frozenset({"beacon-client"}))  # fmt: skip
        now = 0.0
        for _ in range(MAX_OPS):
            if script.done:
                break
            op = script.byte()
            kind = op & 7
            if kind in (0, 1, 2):
                twin.receive(path_messages(script), sources[(op >> 4) % 3], now)
            elif kind == 3:
                twin.call("start", _calling("start", now))
            elif kind == 4:
                now += (script.byte() + 1) * 0.1 * (1 + (op >> 4 & 7) * 10)
                twin.timer(now)
            elif kind == 5:
                twin.call("punch_request", _calling("punch_request", 2 + (op >> 3 & 1)))
            elif kind == 6:
                twin.call("relay", _calling("relay", 2 + (op >> 3 & 1), b"PILT" + script.take(8)))
            else:
                twin.receive(script.take(script.byte() & 63), sources[(op >> 4) % 3], now)
        return twin.outcome()

    def seeds() -> list[bytes]:
        return [bytes([3, 0, 0, 4, 10, 5, 1, 1, 0x21, 6]) + b"12345678" + bytes([2, 2, 3, 0, 4, 40, 4, 40])]

    return Harness(f"machine:beacon-client@{profile.value}", fuzz_one_input, seeds, "machine",
                   "BeaconClient: discovery, punch and relay from the beacon and strangers, clock")  # fmt: skip


def _durable(snapshot: dict[str, Any]) -> dict[str, Any]:
    nodes = [{k: v for k, v in n.items() if k != "last_ts"} for n in snapshot["nodes"]]
    return {**snapshot, "nodes": nodes}


def _registry(profile: Profile) -> Harness:
    from pilot_proto.errors import RemoteProtocolError
    from pilot_proto.registry import Registry, RegistryCodec, RegistryConfig
    from pilot_proto.testing.keys import insecure_test_identity
    from pilot_proto.wire.registry import decode_registry_message

    cfg = RegistryConfig.for_profile(profile)
    ids = [insecure_test_identity(f"fuzz-reg-{i}") for i in range(3)]
    names = ["alpha", "beta", "gamma", "", "x" * 70, "Bad Name", "alpha"]

    def fuzz_one_input(data: bytes) -> object:
        script = Script(data)
        reg = Registry(cfg)
        codecs = [RegistryCodec(profile) for _ in ids]
        journal: list[dict[str, Any]] = []
        sent: list[dict[str, Any]] = []
        seen: set[object] = set()
        now = 0.0

        def feed(msg: Any, who: int) -> dict[str, Any]:
            before = reg.snapshot()
            try:
                reg.receive_request(msg, f"127.0.0.1:{5000 + who}", now)
            except LocalProtocolError as err:
                raise Finding("crash", f"registry@{profile.value} raised {err!r} for a remote request") from err
            except Exception as exc:
                raise Finding("crash", f"registry@{profile.value} raised {type(exc).__name__}: {exc!r}") from exc
            replies = reg.replies_to_send()
            if len(replies) != 1:
                raise Finding("reply", f"registry@{profile.value}: {len(replies)} replies to one request")
            records = reg.records_to_persist()
            rejected = []
            while (ev := reg.next_event()) is not None:
                if isinstance(ev, InputRejected):
                    rejected.append(ev)
                seen.add(type(ev).__name__)
            if rejected:
                if records or reg.snapshot() != before:
                    raise Finding("state", f"registry@{profile.value}: a refused request ({rejected[0].error}) "
                                  "changed the durable state")  # fmt: skip
                if not isinstance(rejected[0].error, RemoteProtocolError):
                    raise Finding("error", f"registry@{profile.value}: refusal is not a RemoteProtocolError")
            journal.extend(records)
            body = dict(replies[0].message)
            seen.add(str(body.get("type")))
            return body

        for _ in range(MAX_OPS):
            if script.done:
                break
            op = script.byte()
            kind, who = op & 7, (op >> 3) % len(ids)
            codec = codecs[who]
            if kind == 0:
                host = names[script.byte() % len(names)]
                msg = codec.sign(codec.register_msg(ids[who], f"127.0.0.1:{9000 + who}", hostname=host), now)
                sent.append(msg)
                reply = feed(msg, who)
                if reply.get("type") == "register_ok" and isinstance(reply.get("node_id"), int):
                    codec.registered(reply)
            elif kind == 1 and codec.node_id is not None:
                peer = codecs[script.byte() % len(codecs)].node_id or 1
                choice = script.byte() % 7
                msg = [
                    {"type": "heartbeat", "node_id": codec.node_id},
                    {"type": "set_hostname", "node_id": codec.node_id, "hostname": names[script.byte() % len(names)]},
                    {"type": "set_visibility", "node_id": codec.node_id, "public": bool(script.byte() & 1)},
                    {"type": "report_trust", "node_id": codec.node_id, "peer_id": peer},
                    {"type": "revoke_trust", "node_id": codec.node_id, "peer_id": peer},
                    {"type": "deregister", "node_id": codec.node_id},
                    {"type": "check_trust", "node_id": codec.node_id, "peer_id": peer},
                ][choice]
                msg = codec.sign(msg, now)
                sent.append(msg)
                feed(msg, who)
            elif kind == 2:
                try:
                    msg = decode_registry_message(script.take(script.byte()))
                except PilotErrorType:
                    continue
                feed(msg, who)
            elif kind == 3 and sent:  # replay, or replay with one field changed
                msg = dict(sent[script.byte() % len(sent)])
                if op & 0x40 and msg:
                    key = sorted(msg)[script.byte() % len(msg)]
                    msg[key] = [script.byte(), "", None, True, "127.0.0.1:1", -1, 2**40][script.byte() % 7]
                feed(msg, who)
            elif kind == 4:
                now += (script.byte() + 1) * 5.0
                reg.handle_timer(now)
                journal.extend(reg.records_to_persist())
                while reg.next_event() is not None:
                    pass
            else:
                feed({"type": ["lookup", "resolve_hostname", "list_nodes"][script.byte() % 3],
                      "node_id": script.byte(), "hostname": names[script.byte() % len(names)]}, who)  # fmt: skip
        # Nothing acknowledged is lost: a registry rebuilt from its journal is the live one.  The draft
        # anti-replay floor (``last_ts``) is not journaled on every signed request: a restore raises every
        # floor to the restart time instead, so it is left out of the comparison.
        rebuilt = Registry(cfg)
        rebuilt.restore(journal, 0.0)
        if _durable(rebuilt.snapshot()) != _durable(reg.snapshot()):
            raise Finding("journal", f"registry@{profile.value}: the state rebuilt from the journal differs")
        return tuple(sorted(map(str, seen)))

    def seeds() -> list[bytes]:
        return [bytes([0, 0, 8, 1, 16, 2, 1, 0, 1, 1, 3, 1, 0, 4, 1, 0x43, 0, 2, 5, 1, 5]),
                bytes([0, 0, 0, 0, 4, 200, 4, 200, 1, 5, 3, 0])]  # fmt: skip

    return Harness(f"machine:registry@{profile.value}", fuzz_one_input, seeds, "machine",
                   "Registry: signed requests from three identities, replays, field changes, raw JSON")  # fmt: skip


def harnesses() -> list[Harness]:
    out: list[Harness] = []
    for p in Profile:
        out += [_tunnel(p), _stream(p), _node(p), _beacon_server(p), _beacon_client(p), _path(p), _registry(p)]
    return out
