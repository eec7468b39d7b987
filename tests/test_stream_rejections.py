"""Bad input to the session layer is always one InputRejected event with the whole error (draft 5, 6, 8, 10.8, 12).

Each refusal reason in :data:`pilot_proto.stream.rejections.REJECTIONS` is provoked once: exactly one
``InputRejected(layer="stream")`` comes out, carrying the catalogue's code, field, rule, section, requirement
and action; the endpoint's state is what it was; and the action is carried out -- a Stream RST goes out
exactly when the action is ``RST``.  Garbage bytes never raise out of ``receive_bytes``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_helpers import ACK, LOCAL, REMOTE, RST, SYN, RawPeer

from pilot_proto.errors import Action, DecodeError
from pilot_proto.sansio import Event, InputRejected, PacketEndpoint
from pilot_proto.stream import StreamConfig, StreamEndpoint
from pilot_proto.stream.rejections import REJECTIONS
from pilot_proto.wire import Addr, Packet, PacketProtocol, SocketAddr

OUR_ISN, PEER_ISN = 100, 7000
OTHER = Addr(0, 3)


def _established(**cfg: Any) -> tuple[StreamEndpoint, RawPeer]:
    ep = StreamEndpoint(LOCAL, config=StreamConfig.for_profile(**cfg), isn_source=lambda: OUR_ISN)
    ep.listen(1000)
    peer = RawPeer(ep, isn=PEER_ISN)
    peer.feed(peer.packet(SYN))
    peer.seq = PEER_ISN + 1
    peer.feed(peer.packet(ACK, ack=OUR_ISN + 1))
    ep.events()
    ep.packets_to_send()
    return ep, peer


def _dialing() -> tuple[StreamEndpoint, RawPeer]:
    ep = StreamEndpoint(LOCAL, isn_source=lambda: OUR_ISN)
    ep.connect(SocketAddr(REMOTE, 1000), 0.0)
    syn = ep.packets_to_send()[0]
    return ep, RawPeer(ep, port=1000, isn=PEER_ISN, local_port=syn.src_port)


def _fresh_syn(peer: RawPeer, port: int, src: Addr = REMOTE) -> Packet:
    return peer.packet(SYN, seq=1)._replace(src_port=port, src=src)


Case = Callable[[], tuple[StreamEndpoint, Callable[[StreamEndpoint], None]]]


def _case(cfg: dict[str, Any] | None, feed: Callable[[StreamEndpoint, RawPeer], None]) -> Case:
    def make() -> tuple[StreamEndpoint, Callable[[StreamEndpoint], None]]:
        ep, peer = _established(**(cfg or {}))
        return ep, lambda e: feed(e, peer)

    return make


def _recv(pkt: Callable[[RawPeer], Packet]) -> Callable[[StreamEndpoint, RawPeer], None]:
    return lambda ep, peer: ep.receive_packet(pkt(peer), 0.5)


def _dialing_case(pkt: Callable[[RawPeer], Packet]) -> Case:
    def make() -> tuple[StreamEndpoint, Callable[[StreamEndpoint], None]]:
        ep, peer = _dialing()
        return ep, lambda e: e.receive_packet(pkt(peer), 0.5)

    return make


CASES: dict[str, Case] = {
    "wrong_destination": _case(None, _recv(lambda p: p.packet(ACK, ack=OUR_ISN + 1)._replace(dst=OTHER))),
    "version_mismatch": _case(None, _recv(lambda p: p.packet(ACK, ack=OUR_ISN + 1, payload=b"v2", version=2))),
    "unsupported_version_syn": _case(None, _recv(lambda p: _fresh_syn(p, 6000)._replace(version=2))),
    "empty_datagram": _case(None, _recv(lambda p: p.packet(0, protocol=PacketProtocol.DATAGRAM, dst_port=77))),
    "unknown_protocol": _case(None, _recv(lambda p: p.packet(0, protocol=PacketProtocol.STREAM)._replace(protocol=9))),
    "rst_no_connection": _case(None, _recv(lambda p: p.packet(RST, dst_port=2000))),
    "no_connection": _case(None, _recv(lambda p: p.packet(ACK, ack=5, dst_port=2000))),
    "connection_limit": _case({"max_connections_per_port": 1}, _recv(lambda p: _fresh_syn(p, 6000))),
    "peer_connection_limit": _case({"max_connections_per_peer": 1}, _recv(lambda p: _fresh_syn(p, 6000))),
    "syn_rate_source": _case(
        {"syn_burst_per_source": 1, "syn_rate_per_source": 0.1}, _recv(lambda p: _fresh_syn(p, 6000))
    ),
    "syn_rate_global": _case(
        {"syn_burst_global": 1, "syn_rate_global": 0.1, "syn_rate_per_source": None},
        _recv(lambda p: _fresh_syn(p, 6000, OTHER)),
    ),
    "unsolicited_ping_reply": _case(
        None, _recv(lambda p: p.packet(ACK, seq=4, ack=5, protocol=PacketProtocol.CONTROL)._replace(src_port=0))
    ),
    "ack_of_unsent_data": _case(None, _recv(lambda p: p.packet(ACK, ack=OUR_ISN + 500))),
    "rst_out_of_window": _case(None, _recv(lambda p: p.packet(RST, seq=PEER_ISN + 10_000_000))),
    "rst_bad_ack": _dialing_case(lambda p: p.packet(RST, seq=0, ack=OUR_ISN + 77)),
    "syn_ack_bad_ack": _dialing_case(lambda p: p.packet(SYN | ACK, ack=OUR_ISN + 77)),
    "ooo_buffer_full": _case(
        {"max_ooo_bytes_total": 100},
        _recv(lambda p: p.packet(ACK, seq=PEER_ISN + 1 + 1000, ack=OUR_ISN + 1, payload=bytes(200))),
    ),
}


def _state(ep: StreamEndpoint) -> Any:
    """Everything observable about the endpoint except its statistics and its output queues."""
    conns = sorted(
        (c.id, c.state, tuple(sorted(c.snapshot().items())), c.recv_unread, c.ooo_bytes, c.unsent, c.irs)
        for c in ep.connections()
    )
    return conns, ep.active_count, sorted(ep._listening), sorted(ep._port_use.items()), ep.outbox.ooo_used


@pytest.mark.req("SES-131", "SES-132", "SES-133", "SES-151", "SES-152", "VER-005", "VER-006", "SEC-025", "SES-051")
@pytest.mark.parametrize("reason", sorted(REJECTIONS))
def test_each_refusal_is_one_event_with_the_whole_error_and_changes_nothing(reason: str) -> None:
    assert set(CASES) == set(REJECTIONS), "every refusal reason needs a case here"
    ep, feed = CASES[reason]()
    before = _state(ep)
    dropped_before = ep.dropped.get(reason, 0)
    feed(ep)
    events = ep.events()
    out = ep.packets_to_send()
    rejected = [e for e in events if isinstance(e, InputRejected)]
    assert len(rejected) == 1 and rejected == events, events
    (ev,) = rejected
    want = REJECTIONS[reason]
    err = ev.error
    assert ev.layer == "stream" and ev.peer is not None and ev.size > 0
    assert (err.code, err.field, err.section, err.requirement, err.action) == (
        want.code,
        want.field,
        want.section,
        want.requirement,
        want.action,
    )
    assert err.rule.startswith(want.rule)
    assert _state(ep) == before  # nothing changed because of it
    assert ep.dropped[reason] == dropped_before + 1  # the counter is statistics beside the event
    rsts = [p for p in out if p.flags & RST]
    assert bool(rsts) is (want.action is Action.RST), out  # the action is what was done
    if want.action is Action.DROP:
        assert all(not p.flags & RST for p in out)


@pytest.mark.req("PKT-010", "SES-133")
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_garbage_bytes_never_raise_and_each_refusal_is_reported(raw: bytes) -> None:
    ep, _peer = _established()
    before = _state(ep)
    ep.receive_bytes(raw, 1.0)
    events = ep.events()
    rejected = [e for e in events if isinstance(e, InputRejected)]
    assert len(rejected) <= 1
    if rejected and isinstance(rejected[0].error, DecodeError):
        assert rejected[0].size == len(raw) and _state(ep) == before and ep.packets_to_send() == []


@pytest.mark.req("SES-001")
def test_the_stream_endpoint_speaks_the_packet_idiom() -> None:
    ep = StreamEndpoint(LOCAL)
    assert isinstance(ep, PacketEndpoint)
    assert ep.receive_packet(Packet(0, 2, REMOTE, LOCAL, 1, 2, 0, 0, 0, b"x"), 0.0) is None  # nothing returned
    assert ep.receive_bytes(b"", 0.0) is None
    got, refused = ep.events()
    assert isinstance(got, Event) and isinstance(refused, InputRejected) and isinstance(refused.error, DecodeError)


@pytest.mark.req("SES-131")
def test_the_error_action_is_acted_on_in_one_place() -> None:
    """Only StreamEndpoint.reject reads an error's action (rejections.py only builds errors from its table)."""
    package = Path(__file__).resolve().parents[1] / "pilot_proto" / "stream"
    readers: set[str] = set()
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Attribute) and node.attr == "action" and isinstance(node.ctx, ast.Load):
                        readers.add(f"{path.name}:{fn.name}")
    assert readers == {"endpoint.py:reject", "rejections.py:rejection"}
