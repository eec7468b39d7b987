"""The endpoint puts a connection's deadline in its timer heap lazily (once per run of packets to it), never late.

``get_timer()`` may be early, never late (:mod:`pilot_proto.sansio`): after every packet it is at or before the
earliest deadline of every live connection, and ``handle_timer`` at that deadline fires what is due (draft 8.11:
the delayed ACK goes out on time although its segment's deadline was not scheduled when the segment came in).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_helpers import ACK, RawPeer, accepted_peers

from pilot_proto.stream import State, StreamConfig, StreamEndpoint


def _two_connections() -> tuple[StreamEndpoint, list[RawPeer]]:
    return accepted_peers(StreamConfig.for_profile(mss=100))


@pytest.mark.req("SES-100")
@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(1, 100), st.booleans()), min_size=1, max_size=30))
def test_timer_is_never_later_than_a_connection_deadline(steps: list[tuple[int, int, bool]]) -> None:
    ep, peers = _two_connections()
    pos = [1, 1]
    now = 0.0
    for p, size, fire in steps:
        now += 0.005
        ep.receive_packet(peers[p].packet(ACK, seq=pos[p], ack=1, payload=bytes(size)), now)
        pos[p] += size
        ep.events()
        ep.packets_to_send()
        live = [c.next_deadline() for c in ep.connections() if c.state is not State.CLOSED]
        timer = ep.get_timer()
        assert timer is not None and timer <= min(live)
        if fire:  # what is due by the earliest deadline goes out then
            now = max(now, min(live))
            ep.handle_timer(now)
            ep.packets_to_send()
            assert all(c.next_deadline() > now for c in ep.connections())


@pytest.mark.req("SES-100")
def test_delayed_ack_fires_for_a_segment_whose_deadline_was_deferred() -> None:
    ep, (a, _) = _two_connections()
    ep.receive_packet(a.packet(ACK, seq=1, ack=1, payload=b"x" * 10), 1.0)  # one segment: the ACK is delayed
    assert ep.packets_to_send() == []
    timer = ep.get_timer()
    assert timer is not None and timer <= 1.0 + ep.config.delayed_ack_timeout
    ep.handle_timer(1.0 + ep.config.delayed_ack_timeout)
    (ack,) = ep.packets_to_send()
    assert ack.flags == ACK and ack.ack == 11
