"""The crafting hooks (wire.raw, tunnel.dangerous) make frames our TunnelEndpoint accepts when they are
right and rejects, with the right ErrorCode and no state change, when they are wrong."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilot_proto.errors import DecodeError, ErrorCode
from pilot_proto.profile import Profile
from pilot_proto.sansio import InputRejected
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
from pilot_proto.tunnel import TunnelConfig, TunnelEndpoint
from pilot_proto.tunnel.dangerous import (
    CraftedSession,
    X25519Keypair,
    derive_session_key,
    open_pils,
    pila_frame,
    pilk_frame,
    seal_pils,
    sender_aad,
)
from pilot_proto.wire.address import Addr
from pilot_proto.wire.header import Packet, decode_packet, encode_packet
from pilot_proto.wire.raw import corrupt_checksum, from_packet, patch_packet, raw_header, raw_packet

ADDR = ("127.0.0.1", 40001)
US, THEM = 1, 2


def feed(ep: TunnelEndpoint, data: bytes, addr: Any = ADDR, now: float = 0.0) -> list[Any]:
    """receive_datagram, then every event it caused (the sansio idiom: input returns nothing)."""
    ep.receive_datagram(data, addr, now)
    events = []
    while (ev := ep.next_event()) is not None:
        events.append(ev)
    return events


def code_of(ev: Any) -> ErrorCode | None:
    return ev.error.code if isinstance(ev, InputRejected) else None


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def inner(src: int = US, dst: int = THEM, payload: bytes = b"hi", **kw: Any) -> bytes:
    return encode_packet(Packet(0x1, 0x1, Addr(0, src), Addr(0, dst), 49152, 7, payload=payload, **kw))


def keyed_target(profile: Profile = Profile.DRAFT) -> tuple[TunnelEndpoint, CraftedSession, bytes]:
    """A target endpoint keyed with us over a crafted PILK; returns it, our sending session and the key."""
    ep = TunnelEndpoint(THEM, InsecureDeterministicRng("target"), config=TunnelConfig.for_profile(profile))
    kp = X25519Keypair.generate(InsecureDeterministicRng("us"))
    evs = feed(ep, pilk_frame(US, kp.public))
    assert kinds(evs) == ["KeyEstablished"]
    (reply, addr), *_ = ep.datagrams_to_send()
    assert addr == ADDR and reply[:4] == b"PILK" and int.from_bytes(reply[4:8], "big") == THEM
    key = derive_session_key(kp.private, reply[8:40])
    start = TunnelConfig.for_profile(profile).counter_start
    return ep, CraftedSession(key, US, prefix=b"\x01\x02\x03\x04", counter=start), key


def state(ep: TunnelEndpoint) -> object:
    return {n: (p.address, [s.opener.snapshot() for s in p.sessions], len(p.sessions)) for n, p in ep.peers.items()}


# -- wire.raw -----------------------------------------------------------------------------------------------


@given(
    flags=st.integers(0, 15),
    proto=st.integers(0, 255),
    nodes=st.tuples(st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1)),
    ports=st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    seq=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=64),
)
def test_raw_packet_with_defaults_matches_the_encoder(
    flags: int, proto: int, nodes: tuple[int, int], ports: tuple[int, int], seq: int, payload: bytes
) -> None:
    pkt = Packet(flags, proto, Addr(*nodes), Addr(0, 5), ports[0], ports[1], seq, 9, 512, payload)
    assert from_packet(pkt) == encode_packet(pkt)
    assert decode_packet(from_packet(pkt)).payload == payload


@pytest.mark.req("PKT-010")
def test_raw_wrong_checksum_is_kept_and_rejected() -> None:
    good = raw_packet(flags=1, src=(0, 1), dst=(0, 2), payload=b"x")
    for bad in (raw_packet(flags=1, src=(0, 1), dst=(0, 2), payload=b"x", checksum=0), corrupt_checksum(good)):
        assert bad != good and bad[30:34] != good[30:34]
        with pytest.raises(DecodeError) as exc:
            decode_packet(bad)
        assert exc.value.code is ErrorCode.BAD_CHECKSUM


@pytest.mark.req("PKT-002", "PKT-024", "VER-001")
def test_raw_length_version_and_trailing_bytes_are_written_as_asked() -> None:
    long_claim = raw_packet(payload=b"abc", payload_length=10)
    assert long_claim[2:4] == b"\x00\x0a" and len(long_claim) == 37
    with pytest.raises(DecodeError) as exc:
        decode_packet(long_claim)
    assert exc.value.code is ErrorCode.TRUNCATED
    trailing = raw_packet(payload=b"abc", trailing=b"zz")
    with pytest.raises(DecodeError) as exc:
        decode_packet(trailing, Profile.DRAFT)
    assert exc.value.code is ErrorCode.TRAILING_DATA
    assert decode_packet(trailing, Profile.GO_INTEROP).payload == b"abc"  # E-PKT-1: the trailer is ignored
    for version in (0, 2, 15):
        with pytest.raises(DecodeError) as exc:
            decode_packet(raw_packet(version=version))
        assert exc.value.code is ErrorCode.BAD_VERSION
    assert decode_packet(raw_packet(version=2), check_version=False).version == 2
    assert raw_header(byte0=0xFF)[0] == 0xFF and raw_header()[30:] == b"\x00" * 4


def test_patch_packet_overwrites_fields_and_optionally_fixes_the_crc() -> None:
    pkt = inner()
    stale = patch_packet(pkt, window=7)
    assert stale[28:30] == b"\x00\x07" and stale[30:34] == pkt[30:34]
    with pytest.raises(DecodeError):
        decode_packet(stale)
    assert decode_packet(patch_packet(pkt, window=7, fix_checksum=True)).window == 7
    with pytest.raises(ValueError, match="does not fit"):
        raw_packet(flags=16)
    with pytest.raises(ValueError, match="unknown header field"):
        patch_packet(pkt, colour=1)


# -- tunnel.dangerous: PILK + PILS --------------------------------------------------------------------------


@pytest.mark.req("SEC-008", "SEC-006")
@pytest.mark.parametrize("profile", list(Profile))
def test_crafted_pilk_and_pils_are_accepted_and_the_key_matches(profile: Profile) -> None:
    ep, sess, key = keyed_target(profile)
    evs = feed(ep, sess.seal(inner(payload=b"crafted")))
    assert kinds(evs) == ["PacketReceived"] and evs[0].packet.payload == b"crafted"
    # the target's own frames open under the key we derived: both sides derived the same session key
    ep.send(US, inner(src=THEM, dst=US, payload=b"back"), 0.0)
    ((frame, _),) = ep.datagrams_to_send()
    assert decode_packet(open_pils(key, frame)).payload == b"back"


@pytest.mark.req("SEC-006", "SEC-027", "TUN-012", "CONS-015", "CONS-016", "CONS-019")
def test_each_wrong_pils_field_is_rejected_with_its_code_and_changes_nothing() -> None:
    ep, sess, key = keyed_target()
    assert kinds(feed(ep, sess.seal(inner()))) == ["PacketReceived"]  # counter 0 accepted
    far = sess.seal(inner(), counter=5000)
    assert kinds(feed(ep, far)) == ["PacketReceived"]
    cases = {
        "wrong key": (seal_pils(bytes(32), inner(), sender=US, counter=5002), ErrorCode.AUTH_FAILED),
        "aad of another node": (
            seal_pils(key, inner(), sender=US, counter=5003, aad=sender_aad(9)),
            ErrorCode.AUTH_FAILED,
        ),
        "unknown cleartext sender": (seal_pils(key, inner(src=9), sender=9, counter=5004), ErrorCode.NO_SESSION_KEY),
        "inner source is not the sender": (
            seal_pils(key, inner(src=9), sender=US, counter=5005, prefix=sess.prefix),
            ErrorCode.SENDER_MISMATCH,
        ),
        "replayed counter": (far, ErrorCode.REPLAY),
        "counter below the window": (sess.seal(inner(), counter=1), ErrorCode.TOO_OLD),
        "our own node as sender": (seal_pils(key, inner(), sender=THEM, counter=5006), ErrorCode.SPOOFED),
        "unknown magic": (seal_pils(key, inner(), sender=US, counter=5007, magic=b"PILX"), ErrorCode.BAD_MAGIC),
        "truncated": (sess.seal(inner())[:30], ErrorCode.TRUNCATED),
    }
    for name, (datagram, code) in cases.items():
        before = state(ep)
        evs = feed(ep, datagram)
        assert [code_of(e) for e in evs] == [code], name
        assert evs[0].layer == "tunnel" and evs[0].source == ADDR and evs[0].error.section, name
        assert state(ep) == before, name
        assert ep.datagrams_to_send() == [], name
    assert kinds(feed(ep, sess.seal(inner(), counter=5008))) == ["PacketReceived"]  # the real peer still gets in


@pytest.mark.req("SEC-028", "TUN-004")
def test_crafted_pilk_with_bad_keys_is_rejected() -> None:
    ep = TunnelEndpoint(THEM, InsecureDeterministicRng("t"))
    assert [code_of(e) for e in feed(ep, pilk_frame(US, bytes(32)))] == [ErrorCode.BAD_PUBLIC_KEY]
    assert [code_of(e) for e in feed(ep, pilk_frame(US, bytes(31)))] == [ErrorCode.TRUNCATED]
    assert [code_of(e) for e in feed(ep, pilk_frame(US, bytes(32), trailer=b"!"))] == [ErrorCode.TRAILING_DATA]
    assert ep.peers == {} and ep.datagrams_to_send() == []


# -- tunnel.dangerous: PILA ---------------------------------------------------------------------------------


@pytest.mark.req("TUN-018", "TUN-019", "TUN-020")
def test_crafted_pila_good_and_bad_signatures() -> None:
    ident, other = insecure_test_identity(US), insecure_test_identity(99)
    kp = X25519Keypair.generate(InsecureDeterministicRng("pila"))

    def target() -> TunnelEndpoint:
        return TunnelEndpoint(
            THEM, InsecureDeterministicRng("t"), identity=insecure_test_identity(THEM),
            peer_keys={US: ident.public_bytes},
        )  # fmt: skip

    bad = {
        "flipped signature bit": (pila_frame(US, kp.public, ident, bad_signature=True), ErrorCode.BAD_SIGNATURE),
        "signed another sender": (pila_frame(US, kp.public, ident, signed_sender=3), ErrorCode.BAD_SIGNATURE),
        "signed another key": (pila_frame(US, kp.public, ident, signed_x25519=bytes(32)), ErrorCode.BAD_SIGNATURE),
        "signed by another identity": (pila_frame(US, kp.public, other), ErrorCode.IDENTITY_MISMATCH),
        "right key, wrong signer": (
            pila_frame(US, kp.public, other, ed25519_public=ident.public_bytes),
            ErrorCode.BAD_SIGNATURE,
        ),
        "sender with no known key": (pila_frame(7, kp.public, ident), ErrorCode.UNKNOWN_IDENTITY),
        "zero signature": (
            pila_frame(US, kp.public, ed25519_public=ident.public_bytes, signature=bytes(64)),
            ErrorCode.BAD_SIGNATURE,
        ),
    }
    for name, (frame, code) in bad.items():
        ep = target()
        assert [code_of(e) for e in feed(ep, frame)] == [code], name
        assert ep.peers.get(US) is None or not ep.peers[US].sessions, name
        assert ep.datagrams_to_send() == [], name
    ep = target()
    evs = feed(ep, pila_frame(US, kp.public, ident))
    assert kinds(evs) == ["KeyEstablished"] and evs[0].authenticated
    ((reply, _),) = ep.datagrams_to_send()
    assert reply[:4] == b"PILA"
    key = derive_session_key(kp.private, reply[8:40])
    assert kinds(feed(ep, seal_pils(key, inner(), sender=US))) == ["PacketReceived"]


def test_crafted_session_counter_is_explicit() -> None:
    sess = CraftedSession(bytes(range(32)), 5, prefix=b"abcd", counter=41)
    a = sess.seal(b"x" * 34)
    b = sess.seal(b"x" * 34, counter=41)  # a deliberate nonce reuse: only dangerous.py lets you do this
    assert a[12:20] == b[12:20] == (41).to_bytes(8, "big") and a == b
    assert sess.counter == 43 and sess.sealed == [41, 41]
    assert sess.open(a) == b"x" * 34
