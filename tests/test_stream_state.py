"""The transition table is data: sweep every (state, input) pair against a live connection (draft 8.1)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from stream_helpers import ACK, FIN, LOCAL, REMOTE, RST, SYN, RawPeer

from pilot_proto.errors import LocalProtocolError
from pilot_proto.stream import TRANSITIONS, Input, State, StreamConfig, StreamEndpoint
from pilot_proto.stream._state import ACTIVE_STATES
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


SETUPS: dict[State, Callable[[], tuple[StreamEndpoint, RawPeer, int]]] = {
    State.SYN_SENT: _active,
    State.SYN_RECEIVED: _passive,
    State.ESTABLISHED: _established,
    State.FIN_WAIT: _fin_wait,
    State.CLOSE_WAIT: _close_wait,
    State.LAST_ACK: _last_ack,
    State.TIME_WAIT: _time_wait,
}
APP_INPUTS = (Input.APP_SEND, Input.APP_CLOSE, Input.APP_ABORT)
PACKET_INPUTS = (Input.RECV_SYN, Input.RECV_SYN_ACK, Input.RECV_HANDSHAKE_ACK, Input.RECV_DATA, Input.RECV_FIN,
                 Input.RECV_FIN_ACK, Input.RECV_RST)  # fmt: skip


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
    elif inp is Input.RECV_FIN_ACK:
        fin = conn._fin_pos
        target = fin + 1 if fin is not None and conn._fin_sent else conn.snd_nxt + 1
        peer.feed(peer.packet(ACK, seq=rcv, ack=OUR_ISN + target))
    elif inp is Input.RECV_RST:
        peer.feed(peer.packet(RST, seq=rcv, ack=OUR_ISN + 1))


@pytest.mark.req("SES-001", "SES-002", "SES-003", "SES-004", "SES-005", "SES-006", "SES-007", "SES-022", "SES-130")
@pytest.mark.parametrize("state", list(SETUPS), ids=lambda s: s.value)
@pytest.mark.parametrize("inp", APP_INPUTS + PACKET_INPUTS, ids=lambda i: i.value)
def test_every_state_input_pair_follows_the_table(state: State, inp: Input) -> None:
    ep, peer, cid = SETUPS[state]()
    conn = ep.connection(cid)
    assert conn.state is state
    row = TRANSITIONS.get((state, inp))
    if row is None and inp in APP_INPUTS:
        with pytest.raises(LocalProtocolError):
            _stimulus(ep, peer, cid, inp)
        assert conn.state is state
        return
    _stimulus(ep, peer, cid, inp)
    expected = state if row is None else row[0]
    assert conn.state is expected, f"{state.value} + {inp.value}: table says {expected.value}"
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
