"""A Go-style peer switches keys the moment our re-key offer arrives (erratum E-KEX-2).

GoB keeps one X25519 key per process; when our new offer arrives it derives the new
session at once and seals its next frame with it, and that frame can overtake its own
answer.  ``anticipate_rekey`` (go-interop) recognises such a frame by the key our offer
implies; forged frames still change nothing.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import ErrorCode
from pilot_proto.sansio import Event, drain
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
from pilot_proto.tunnel import InputRejected, PacketReceived, Rekeyed, TunnelConfig, TunnelEndpoint
from pilot_proto.wire.address import Addr
from pilot_proto.wire.header import Packet, PacketProtocol


def feed(ep: TunnelEndpoint, data: bytes, addr: object, now: float) -> list[Event]:
    """Push one datagram, pull every event it caused."""
    ep.receive_datagram(data, addr, now)
    return drain(ep)


def tick(ep: TunnelEndpoint, now: float) -> list[Event]:
    """Fire the timer, pull every event it caused."""
    ep.handle_timer(now)
    return drain(ep)


US, GO = 2, 1
ADDR = {US: ("127.0.0.1", 4002), GO: ("127.0.0.1", 4001)}


def _ping(src: int, dst: int, seq: int) -> Packet:
    return Packet(0, PacketProtocol.CONTROL, Addr(0, src), Addr(0, dst), 49152, 0, seq=seq, payload=b"p%d" % seq)


def _endpoints(anticipate: bool) -> tuple[TunnelEndpoint, TunnelEndpoint]:
    keys = {n: insecure_test_identity(n).public_bytes for n in (US, GO)}
    ours = TunnelConfig.for_profile("go-interop", anticipate_rekey=anticipate)
    # The Go stand-in: one X25519 key for its lifetime, switching keys as soon as an offer arrives.
    gos = TunnelConfig.for_profile(
        "go-interop", ephemeral_per_session=False, anticipate_rekey=False, confirm_new_keys=False
    )
    us = TunnelEndpoint(US, InsecureDeterministicRng("us"), identity=insecure_test_identity(US), config=ours,
                        peer_keys={GO: keys[GO]})  # fmt: skip
    go = TunnelEndpoint(GO, InsecureDeterministicRng("go"), identity=insecure_test_identity(GO), config=gos,
                        peer_keys={US: keys[US]})  # fmt: skip
    us.add_peer(GO, ADDR[GO])
    go.add_peer(US, ADDR[US])
    return us, go


def _shuttle(src: TunnelEndpoint, dst: TunnelEndpoint, now: float) -> list[object]:
    events: list[object] = []
    for data, _addr in src.datagrams_to_send():
        events += feed(dst, data, ADDR[src.node_id], now)
    return events


def _established() -> tuple[TunnelEndpoint, TunnelEndpoint]:
    us, go = _endpoints(anticipate=True)
    us.send(GO, _ping(US, GO, 0), 0.0)
    for _ in range(3):
        _shuttle(us, go, 0.0)
        _shuttle(go, us, 0.0)
    return us, go


def _race(anticipate: bool) -> list[object]:
    """Re-key; the Go side answers, then seals a reply with the new key; the reply arrives first."""
    us, go = _endpoints(anticipate)
    us.send(GO, _ping(US, GO, 0), 0.0)
    for _ in range(3):
        _shuttle(us, go, 0.0)
        _shuttle(go, us, 0.0)
    us.rekey(GO, 1.0)
    assert [e for e in _shuttle(us, go, 1.0) if isinstance(e, Rekeyed)], "the Go side switches at once"
    go_answer = go.datagrams_to_send()  # its PILA answer, held back by the network
    go.send(US, _ping(GO, US, 7), 1.0)  # sealed with the new key
    events = _shuttle(go, us, 1.0)  # ... overtakes the answer
    for data, _addr in go_answer:
        events += feed(us, data, ADDR[GO], 1.01)
    return events


@pytest.mark.req("NONCE-006", "CONS-019")
def test_frame_under_the_new_key_that_overtakes_the_answer_is_accepted() -> None:
    events = _race(anticipate=True)
    received = [e for e in events if isinstance(e, PacketReceived)]
    assert [e.packet.seq for e in received] == [7]
    assert [e for e in events if isinstance(e, Rekeyed)]
    assert not [e for e in events if isinstance(e, InputRejected)]


@pytest.mark.req("NONCE-006")
def test_without_anticipation_that_frame_is_lost() -> None:
    """The control: this is the race the Go interop test hit (2 runs in ~32)."""
    events = _race(anticipate=False)
    assert not [e for e in events if isinstance(e, PacketReceived)]
    assert [e.code for e in events if isinstance(e, InputRejected)] == [ErrorCode.AUTH_FAILED]


def _state(ep: TunnelEndpoint) -> object:
    return {
        n: (p.address, p.state, tuple(p.pending), p.offer_public, p.offer_candidate,
            tuple((s.cipher.fingerprint, s.sealer.counter, s.opener.snapshot()) for s in p.sessions))
        for n, p in ep.peers.items()
    }  # fmt: skip


@pytest.mark.req("CONS-019", "SEC-006")
@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.binary(min_size=12, max_size=12), st.binary(min_size=16, max_size=120))
def test_forged_frames_while_an_offer_is_pending_change_nothing(nonce: bytes, body: bytes) -> None:
    us, _go = _established()
    us.rekey(GO, 1.0)
    us.datagrams_to_send()
    assert us.peers[GO].offer_candidate is not None
    before = _state(us)
    events = feed(us, b"PILS" + GO.to_bytes(4, "big") + nonce + body, ADDR[GO], 1.5)
    assert [type(e) for e in events] == [InputRejected]
    assert _state(us) == before


@pytest.mark.req("NONCE-006")
def test_draft_profile_does_not_anticipate() -> None:
    assert TunnelConfig.for_profile("draft").anticipate_rekey is False
    assert dataclasses.replace(TunnelConfig.for_profile("go-interop")).anticipate_rekey is True
