"""Every state machine speaks the one idiom of :mod:`pilot_proto.sansio` (issue 8).

Two kinds of proof:

* **shape** -- each class is checked against the ``typing.Protocol`` it claims by inspecting the
  signatures (parameter names, kinds and annotations, return annotations), not only by
  ``isinstance`` (which looks at method names alone);
* **behaviour** -- per layer, garbage input yields exactly one
  :class:`~pilot_proto.sansio.InputRejected` carrying the whole
  :class:`~pilot_proto.errors.PilotError`, nothing is sent, and the machine's state (everything
  reachable from it except statistics counters) is exactly what it was before.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import inspect
import types
import typing
from collections.abc import Callable, Hashable
from typing import Any

import pytest

from pilot_proto import sansio
from pilot_proto.daemon.core import Daemon
from pilot_proto.errors import Action, ErrorCode, PilotError
from pilot_proto.nat.beacon_client import BeaconClient
from pilot_proto.nat.beacon_server import BeaconServer
from pilot_proto.nat.node_paths import NatNode
from pilot_proto.nat.path import PathManager
from pilot_proto.node import Node
from pilot_proto.sansio import DatagramEndpoint, Event, InputRejected, PacketEndpoint, drain
from pilot_proto.stream import StreamEndpoint
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
from pilot_proto.tunnel import TunnelConfig, TunnelEndpoint
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.beacon import Endpoint
from pilot_proto.wire.header import Packet, PacketProtocol, encode_packet

# -- shape ------------------------------------------------------------------------------------------------


def _members(tp: Any) -> list[Any]:
    """The members of a union annotation (``A | B``, ``Optional``), or ``[tp]``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(tp) for m in _members(arg)]
    return [tp]


def _subtype(a: Any, b: Any) -> bool:
    """``a`` may be used where ``b`` is expected (generic arguments compared invariantly)."""
    if a == b or b is Any:
        return True
    if b is Hashable:  # sansio.Address: any hashable address
        return inspect.isclass(a) and issubclass(a, Hashable) and a is not object
    oa, ob = typing.get_origin(a), typing.get_origin(b)
    if ob is not None:
        if oa != ob:
            return False
        return all(_same(x, y) for x, y in zip(typing.get_args(a), typing.get_args(b), strict=True))
    return inspect.isclass(a) and inspect.isclass(b) and issubclass(a, b)


def _same(a: Any, b: Any) -> bool:
    ma, mb = _members(a), _members(b)
    return all(any(_subtype(x, y) for y in mb) for x in ma) and all(any(_subtype(y, x) for x in ma) for y in mb)


def _covariant(impl: Any, proto: Any) -> bool:  # return types: every member fits the protocol
    return all(any(_subtype(m, p) for p in _members(proto)) for m in _members(impl))


def _contravariant(impl: Any, proto: Any) -> bool:  # parameters: accepts everything the protocol passes
    return all(any(_subtype(p, m) for m in _members(impl)) for p in _members(proto))


def _hints(fn: Callable[..., Any], owner: type) -> dict[str, Any]:
    module = inspect.getmodule(owner)
    ns = dict(vars(module)) if module is not None else {}
    ns.update(vars(sansio))
    return typing.get_type_hints(fn, globalns=ns)


def conformance_problems(cls: type, proto: type) -> list[str]:
    """Every way ``cls`` differs from ``proto`` (empty list: it conforms)."""
    problems: list[str] = []
    for name, pfn in vars(proto).items():
        if name.startswith("_") or not callable(pfn):
            continue
        fn = getattr(cls, name, None)
        if fn is None or not callable(fn):
            problems.append(f"{cls.__name__}.{name} is missing")
            continue
        psig, sig = inspect.signature(pfn), inspect.signature(fn)
        pparams, params = list(psig.parameters.values())[1:], list(sig.parameters.values())[1:]
        required = [p for p in params if p.default is inspect.Parameter.empty]
        if [(p.name, p.kind) for p in params[: len(pparams)]] != [(p.name, p.kind) for p in pparams] or len(
            required
        ) > len(pparams):
            problems.append(f"{cls.__name__}.{name}{sig} does not take the protocol's {psig}")
            continue
        phints, hints = _hints(pfn, proto), _hints(fn, cls)
        for p in pparams:
            if p.name not in hints or not _contravariant(hints[p.name], phints[p.name]):
                problems.append(f"{cls.__name__}.{name}({p.name}: {hints.get(p.name)}) vs {phints[p.name]}")
        if "return" not in hints or not _covariant(hints["return"], phints["return"]):
            problems.append(f"{cls.__name__}.{name} returns {hints.get('return')}, protocol {phints['return']}")
    return problems


CONVERTED_DATAGRAM = [TunnelEndpoint, Node, BeaconClient, BeaconServer, PathManager, NatNode, Daemon]


@pytest.mark.parametrize("cls", CONVERTED_DATAGRAM, ids=lambda c: c.__name__)
def test_datagram_machines_match_the_protocol_by_signature(cls: type) -> None:
    assert conformance_problems(cls, DatagramEndpoint) == []


def test_stream_endpoint_matches_the_packet_protocol_by_signature() -> None:
    assert conformance_problems(StreamEndpoint, PacketEndpoint) == []


def test_the_signature_check_catches_deviations() -> None:
    """The checker itself: a list-returning input, a renamed parameter and a foreign event type all fail."""

    class ReturnsEvents:
        def receive_datagram(self, data: bytes, addr: sansio.Address, now: float) -> list[Event]:
            return []

    class Renamed:
        def receive_datagram(self, data: bytes, source: sansio.Address, now: float) -> None: ...

    class ForeignEvent:
        def next_event(self) -> int | None:
            return None

    class Good:
        def receive_datagram(self, data: bytes, addr: sansio.Address, now: float) -> None: ...

        def next_event(self) -> InputRejected | None:
            return None

    def only(cls: type, method: str) -> list[str]:
        return [p for p in conformance_problems(cls, DatagramEndpoint) if f".{method}" in p and "missing" not in p]

    assert only(ReturnsEvents, "receive_datagram")
    assert only(Renamed, "receive_datagram")
    assert only(ForeignEvent, "next_event")
    assert not only(Good, "receive_datagram") and not only(Good, "next_event")


@pytest.mark.parametrize("cls", [TunnelEndpoint, Node], ids=lambda c: c.__name__)
def test_runtime_protocol_check(cls: type) -> None:
    inst = _tunnel() if cls is TunnelEndpoint else _node_pair()[0]
    assert isinstance(inst, DatagramEndpoint)


# -- state snapshots --------------------------------------------------------------------------------------

#: Statistics beside the event (issue 8: "counters stay as statistics beside it") and the last clock reading.
#: Statistics and accounting: counters, and the beacon server's per-source token buckets, which charge
#: every datagram -- garbage included, that is what makes a garbage flood cost the flooder (draft 10.8) --
#: and the tunnel's key-exchange budget, charged before a PILA's signature is checked.
STATISTICS = frozenset({"stats", "dropped", "packets_in", "packets_out", "_now", "_limiter", "_admission"})
_OPAQUE = (int, float, str, bytes, bool, type(None), enum.Enum)


def snapshot(obj: object) -> object:
    """A comparable picture of everything reachable from ``obj`` except statistics counters.

    Foreign objects without Python-level state (AESGCM, X25519 keys, callables) are pictured by
    identity, so replacing one shows up while its unchanged internals need no comparison.
    """
    seen: dict[int, int] = {}

    def walk(x: object) -> object:
        if isinstance(x, _OPAQUE):
            return x
        if isinstance(x, bytearray | memoryview):
            return ("bytes", bytes(x))
        if id(x) in seen:
            return ("ref", seen[id(x)])
        seen[id(x)] = len(seen)
        if isinstance(x, dict):
            return ("dict", tuple((walk(k), walk(v)) for k, v in x.items()))
        if isinstance(x, list | tuple | collections.deque):
            return (type(x).__name__, tuple(walk(v) for v in x))
        if isinstance(x, set | frozenset):
            return ("set", tuple(sorted(repr(walk(v)) for v in x)))
        if callable(x) and not hasattr(x, "__dict__") and not hasattr(type(x), "__slots__"):
            return ("callable", id(x))
        fields: dict[str, object] = {}
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            fields.update({f.name: getattr(x, f.name) for f in dataclasses.fields(x)})
        for klass in type(x).__mro__:
            for slot in getattr(klass, "__slots__", ()):
                if hasattr(x, slot):
                    fields[slot] = getattr(x, slot)
        fields.update(getattr(x, "__dict__", {}))
        if not fields:
            return ("opaque", type(x).__name__, id(x))
        return (
            type(x).__name__,
            tuple((k, walk(v)) for k, v in sorted(fields.items()) if k not in STATISTICS),
        )

    return walk(obj)


def test_snapshot_sees_a_change() -> None:
    """The state comparison can fail: a consumed nonce counter is a different snapshot."""
    a, _ = _keyed_tunnels()
    before = snapshot(a)
    a.send(2, _ping(1, 2), 1.0)
    assert snapshot(a) != before


# -- fixtures -------------------------------------------------------------------------------------------------

A, B = 1, 2
UDP = {A: ("127.0.0.1", 4001), B: ("127.0.0.1", 4002)}
STRANGER = ("127.0.0.1", 6666)


def _ping(src: int, dst: int) -> Packet:
    return Packet(0, PacketProtocol.DATAGRAM, Addr(0, src), Addr(0, dst), 1000, 1001, payload=b"x")


def _tunnel(node: int = A, seed: str = "idiom") -> TunnelEndpoint:
    keys = {n: insecure_test_identity(n).public_bytes for n in (A, B) if n != node}
    return TunnelEndpoint(
        node,
        InsecureDeterministicRng(f"{seed}/{node}"),
        identity=insecure_test_identity(node),
        config=TunnelConfig.for_profile("draft"),
        peer_keys=keys,
    )


def _shuttle(a: Any, b: Any) -> None:
    for _ in range(20):
        moved = False
        for src, dst, here in ((a, b, UDP[A]), (b, a, UDP[B])):
            for dgram in src.datagrams_to_send():
                moved = True
                dst.receive_datagram(dgram.data, here, 0.5)
        if not moved:
            return


def _keyed_tunnels() -> tuple[TunnelEndpoint, TunnelEndpoint]:
    a, b = _tunnel(A), _tunnel(B)
    a.add_peer(B, UDP[B])
    b.add_peer(A, UDP[A])
    a.send(B, _ping(A, B), 0.0)
    _shuttle(a, b)
    drain(a), drain(b)
    assert a.peers[B].active is not None and b.peers[A].active is not None
    return a, b


def _node_pair() -> tuple[Node, Node]:
    keys = {n: insecure_test_identity(n).public_bytes for n in (A, B)}
    nodes = tuple(
        Node(n, InsecureDeterministicRng(f"node/{n}"), identity=insecure_test_identity(n), peer_keys=keys)
        for n in (A, B)
    )
    a, b = nodes
    a.add_peer(B, UDP[B])
    b.add_peer(A, UDP[A])
    b.listen(7)
    a.connect(SocketAddr(Addr(0, B), 7), 0.0)
    _shuttle(a, b)
    drain(a), drain(b)
    return a, b


def _garbage(a: TunnelEndpoint) -> dict[str, bytes]:
    """Datagrams a keyed endpoint ``b`` must refuse, from noise to a well-formed forgery."""
    a.send(B, _ping(A, B), 1.0)
    (good,) = a.datagrams_to_send()
    forged = bytearray(good.data)
    forged[-1] ^= 1
    return {
        "noise": bytes(range(7, 47)),
        "bad_magic": b"XXXX" + bytes(40),
        "truncated_pils": good.data[:20],
        "forged_tag": bytes(forged),
        "replay": good.data,  # delivered once first by the caller
        "pilt_from_keyed_peer": b"PILT" + encode_packet(_ping(A, B)),
        "reflected": b"PILS" + B.to_bytes(4, "big") + bytes(40),
    }


def _check_one_rejection(events: list[Event], layer: str, data: bytes, source: object) -> InputRejected:
    assert [type(e) for e in events] == [InputRejected], events
    (ev,) = events
    assert isinstance(ev, InputRejected)
    err = ev.error
    assert isinstance(err, PilotError)
    assert isinstance(err.code, ErrorCode) and isinstance(err.action, Action)
    assert err.rule and err.field and err.section, err.to_dict()
    assert ev.layer == layer and ev.size == len(data) and ev.source == source
    assert ev.code is err.code and ev.action is err.action
    return ev


GARBAGE = ["noise", "bad_magic", "truncated_pils", "forged_tag", "replay", "pilt_from_keyed_peer", "reflected"]


@pytest.mark.parametrize("kind", GARBAGE)
def test_tunnel_garbage_is_one_rejection_and_changes_nothing(kind: str) -> None:
    a, b = _keyed_tunnels()
    garbage = _garbage(a)
    if kind == "replay":
        b.receive_datagram(garbage["replay"], UDP[A], 1.0)
        drain(b)
    data = garbage[kind]
    before = snapshot(b)
    b.receive_datagram(data, STRANGER, 2.0)
    _check_one_rejection(drain(b), "tunnel", data, STRANGER)
    assert b.datagrams_to_send() == []
    assert snapshot(b) == before


@pytest.mark.parametrize("kind", GARBAGE)
def test_node_garbage_is_one_rejection_and_changes_nothing(kind: str) -> None:
    a, b = _node_pair()
    garbage = _garbage(a.tunnel)
    if kind == "replay":
        b.receive_datagram(garbage["replay"], UDP[A], 1.0)
        drain(b), b.datagrams_to_send()
    data = garbage[kind]
    before = snapshot(b)
    b.receive_datagram(data, STRANGER, 2.0)
    _check_one_rejection(drain(b), "tunnel", data, STRANGER)
    assert b.datagrams_to_send() == []
    assert snapshot(b) == before


def _stream_garbage() -> list[tuple[str, Packet]]:
    return [
        ("wrong_destination", _ping(A, 99)),
        ("empty_datagram", Packet(0, PacketProtocol.DATAGRAM, Addr(0, A), Addr(0, B), 1000, 1001)),
    ]


@pytest.mark.parametrize(("kind", "packet"), _stream_garbage(), ids=[k for k, _ in _stream_garbage()])
def test_stream_garbage_is_one_rejection_and_changes_nothing(kind: str, packet: Packet) -> None:
    ep = StreamEndpoint(Addr(0, B))
    ep.listen(7)
    before = snapshot(ep)
    ep.receive_packet(packet, 1.0)
    events = drain(ep)
    assert [type(e) for e in events] == [InputRejected], events
    (ev,) = events
    assert isinstance(ev, InputRejected) and ev.layer == "stream" and isinstance(ev.error, PilotError)
    assert ev.error.rule and ev.error.section
    assert ep.packets_to_send() == []
    assert snapshot(ep) == before


def _beacon_server() -> BeaconServer:
    return BeaconServer()


def _path_manager() -> PathManager:
    return PathManager(A, Endpoint("127.0.0.1", 9999))


@pytest.mark.parametrize(
    ("factory", "layer", "data"),
    [
        (_beacon_server, "beacon-server", b"\xff" + bytes(range(30))),  # no such beacon message type
        # The path manager hands every tunnel-looking frame up unjudged; what it alone refuses is a
        # datagram too short to carry a frame magic.
        (_path_manager, "path", b"\xff\x00"),
    ],
    ids=["server", "path"],
)
def test_nat_garbage_is_one_rejection_and_changes_nothing(factory: Callable[[], Any], layer: str, data: bytes) -> None:
    machine = factory()
    src = Endpoint("127.0.0.1", 5555)
    before = snapshot(machine)
    machine.receive_datagram(data, src, 1.0)
    events = drain(machine)
    _check_one_rejection(events, layer, data, src)
    assert machine.datagrams_to_send() == []
    assert snapshot(machine) == before


# -- one place per layer acts on the error's action -------------------------------------------------------


def _action_readers(module: types.ModuleType) -> set[str]:
    """Names of the functions in ``module`` that read an ``.action`` attribute."""
    import ast

    tree = ast.parse(inspect.getsource(module))
    readers: set[str] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Attribute) and node.attr == "action" and isinstance(node.ctx, ast.Load):
                    readers.add(fn.name)
    return readers


def test_the_tunnel_acts_on_rejections_in_exactly_one_place() -> None:
    import pilot_proto.tunnel.endpoint as tunnel_endpoint

    assert _action_readers(tunnel_endpoint) == {"_act"}


def test_the_node_acts_on_its_own_rejections_in_exactly_one_place() -> None:
    import pilot_proto.node as node_module

    assert _action_readers(node_module) == {"_act"}
