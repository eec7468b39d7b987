"""The transition table is data that drives the code: sweep every (state, input) pair against a live
connection and check the row the code took, its action, and that nothing else assigns a state (draft 8.1)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest
from stream_helpers import ACK, FIN, LOCAL, REMOTE, RST, SYN, RawPeer

from pilot_proto.errors import LocalProtocolError
from pilot_proto.stream import TRANSITIONS, Input, State, StreamConfig, StreamEndpoint
from pilot_proto.stream._state import ACTIONS, ACTIVE_STATES, RECV_STATES
from pilot_proto.stream.connection import Connection
from pilot_proto.wire import SocketAddr

OUR_ISN = 100
PEER_ISN = 7000
CFG = StreamConfig.for_profile(auto_close_on_peer_fin=False)


def _passive() -> tuple[StreamEndpoint, RawPeer, int]:
    ep = StreamEndpoint(LOCAL, config=CFG, isn_source=lambda: OUR_ISN)
    ep.listen(1000)
    peer = RawPeer(ep, isn=PEER_ISN)
    peer.feed(peer.packet(SYN))
    peer.seq = PEER_ISN + 1
    return ep, peer, next(iter(ep.connections())).id


def _active() -> tuple[StreamEndpoint, RawPeer, int]:
    ep = StreamEndpoint(LOCAL, config=CFG, isn_source=lambda: OUR_ISN)
    cid = ep.connect(SocketAddr(REMOTE, 1000), 0.0)
    syn = ep.packets_to_send()[0]
    return ep, RawPeer(ep, port=1000, isn=PEER_ISN, local_port=syn.src_port), cid


def _established() -> tuple[StreamEndpoint, RawPeer, int]:
    ep, peer, cid = _active()
    peer.feed(peer.packet(SYN | ACK, ack=OUR_ISN + 1))
    peer.seq = PEER_ISN + 1
    return ep, peer, cid


def _fin_wait() -> tuple[StreamEndpoint, RawPeer, int]:
    ep, peer, cid = _established()
    ep.close(cid, 0.0)
    return ep, peer, cid


def _close_wait() -> tuple[StreamEndpoint, RawPeer, int]:
    ep, peer, cid = _established()
    peer.feed(peer.packet(FIN | ACK, ack=OUR_ISN + 1))
    peer.seq += 1
    return ep, peer, cid


def _last_ack() -> tuple[StreamEndpoint, RawPeer, int]:
    ep, peer, cid = _close_wait()
    ep.close(cid, 0.0)
    return ep, peer, cid


def _time_wait() -> tuple[StreamEndpoint, RawPeer, int]:
    ep, peer, cid = _fin_wait()
    peer.feed(peer.packet(ACK, ack=OUR_ISN + 2))
    return ep, peer, cid


def _simultaneous_close() -> tuple[StreamEndpoint, RawPeer, int]:
    """FIN_WAIT with the peer's FIN consumed: both closed at once, our FIN not yet acknowledged."""
    ep, peer, cid = _fin_wait()
    peer.feed(peer.packet(FIN | ACK, ack=OUR_ISN + 1))
    peer.seq += 1
    return ep, peer, cid


def _time_wait_after_both_fins() -> tuple[StreamEndpoint, RawPeer, int]:
    ep, peer, cid = _simultaneous_close()
    peer.feed(peer.packet(ACK, ack=OUR_ISN + 2))
    return ep, peer, cid


SETUPS: dict[str, tuple[State, Callable[[], tuple[StreamEndpoint, RawPeer, int]]]] = {
    "SYN_SENT": (State.SYN_SENT, _active),
    "SYN_RECEIVED": (State.SYN_RECEIVED, _passive),
    "ESTABLISHED": (State.ESTABLISHED, _established),
    "FIN_WAIT": (State.FIN_WAIT, _fin_wait),
    "FIN_WAIT+peer_fin": (State.FIN_WAIT, _simultaneous_close),
    "CLOSE_WAIT": (State.CLOSE_WAIT, _close_wait),
    "LAST_ACK": (State.LAST_ACK, _last_ack),
    "TIME_WAIT": (State.TIME_WAIT, _time_wait),
    "TIME_WAIT+peer_fin": (State.TIME_WAIT, _time_wait_after_both_fins),
}
APP_INPUTS = (Input.APP_SEND, Input.APP_CLOSE, Input.APP_ABORT)
PACKET_INPUTS = (Input.RECV_SYN, Input.RECV_SYN_ACK, Input.RECV_HANDSHAKE_ACK, Input.RECV_DATA, Input.RECV_FIN,
                 Input.RECV_FIN_AGAIN, Input.RECV_FIN_ACK, Input.RECV_RST, Input.REUSE)  # fmt: skip


def _stimulus(ep: StreamEndpoint, peer: RawPeer, cid: int, inp: Input) -> None:
    conn = ep.connection(cid)
    una = OUR_ISN + conn.snd_una
    rcv = PEER_ISN + conn.rcv_nxt
    if inp is Input.APP_SEND:
        ep.send(cid, b"x", 0.0)
    elif inp is Input.APP_CLOSE:
        ep.close(cid, 0.0)
    elif inp is Input.APP_ABORT:
        ep.abort(cid, 0.0)
    elif inp is Input.RECV_SYN:
        peer.feed(peer.packet(SYN, seq=PEER_ISN))
    elif inp is Input.RECV_SYN_ACK:
        peer.feed(peer.packet(SYN | ACK, seq=PEER_ISN, ack=OUR_ISN + 1))
    elif inp is Input.RECV_HANDSHAKE_ACK:
        peer.feed(peer.packet(ACK, seq=rcv, ack=OUR_ISN + 1))
    elif inp is Input.RECV_DATA:
        peer.feed(peer.packet(ACK, seq=rcv, ack=una, payload=b"d"))
    elif inp is Input.RECV_FIN:
        peer.feed(peer.packet(FIN | ACK, seq=rcv, ack=una))
    elif inp is Input.RECV_FIN_AGAIN:  # the FIN at the position of the one already consumed
        peer.feed(peer.packet(FIN | ACK, seq=rcv - 1, ack=una))
    elif inp is Input.REUSE:
        conn.reuse(0.0)
    elif inp is Input.RECV_FIN_ACK:
        fin = conn._fin_pos
        target = fin + 1 if fin is not None and conn._fin_sent else conn.snd_nxt + 1
        peer.feed(peer.packet(ACK, seq=rcv, ack=OUR_ISN + target))
    elif inp is Input.RECV_RST:
        peer.feed(peer.packet(RST, seq=rcv, ack=OUR_ISN + 1))


@pytest.mark.req("SES-001", "SES-002", "SES-003", "SES-004", "SES-005", "SES-006", "SES-007", "SES-022", "SES-130")
@pytest.mark.parametrize("setup", list(SETUPS))
@pytest.mark.parametrize("inp", APP_INPUTS + PACKET_INPUTS, ids=lambda i: i.value)
def test_every_state_input_pair_follows_the_table(setup: str, inp: Input) -> None:
    state, make = SETUPS[setup]
    ep, peer, cid = make()
    conn = ep.connection(cid)
    assert conn.state is state
    before = conn.last_transition
    row = TRANSITIONS.get((state, inp))
    taken = inp
    if inp is Input.RECV_FIN_AGAIN and not conn._peer_fin_seen:
        row = None  # no FIN consumed yet: a FIN below rcv_nxt is not a retransmission and must change nothing
    elif inp is Input.RECV_FIN and conn._peer_fin_seen:
        taken = Input.RECV_FIN_AGAIN  # once the peer's FIN is consumed, every FIN is a retransmission of it
        row = TRANSITIONS.get((state, taken))
    if row is None and inp in APP_INPUTS:
        with pytest.raises(LocalProtocolError):
            _stimulus(ep, peer, cid, inp)
        assert conn.state is state and conn.last_transition == before
        return
    _stimulus(ep, peer, cid, inp)
    expected = state if row is None else row[0]
    assert conn.state is expected, f"{state.value} + {inp.value}: table says {expected.value}"
    if row is None:
        assert conn.last_transition == before, f"{setup} + {inp.value}: no row, yet {conn.last_transition} ran"
    else:  # the row the code took and the action it ran are the table's
        assert conn.last_transition == (state, taken, row[0], row[1]), f"{setup} + {inp.value}"
    if expected is State.CLOSED:
        assert cid not in {c.id for c in ep.connections()}


@pytest.mark.req("SES-001")
def test_table_is_closed_over_states_and_time_wait_is_not_active() -> None:
    for (state, inp), (nxt, action) in TRANSITIONS.items():
        assert isinstance(state, State) and isinstance(inp, Input) and isinstance(nxt, State) and action
    assert State.TIME_WAIT not in ACTIVE_STATES and State.CLOSED not in ACTIVE_STATES
    reachable = {State.CLOSED}
    frontier = [State.CLOSED, State.LISTEN]
    while frontier:
        s = frontier.pop()
        for (src, _), (dst, _) in TRANSITIONS.items():
            if src is s and dst not in reachable:
                reachable.add(dst)
                frontier.append(dst)
    assert reachable >= set(State) - {State.LISTEN}
    # every state except CLOSED/LISTEN can be aborted
    for s in set(State) - {State.CLOSED, State.LISTEN}:
        assert TRANSITIONS[(s, Input.APP_ABORT)][0] is State.CLOSED


@pytest.mark.req("SES-001")
def test_every_action_is_a_method_and_every_method_an_action() -> None:
    methods = {name[len("_do_") :] for name in dir(Connection) if name.startswith("_do_")}
    assert methods == set(ACTIONS) - {"unlisten"}  # unlisten is the port's own row (StreamEndpoint.unlisten)
    assert {s for (s, i) in TRANSITIONS if i is Input.RECV_DATA} == RECV_STATES


def _state_assignments(path: Path) -> list[str]:
    """Every ``<x>.state = ...`` in a module, as "Class.method" of where it happens."""
    found: list[str] = []

    def visit(node: ast.AST, where: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            name = getattr(child, "name", None)
            scope = [*where, name] if isinstance(child, ast.ClassDef | ast.FunctionDef) else where
            targets: list[ast.expr] = []
            if isinstance(child, ast.Assign):
                targets = child.targets
            elif isinstance(child, ast.AnnAssign | ast.AugAssign):
                targets = [child.target]
            for t in targets:
                if isinstance(t, ast.Attribute) and t.attr == "state":
                    found.append(".".join(scope))
            visit(child, scope)

    visit(ast.parse(path.read_text(encoding="utf-8")), [])
    return found


@pytest.mark.req("SES-001")
def test_no_state_is_assigned_outside_the_table() -> None:
    """Only Connection._go changes a state (and __init__ sets the first one): the table is the only way."""
    package = Path(__file__).resolve().parents[1] / "pilot_proto" / "stream"
    found = {f"{p.name}:{w}" for p in sorted(package.glob("*.py")) for w in _state_assignments(p)}
    assert found == {"connection.py:Connection.__init__", "connection.py:Connection._go"}


@pytest.mark.req("SES-001")
def test_changing_a_row_changes_what_the_code_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """The code runs the table's action: re-point (ESTABLISHED, RECV_SYN) from resend_ack to none and the ACK goes."""
    ep, peer, cid = _established()
    assert peer.feed(peer.packet(SYN, seq=PEER_ISN)) != []  # resend_ack: one ACK
    monkeypatch.setitem(TRANSITIONS, (State.ESTABLISHED, Input.RECV_SYN), (State.ESTABLISHED, "none"))
    assert peer.feed(peer.packet(SYN, seq=PEER_ISN)) == []
    assert ep.connection(cid).last_transition == (State.ESTABLISHED, Input.RECV_SYN, State.ESTABLISHED, "none")
    monkeypatch.setitem(TRANSITIONS, (State.ESTABLISHED, Input.APP_CLOSE), (State.ESTABLISHED, "none"))
    ep.close(cid, 0.0)  # the row now says: stay, do nothing -- no FIN, no FIN_WAIT
    assert ep.connection(cid).state is State.ESTABLISHED and ep.packets_to_send() == []
