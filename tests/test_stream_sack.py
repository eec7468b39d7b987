"""SACK codec, out-of-order reassembly, SACK-driven retransmission, the SACK/data ambiguity (draft 8.5.2, 8.6)."""

from __future__ import annotations

import contextlib

import construct as c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_helpers import ACK, accepted, dialed

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError, PilotError
from pilot_proto.profile import Profile
from pilot_proto.stream import StreamConfig
from pilot_proto.stream.events import DataReceived
from pilot_proto.stream.reassembly import Reassembly
from pilot_proto.testing.link import LinkConfig
from pilot_proto.testing.pair import StreamPair
from pilot_proto.wire.sack import DECODERS, SACK_SCHEMA, decode_sack, encode_sack

u32 = st.integers(0, 0xFFFFFFFF)
blocks_st = st.lists(st.tuples(u32, u32), min_size=1, max_size=4)


# ----------------------------------------------------------------------------- codec
@pytest.mark.req("SES-061", "SES-062")
def test_exact_layout() -> None:
    raw = encode_sack([(0x01020304, 0x05060708)])
    assert raw == b"SACK\x01\x01\x02\x03\x04\x05\x06\x07\x08"
    assert decode_sack(raw) == ((0x01020304, 0x05060708),)


@pytest.mark.req("SES-061", "SES-062")
@settings(max_examples=200, derandomize=True, deadline=None)
@given(blocks_st)
def test_codec_matches_construct_schema(blocks: list[tuple[int, int]]) -> None:
    raw = encode_sack(blocks)
    built = SACK_SCHEMA.build({"count": len(blocks), "blocks": [{"left": a, "right": b} for a, b in blocks]})
    assert raw == built
    parsed = SACK_SCHEMA.parse(raw)
    assert [(b.left, b.right) for b in parsed.blocks] == list(decode_sack(raw)) == blocks


@pytest.mark.req("SES-061", "SES-062")
@pytest.mark.parametrize(("raw", "code", "strict_only"), [
    (b"SACK", ErrorCode.TRUNCATED, False),
    (b"SACX\x01" + bytes(8), ErrorCode.BAD_MAGIC, False),
    (b"SACK\x00", ErrorCode.OUT_OF_RANGE, False),
    (b"SACK\x05" + bytes(40), ErrorCode.OUT_OF_RANGE, False),
    (b"SACK\x02" + bytes(8), ErrorCode.TRUNCATED, False),
    (b"SACK\x01" + bytes(9), ErrorCode.TRAILING_DATA, True),
])  # fmt: skip
def test_invalid_payloads(raw: bytes, code: ErrorCode, strict_only: bool) -> None:
    with pytest.raises(DecodeError) as info:
        decode_sack(raw, strict=True)
    assert info.value.code is code and info.value.section == "8.6"
    if strict_only:
        assert decode_sack(raw, strict=False) == ((0, 0),)  # Go ignores extra bytes
    else:
        with pytest.raises(DecodeError):
            decode_sack(raw, strict=False)
    if not strict_only:
        with pytest.raises(c.ConstructError):
            SACK_SCHEMA.parse(raw)
    with pytest.raises(LocalProtocolError):
        encode_sack([])
    with pytest.raises(LocalProtocolError):
        encode_sack([(0, 1)] * 5)


@pytest.mark.req("SES-061")
@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.binary(max_size=64))
def test_decoders_only_raise_pilot_errors(data: bytes) -> None:
    for decode in DECODERS.values():
        with contextlib.suppress(PilotError):
            decode(data)
        decode(b"SACK\x01" + data[:8].ljust(8, b"\x00"))


# ----------------------------------------------------------------------------- reassembly
@pytest.mark.req("SES-050", "SES-052")
@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.data())
def test_reassembly_delivers_each_byte_once_in_order(data: st.DataObject) -> None:
    stream = bytes(range(256)) * 2
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=30)))
    edges = [0, *cuts, len(stream)]
    pieces = [(edges[i], stream[edges[i] : edges[i + 1]]) for i in range(len(edges) - 1)]
    # duplicates and overlapping re-sends with other boundaries
    extra = data.draw(st.lists(st.tuples(st.integers(0, len(stream) - 1), st.integers(1, 40)), max_size=10))
    pieces += [(s, stream[s : s + n]) for s, n in extra]
    order = data.draw(st.permutations(pieces))
    rx = Reassembly(1000)
    out = bytearray()
    for start, chunk in order:
        out += rx.add(1000 + start, chunk)
        assert rx.ooo_bytes == sum(e - s for s, e in rx.blocks(10_000))
    assert bytes(out) == stream and rx.rcv_nxt == 1000 + len(stream) and rx.ooo_bytes == 0


@pytest.mark.req("SES-060", "SES-062")
def test_sack_blocks_lowest_first_merged_and_capped() -> None:
    rx = Reassembly(0)
    for s in (10, 12, 30, 50, 70, 90):
        rx.add(s, b"xx")
    assert rx.blocks(4) == [(10, 14), (30, 32), (50, 52), (70, 72)]


@pytest.mark.req("SES-051", "SES-133")
def test_ooo_beyond_window_is_dropped_and_buffer_bounded() -> None:
    cfg = StreamConfig.for_profile(mss=100, recv_buf_segments=4)
    ep, peer, cid = accepted(cfg, our_isn=0, isn=0)
    out = peer.feed(peer.packet(ACK, seq=1 + 400, ack=1, payload=b"z" * 100))  # starts at the right edge
    assert ep.connection(cid).ooo_bytes == 0 and out[0].ack == 1
    peer.feed(peer.packet(ACK, seq=1 + 350, ack=1, payload=b"y" * 100))  # straddles: trimmed to the edge
    assert ep.connection(cid).ooo_bytes == 50


# ----------------------------------------------------------------------------- sender side
def _sack(peer_isn_base: int, blocks: list[tuple[int, int]]) -> bytes:
    return encode_sack([(peer_isn_base + a, peer_isn_base + b) for a, b in blocks])


@pytest.mark.req("SES-063", "SES-073", "SES-074")
def test_sack_retransmits_only_the_holes() -> None:
    ep, peer, cid = dialed(StreamConfig.for_profile(mss=100), our_isn=0, isn=0)
    ep.send(cid, bytes(1000), 0.0)
    segs = ep.packets_to_send()
    assert [p.seq for p in segs] == [1 + 100 * i for i in range(10)]
    # peer lost segments 0 and 3; holds 1-2 and 4-9
    blocks = [(101, 301), (401, 1001)]
    out: list = []
    for t in (0.01, 0.02, 0.03):
        out += peer.feed(peer.packet(ACK, ack=1, payload=_sack(0, blocks)), now=t)
    assert sorted(p.seq for p in out if p.payload) == [1, 301]
    conn = ep.connection(cid)
    assert conn.in_recovery
    peer.feed(peer.packet(ACK, ack=1001), now=0.05)
    assert conn.snd_una == 1001 and not conn.in_recovery and conn.bytes_in_flight == 0


@pytest.mark.req("SES-065", "SES-133")
@pytest.mark.parametrize("profile", [Profile.DRAFT, Profile.GO_INTEROP], ids=lambda p: p.value)
def test_bogus_sack_never_corrupts_sender(profile: Profile) -> None:
    ep, peer, cid = dialed(StreamConfig.for_profile(profile, mss=100), our_isn=0, isn=0)
    ep.send(cid, bytes(300), 0.0)
    ep.packets_to_send()
    conn = ep.connection(cid)
    before = (conn.snd_una, conn.snd_nxt, conn.bytes_in_flight)
    for blocks in ([(250, 150)], [(0, 5)], [(101, 99999)], [(0xFFFFFF00, 0xFFFFFFF0)]):
        peer.feed(peer.packet(ACK, ack=1, payload=_sack(0, blocks)), now=0.01)
    assert (conn.snd_una, conn.snd_nxt) == before[:2]
    assert 0 <= conn.bytes_in_flight <= 300
    peer.feed(peer.packet(ACK, ack=301), now=0.02)
    assert conn.bytes_in_flight == 0 and conn.send_buffer_size == 0


# ----------------------------------------------------------------------------- E-SACK-1 ambiguity
LOOKALIKE = encode_sack([(1, 2)])  # 13 bytes that parse as a SACK naming byte 1


@pytest.mark.req("SES-064")
@pytest.mark.parametrize("profile", [Profile.DRAFT, Profile.GO_INTEROP], ids=lambda p: p.value)
def test_sender_never_emits_a_data_segment_that_starts_with_sack(profile: Profile) -> None:
    ep, _peer, cid = dialed(StreamConfig.for_profile(profile), our_isn=0, isn=0)
    ep.send(cid, LOOKALIKE + b"tail", 0.0)
    out = ep.packets_to_send()
    assert next(p.payload for p in out) == b"S"
    assert all(p.payload[:4] != b"SACK" for p in out)


@pytest.mark.req("SES-064", "SES-134")
@pytest.mark.parametrize("profile", [Profile.DRAFT, Profile.GO_INTEROP], ids=lambda p: p.value)
def test_sack_lookalike_user_data_arrives_intact_end_to_end(profile: Profile) -> None:
    cfg = StreamConfig.for_profile(profile, mss=13)
    pair = StreamPair(cfg, link=LinkConfig(delay=0.01, loss=0.1, reorder=0.1), seed=5)
    ca, cb = pair.connect()
    payload = (LOOKALIKE * 50) + encode_sack([(1, 14), (20, 30)]) * 20
    pair.send("a", ca, payload)
    assert pair.run_until(lambda: len(pair.sides["b"].data(cb)) >= len(payload), max_time=120)
    assert pair.sides["b"].data(cb) == payload


@pytest.mark.req("SES-064")
def test_draft_receiver_takes_sack_shaped_data_from_a_naive_sender_as_data() -> None:
    """A Go-like sender does not split: the payload names bytes we never sent, so under draft it is data."""
    _ep, peer, _cid = accepted(our_isn=0, isn=0)
    naive = encode_sack([(500, 600)])  # we have sent nothing: cannot be a SACK
    peer.feed(peer.packet(ACK, seq=1, ack=1, payload=naive))
    assert [e.data for e in peer.events if isinstance(e, DataReceived)] == [naive]
    go, gpeer, _ = accepted(StreamConfig.for_profile(Profile.GO_INTEROP), our_isn=0, isn=0)
    gpeer.feed(gpeer.packet(ACK, seq=1, ack=1, payload=naive))
    assert not [e for e in gpeer.events if isinstance(e, DataReceived)]  # Go reading: it is a SACK
    assert go.connection(next(iter(go.connections())).id).rcv_nxt == 1


@pytest.mark.req("SES-064", "SES-065")
def test_stale_sack_is_ignored_not_delivered() -> None:
    ep, peer, cid = dialed(StreamConfig.for_profile(mss=100), our_isn=0, isn=0)
    ep.send(cid, bytes(300), 0.0)
    ep.packets_to_send()
    peer.feed(peer.packet(ACK, ack=301), now=0.01)
    peer.feed(peer.packet(ACK, ack=301, payload=_sack(0, [(101, 201)])), now=0.02)  # reordered old SACK
    assert not [e for e in peer.events if isinstance(e, DataReceived)]
    assert ep.connection(cid).rcv_nxt == 1
