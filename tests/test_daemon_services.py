"""Built-in services, sans-IO (draft 10.5, 10.6, 14): bytes in per connection, bytes out, bad input isolated."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pilot_proto.errors import ErrorCode
from pilot_proto.profile import Profile
from pilot_proto.sansio import InputRejected
from pilot_proto.services import (
    DataExchangeService,
    EchoService,
    EventStreamService,
    FrameReceived,
    SecureService,
    TaskReceived,
    TaskSubmitService,
    TrustChanged,
    TrustRequested,
    TrustService,
)
from pilot_proto.services.base import StreamService
from pilot_proto.tunnel import Identity
from pilot_proto.tunnel.secure_channel import SecureChannel
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.dataexchange import FrameReader, JsonFrame, TextFrame, encode_data_frame
from pilot_proto.wire.eventstream import Event, EventStreamDecoder, Publish, Side, Subscribe, encode_message
from pilot_proto.wire.secure import Role
from pilot_proto.wire.tasksubmit import RESULT_ACCEPTED, Result, Submit, TaskFrameReader, encode_task_frame
from pilot_proto.wire.trust import TrustMessage, TrustType, decode_trust, encode_trust, handshake_signing_string

PEER = SocketAddr(Addr(0, 9), 49152)
NOW = 100.0
UNIX = 1_700_000_000


def drain(svc: StreamService, take: int | None = None) -> dict[int, bytes]:
    """What a daemon would write: everything (or at most ``take`` bytes per connection)."""
    out: dict[int, bytes] = {}
    for cid in svc.connections_with_output():
        data = svc.output(cid)
        n = len(data) if take is None else min(take, len(data))
        svc.sent(cid, n)
        out[cid] = data[:n]
    return out


def events(svc: StreamService) -> list[Any]:
    found: list[Any] = []
    while (ev := svc.next_event()) is not None:
        found.append(ev)
    return found


@pytest.mark.req("SVC-001")
def test_echo_reflects_bytes_then_closes_after_fin() -> None:
    svc = EchoService()
    svc.open(1, PEER, NOW)
    svc.receive(1, b"hello ", NOW)
    svc.receive(1, b"world", NOW)
    svc.end(1, NOW)
    assert not svc.wants_close(1)  # data first
    assert drain(svc) == {1: b"hello world"}
    assert svc.wants_close(1) and not svc.wants_close(1)  # exactly once


def test_echo_backpressure_keeps_what_the_stream_did_not_take() -> None:
    svc = EchoService(max_pending=10)
    svc.open(1, PEER, NOW)
    svc.receive(1, b"x" * 25, NOW)
    assert svc.paused(1)
    assert drain(svc, take=7) == {1: b"x" * 7}
    assert svc.output(1) == b"x" * 18 and svc.paused(1)
    drain(svc, take=10)
    assert not svc.paused(1) and svc.queued() == 8


@pytest.mark.req("SVC-010", "SVC-011")
def test_data_exchange_acks_each_frame_like_go() -> None:
    svc = DataExchangeService()
    svc.open(1, PEER, NOW)
    wire = encode_data_frame(TextFrame("hi")) + encode_data_frame(JsonFrame(b'{"a":1}'))
    svc.receive(1, wire[:5], NOW)  # split frames are reassembled
    svc.receive(1, wire[5:], NOW)
    reader = FrameReader()
    reader.feed(drain(svc)[1])
    assert reader.messages() == [TextFrame("ACK TEXT 2 bytes"), TextFrame("ACK JSON 7 bytes")]
    got = [e for e in events(svc) if isinstance(e, FrameReceived)]
    assert [e.frame for e in got] == [TextFrame("hi"), JsonFrame(b'{"a":1}')]


def test_data_exchange_bad_frame_resets_only_that_connection() -> None:
    svc = DataExchangeService()
    svc.open(1, PEER, NOW)
    svc.open(2, PEER, NOW)
    svc.receive(1, b"\x00\x00\x00\x09\x00\x00\x00\x01x", NOW)  # type 9 does not exist
    svc.receive(2, encode_data_frame(TextFrame("ok")), NOW)
    (rej,) = [e for e in events(svc) if isinstance(e, InputRejected)]
    assert rej.layer == "dataexchange" and rej.peer == 9
    assert svc.wants_abort(1) and not svc.wants_abort(2)
    assert 2 in drain(svc)


@pytest.mark.req("SVC-020", "SVC-021", "SVC-029", "SVC-023", "SVC-024", "SVC-025")
@pytest.mark.parametrize("profile", list(Profile))
def test_event_stream_publishes_to_other_subscribers(profile: Profile) -> None:
    svc = EventStreamService(profile=profile)
    for cid in (1, 2, 3):
        svc.open(cid, PEER, NOW)
    svc.receive(1, encode_message(Subscribe("news"), profile), NOW)
    svc.receive(2, encode_message(Subscribe("*"), profile), NOW)
    svc.receive(3, encode_message(Subscribe("other"), profile), NOW)
    svc.receive(3, encode_message(Publish("news", b"flash"), profile), NOW)
    out = drain(svc)
    assert set(out) == {1, 2}  # not the publisher, not the non-subscriber
    for cid in (1, 2):
        dec = EventStreamDecoder(profile, Side.BROKER)
        dec.feed(out[cid])
        (ev,) = dec.messages()
        assert isinstance(ev, Event) and (ev.topic, ev.payload) == ("news", b"flash")


@pytest.mark.req("SVC-031", "SVC-033", "SVC-034")
def test_task_submit_answers_one_result_then_closes() -> None:
    svc = TaskSubmitService()
    svc.open(1, PEER, NOW)
    svc.receive(1, encode_task_frame(Submit("t-1", "do it", "0:0000.0000.0009", "0:0000.0000.0001")), NOW)
    reader = TaskFrameReader()
    reader.feed(drain(svc)[1])
    (result,) = reader.messages()
    assert isinstance(result, Result) and result.task_id == "t-1" and result.status == RESULT_ACCEPTED
    assert svc.wants_close(1) and list(svc.queue) == ["t-1"]
    (ev,) = events(svc)
    assert isinstance(ev, TaskReceived) and ev.accepted is True


@pytest.mark.req("SVC-054", "SEC-013")
@pytest.mark.parametrize("profile", list(Profile))
def test_secure_service_echoes_inside_records(profile: Profile) -> None:
    svc = SecureService(os.urandom, profile=profile)
    client = SecureChannel(Role.CLIENT, os.urandom, profile)
    svc.open(1, PEER, NOW)
    svc.receive(1, client.data_to_send(), NOW)  # client key
    assert client.receive_data(drain(svc)[1]) == []  # server key: channel open
    client.send(b"secret one")
    client.send(b"secret two")
    svc.receive(1, client.data_to_send(), NOW)
    assert client.receive_data(drain(svc)[1]) == [b"secret one", b"secret two"]
    tampered = bytearray(client.data_to_send() or b"")
    client.send(b"x")
    tampered += client.data_to_send()
    tampered[-1] ^= 1
    svc.receive(1, bytes(tampered), NOW)
    assert svc.wants_abort(1)
    assert any(isinstance(e, InputRejected) and e.code is ErrorCode.AUTH_FAILED for e in events(svc))


# -- trust (port 444) ------------------------------------------------------------------------------


def _msg(ident: Identity | None, mtype: TrustType, sender: int, receiver: int, ts: int = UNIX, **kw: str) -> bytes:
    sig = ident.sign(handshake_signing_string(sender, receiver)) if ident is not None else b""
    pub = ident.public_bytes if ident is not None else b""
    return encode_trust(TrustMessage(mtype, sender, pub, kw.get("justification", ""), sig, "", ts))


def _trust(node: int = 1, profile: Profile = Profile.DRAFT) -> TrustService:
    svc = TrustService(node, Identity.from_seed(bytes([node]) * 32), profile=profile)
    svc.clock_offset = UNIX - NOW
    return svc


def _deliver(svc: TrustService, cid: int, sender: int, raw: bytes) -> None:
    svc.open(cid, SocketAddr(Addr(0, sender), 49152 + cid), NOW)
    svc.receive(cid, raw, NOW)


@pytest.mark.req("SEC-015", "SEC-018", "SVC-061", "SVC-062")
def test_trust_request_waits_for_approval_then_accept_goes_out() -> None:
    peer = Identity.from_seed(b"\x09" * 32)
    svc = _trust()
    _deliver(svc, 1, 9, _msg(peer, TrustType.REQUEST, 9, 1, justification="please"))
    assert not svc.is_trusted(9) and 9 in svc.pending
    assert any(isinstance(e, TrustRequested) and e.justification == "please" for e in events(svc))
    svc.approve(9, UNIX)
    assert svc.is_trusted(9)
    ((to, raw),) = svc.messages_to_send()
    msg = decode_trust(raw)
    assert to == 9 and msg.type is TrustType.ACCEPT and msg.node_id == 1


@pytest.mark.req("SEC-016")
def test_mutual_requests_are_approved_automatically() -> None:
    a, b = _trust(1), _trust(2)
    assert a.request(2, "hi", UNIX) == "sent"
    ((_, req_a),) = a.messages_to_send()
    assert b.request(1, "hello", UNIX) == "sent"
    ((_, req_b),) = b.messages_to_send()
    _deliver(b, 1, 1, req_a)
    _deliver(a, 1, 2, req_b)
    assert a.is_trusted(2) and b.is_trusted(1)
    assert any(isinstance(e, TrustChanged) and e.how == "mutual" for e in events(a))


def test_accept_counts_only_from_a_node_we_asked() -> None:
    peer = Identity.from_seed(b"\x09" * 32)
    svc = _trust()
    _deliver(svc, 1, 9, _msg(peer, TrustType.ACCEPT, 9, 1))
    assert not svc.is_trusted(9)
    assert any(isinstance(e, InputRejected) and e.code is ErrorCode.INVALID_STATE for e in events(svc))


@pytest.mark.parametrize(
    ("label", "sender_on_tunnel", "raw_sender", "ts", "signed", "code"),
    [
        ("node id differs from the tunnel peer", 8, 9, UNIX, True, ErrorCode.SPOOFED),
        ("too old", 9, 9, UNIX - 301, True, ErrorCode.TOO_OLD),
        ("from the future", 9, 9, UNIX + 60, True, ErrorCode.BAD_VALUE),
        ("unsigned under draft", 9, 9, UNIX, False, ErrorCode.AUTH_FAILED),
    ],
)
def test_trust_refusals(label: str, sender_on_tunnel: int, raw_sender: int, ts: int, signed: bool,
                        code: ErrorCode) -> None:  # fmt: skip
    ident = Identity.from_seed(b"\x09" * 32) if signed else None
    svc = _trust()
    _deliver(svc, 1, sender_on_tunnel, _msg(ident, TrustType.REQUEST, raw_sender, 1, ts))
    assert not svc.pending and not svc.trusted, label
    assert [e.code for e in events(svc) if isinstance(e, InputRejected)] == [code], label


def test_replayed_request_is_refused_and_bad_signature_too() -> None:
    peer = Identity.from_seed(b"\x09" * 32)
    svc = _trust()
    raw = _msg(peer, TrustType.REQUEST, 9, 1)
    _deliver(svc, 1, 9, raw)
    svc.reject(9, "no", UNIX)
    _deliver(svc, 2, 9, raw)
    assert 9 not in svc.pending
    assert [e.code for e in events(svc) if isinstance(e, InputRejected)] == [ErrorCode.REPLAY]
    wrong = _msg(peer, TrustType.REQUEST, 9, 2, UNIX + 1)  # signed for node 2, not us
    _deliver(svc, 3, 9, wrong)
    assert [e.code for e in events(svc) if isinstance(e, InputRejected)] == [ErrorCode.AUTH_FAILED]


def test_unsigned_request_is_accepted_under_go_interop_like_go() -> None:
    svc = _trust(profile=Profile.GO_INTEROP)
    _deliver(svc, 1, 9, _msg(None, TrustType.REQUEST, 9, 1))
    assert 9 in svc.pending


@pytest.mark.req("SEC-019")
def test_revoke_stops_trust_both_ways() -> None:
    a, b = _trust(1), _trust(2)
    a.request(2, "", UNIX)
    ((_, req),) = a.messages_to_send()
    _deliver(b, 1, 1, req)
    b.approve(1, UNIX)
    ((_, acc),) = b.messages_to_send()
    _deliver(a, 1, 2, acc)
    assert a.is_trusted(2) and b.is_trusted(1)
    a.revoke(2, UNIX + 1)
    ((_, rev),) = a.messages_to_send()
    _deliver(b, 2, 1, rev)
    assert not a.is_trusted(2) and not b.is_trusted(1)


@pytest.mark.req("SEC-019")
def test_trust_book_snapshot_round_trips() -> None:
    peer = Identity.from_seed(b"\x09" * 32)
    svc = _trust()
    _deliver(svc, 1, 9, _msg(peer, TrustType.REQUEST, 9, 1, justification="first"))
    _deliver(svc, 2, 7, _msg(Identity.from_seed(b"\x07" * 32), TrustType.REQUEST, 7, 1, UNIX + 1))
    svc.approve(9, UNIX)
    again = _trust()
    again.restore(svc.snapshot())
    assert again.trusted == svc.trusted and again.pending == svc.pending and again.is_trusted(9)
    with pytest.raises(ValueError):
        again.restore({"trusted": [{"no": "id"}]})


def test_relay_fallback_and_relayed_messages() -> None:
    """What cannot be delivered directly is queued for the registry relay; relayed requests and responses
    follow the same rules as direct ones (a response counts only from a node we asked)."""
    svc = _trust()
    svc.request(9, "via registry", UNIX)
    ((peer, raw),) = svc.messages_to_send()
    svc.undeliverable(peer, raw)
    (act,) = svc.relays_to_send()
    assert (act.peer, act.kind, act.text) == (9, TrustType.REQUEST, "via registry")
    svc.relayed_response(7, True, UNIX)  # never asked node 7
    assert not svc.is_trusted(7)
    svc.relayed_response(9, True, UNIX)
    assert svc.is_trusted(9)
    svc.relayed_request(5, "hello", UNIX)
    assert 5 in svc.pending and not svc.is_trusted(5)
    assert [e.code for e in events(svc) if isinstance(e, InputRejected)] == [ErrorCode.INVALID_STATE]
