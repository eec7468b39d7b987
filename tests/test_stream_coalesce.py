"""``StreamConfig.coalesce_received``: in-order bytes that arrive before the application pulls join one event.

The wire must not notice: the same ACKs and window updates, the same receive-window accounting (draft 8.8: the
window is freed when the application pops the bytes), the same bytes in the same order -- only fewer
``DataReceived`` events.  The property test drives two endpoints, one coalescing and one not, with the same random
script (in-order and out-of-order segments on two connections, a FIN, pulls at random points) and compares them.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_helpers import ACK, FIN, RawPeer, accepted_peers

from pilot_proto.stream import StreamConfig, StreamEndpoint
from pilot_proto.stream.events import DataReceived, Event, StreamEnded

MSS = 100


def _endpoint(coalesce: bool, segments: int) -> tuple[StreamEndpoint, list[RawPeer]]:
    """Our endpoint listening on 1000 with two peers connected (remote ports 5000 and 5001), ISNs 0."""
    cfg = StreamConfig.for_profile(mss=MSS, recv_buf_segments=segments, coalesce_received=coalesce)
    ep, peers = accepted_peers(cfg)
    ep.events()
    ep.packets_to_send()
    return ep, peers


def _data(events: list[Event]) -> list[tuple[int, bytes]]:
    return [(e.conn_id, e.data) for e in events if isinstance(e, DataReceived)]


def _merged(events: list[Event]) -> list[tuple[str, int, bytes]]:
    """The events with adjacent ``DataReceived`` of one connection joined: what coalescing may change, undone."""
    out: list[tuple[str, int, bytes]] = []
    for e in events:
        if isinstance(e, DataReceived) and out and out[-1][0] == "data" and out[-1][1] == e.conn_id:
            out[-1] = ("data", e.conn_id, out[-1][2] + e.data)
        elif isinstance(e, DataReceived):
            out.append(("data", e.conn_id, e.data))
        else:
            out.append((type(e).__name__, getattr(e, "conn_id", -1), b""))
    return out


# one step: ("seg", which peer, offset ahead of its next in-order byte (0 = in order), size) or ("pull",) or ("fin", p)
step_st = st.one_of(
    st.tuples(st.just("seg"), st.integers(0, 1), st.sampled_from([0, 0, 0, MSS, 2 * MSS]), st.integers(1, MSS)),
    st.tuples(st.just("pull")),
    st.tuples(st.just("fin"), st.integers(0, 1)),
)


@pytest.mark.req("SES-040", "SES-060")
@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(step_st, min_size=1, max_size=40), st.sampled_from([2, 4, 8, 512]))
def test_coalescing_changes_only_the_event_count(steps: list[tuple[object, ...]], segments: int) -> None:
    sides = {c: _endpoint(c, segments) for c in (False, True)}
    sent = {c: [0, 0] for c in (False, True)}  # stream bytes each peer has sent in order so far (we mirror both)
    finned = [False, False]
    t = 0.0
    for step in steps:
        t += 0.001
        results = {}
        for c, (ep, peers) in sides.items():
            if step[0] == "pull":
                results[c] = (ep.events(), ep.packets_to_send())
                continue
            p = int(step[1])  # type: ignore[call-overload]
            peer = peers[p]
            if step[0] == "fin":
                if finned[p]:
                    results[c] = ([], [])
                    continue
                pkt = peer.packet(FIN | ACK, seq=1 + sent[c][p], ack=1)
            else:
                ahead, size = int(step[2]), int(step[3])  # type: ignore[call-overload]
                if finned[p]:
                    results[c] = ([], [])
                    continue
                pos = sent[c][p] + ahead
                pkt = peer.packet(ACK, seq=1 + pos, ack=1, payload=bytes((pos + i) % 251 for i in range(size)))
                if ahead == 0:
                    sent[c][p] += size
            ep.receive_packet(pkt, t)
            results[c] = ([], ep.packets_to_send())
        if step[0] == "fin":
            finned[int(step[1])] = True  # type: ignore[call-overload]
        plain_events, plain_packets = results[False]
        joined_events, joined_packets = results[True]
        assert joined_packets == plain_packets  # the same ACKs and window updates, in the same order
        assert _merged(joined_events) == _merged(plain_events)  # the same bytes and events, in the same order
        assert len(_data(joined_events)) <= len(_data(plain_events))
        unread = {c: [x.recv_unread for x in ep.connections()] for c, (ep, _) in sides.items()}
        assert unread[True] == unread[False]  # and the same receive-window accounting after every step
    final = {c: (ep.events(), ep.packets_to_send()) for c, (ep, _) in sides.items()}
    assert final[True][1] == final[False][1]
    assert _merged(final[True][0]) == _merged(final[False][0])


@pytest.mark.req("SES-040")
def test_segments_before_a_pull_are_one_event_and_free_the_window_when_popped() -> None:
    ep, (a, b) = _endpoint(True, 512)
    conn_a = next(c for c in ep.connections() if c.remote.port == 5000)
    for i in range(3):
        ep.receive_packet(a.packet(ACK, seq=1 + 100 * i, ack=1, payload=bytes([i]) * 100), 0.1)
    assert conn_a.recv_unread == 300  # held until the application pops them
    ev = ep.next_event()
    assert isinstance(ev, DataReceived) and ev.data == b"\x00" * 100 + b"\x01" * 100 + b"\x02" * 100
    assert conn_a.recv_unread == 0 and ep.next_event() is None
    # another connection's bytes in between: three events, in arrival order (never reordered to join)
    ep.receive_packet(a.packet(ACK, seq=301, ack=1, payload=b"x" * 10), 0.2)
    ep.receive_packet(b.packet(ACK, seq=1, ack=1, payload=b"y" * 10), 0.2)
    ep.receive_packet(a.packet(ACK, seq=311, ack=1, payload=b"z" * 10), 0.2)
    ep.receive_packet(a.packet(FIN | ACK, seq=321, ack=1), 0.2)
    ep.receive_packet(a.packet(ACK, seq=322, ack=1, payload=b"late"), 0.2)  # after the FIN: refused
    evs = ep.events()
    assert _data(evs) == [(conn_a.id, b"x" * 10), (evs[1].conn_id, b"y" * 10), (conn_a.id, b"z" * 10)]  # type: ignore[attr-defined]
    assert isinstance(evs[3], StreamEnded) and not _data(evs[4:])


@pytest.mark.req("SES-040")
def test_off_by_default_one_event_per_segment() -> None:
    assert StreamConfig.for_profile().coalesce_received is False
    ep, (a, _) = _endpoint(False, 512)
    for i in range(3):
        ep.receive_packet(a.packet(ACK, seq=1 + 10 * i, ack=1, payload=b"s" * 10), 0.1)
    assert [len(d) for _, d in _data(ep.events())] == [10, 10, 10]


@pytest.mark.req("SES-080")
def test_an_event_replaced_by_another_connections_still_frees_the_window_part_by_part() -> None:
    """Connection A's window filled by eight segments, then one segment on B takes over as the newest event:
    A's joined event, when popped, sends the same window updates as eight one-segment events (a reviewer's case:
    joining A's parts when B took over freed A's window in one step, one update instead of five)."""
    updates = []
    for coalesce in (False, True):
        ep, (a, b) = _endpoint(coalesce, 8)
        for i in range(8):
            ep.receive_packet(a.packet(ACK, seq=1 + 100 * i, ack=1, payload=bytes([i]) * 100), 0.1)
        ep.receive_packet(b.packet(ACK, seq=1, ack=1, payload=b"y" * 10), 0.1)
        ep.packets_to_send()
        events = ep.events()
        assert b"".join(d for c, d in _data(events) if c == 1) == b"".join(bytes([i]) * 100 for i in range(8))
        updates.append([(p.dst_port, p.window) for p in ep.packets_to_send()])
    assert updates[0] == updates[1] and len(updates[0]) == 5
