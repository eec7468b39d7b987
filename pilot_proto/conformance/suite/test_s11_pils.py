"""Draft 7.2, 10.2, 11, 19.6-19.9: PILS frames -- tag, AAD and sender binding, replay window, counters; and the
port-443 record nonces of 11.4.

Every forged frame is followed by a real one, which must still be answered: a forgery may never lock
out the real peer (CONS-019)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pilot_proto.conformance.harness import Peer, Stream
from pilot_proto.conformance.suite._common import answered, keyed_with_ping
from pilot_proto.conformance.suite._services import collect, release
from pilot_proto.conformance.suite.test_s10_secure import SECURE, SERVER, _record
from pilot_proto.conformance.verdicts import Unsupported
from pilot_proto.wire.header import encode_packet


def _ping_frame(peer: Peer, **seal: Any) -> tuple[bytes, int, int]:
    req = peer.ping_packet()
    return peer.seal(encode_packet(req), **seal), req.src_port, req.seq


@pytest.fixture
def pinged(peer: Peer) -> Peer:
    return keyed_with_ping(peer)


@pytest.mark.req("SEC-006", "CONS-019")
@pytest.mark.parametrize("where", ["tag", "ciphertext", "nonce"])
def test_tampered_frame_is_dropped(pinged: Peer, where: str) -> None:
    frame, port, seq = _ping_frame(pinged)
    b = bytearray(frame)
    b[{"tag": -1, "ciphertext": 21, "nonce": 19}[where]] ^= 0x01
    pinged.send_raw(bytes(b), f"PILS with a flipped {where} bit")
    assert not answered(pinged, port, seq), f"a PILS frame with a flipped {where} bit was accepted"
    pinged.alive()


@pytest.mark.req("SEC-006")
@pytest.mark.parametrize("aad", ["empty", "zeros", "target-id"])
def test_wrong_aad_is_dropped(pinged: Peer, aad: str) -> None:
    keys = pinged.keys
    assert keys is not None
    value = {"empty": b"", "zeros": bytes(4), "target-id": keys.target_id.to_bytes(4, "big")}[aad]
    frame, port, seq = _ping_frame(pinged, aad=value)
    pinged.send_raw(frame, f"PILS sealed with AAD={aad}")
    assert not answered(pinged, port, seq), f"a PILS frame sealed with AAD={aad} (not the sender ID) was accepted"
    pinged.alive()


@pytest.mark.req("SEC-006")
def test_relabelled_sender_is_dropped(pinged: Peer) -> None:
    frame, port, seq = _ping_frame(pinged)
    other = (pinged.node_id ^ 0x0F0F0F).to_bytes(4, "big")
    pinged.send_raw(frame[:4] + other + frame[8:], "PILS re-labelled with another sender ID")
    assert not answered(pinged, port, seq), "a PILS frame re-labelled with another sender ID was accepted"
    pinged.alive()


@pytest.mark.req("SEC-006")
def test_target_seals_with_sender_id_as_aad(pinged: Peer) -> None:
    """The target's own frames authenticate with AAD = its node ID (the harness opens them no other way)."""
    assert pinged.inbound, "no authenticated frame from the target"
    bad = [d for d in pinged.other if d[:4] == b"PILS"]
    assert not bad, f"{len(bad)} PILS frames from the target did not authenticate with AAD = its sender ID"


@pytest.mark.req("SEC-027", "SEC-006")
def test_inner_source_must_match_sender(make_peer: Any) -> None:
    a: Peer = keyed_with_ping(make_peer())
    b: Peer = keyed_with_ping(make_peer())
    req = a.ping_packet()
    spoof = req._replace(src=req.src._replace(node=b.node_id))
    a.send_packet(spoof, "PILS from A carrying a packet whose source is B")
    assert not answered(a, req.src_port, req.seq), "the target answered A for a packet claiming B's source"
    assert not answered(b, req.src_port, req.seq), "the target accepted a packet from A claiming to be from B"
    a.alive()


@pytest.mark.req("CONS-013", "CONS-016", "CONS-009")
def test_replayed_frame_is_dropped(pinged: Peer) -> None:
    frame, port, seq = _ping_frame(pinged)
    pinged.send_raw(frame)
    assert answered(pinged, port, seq, 2.0), "the original frame was not answered"
    pinged.send_raw(frame, "replay of the previous frame")
    assert not answered(pinged, port, seq), "a replayed PILS frame was answered a second time"
    pinged.alive()


@pytest.mark.req("CONS-015", "CONS-018", "CONS-014")
def test_counter_too_far_behind_is_dropped(pinged: Peer) -> None:
    keys = pinged.keys
    assert keys is not None
    base = keys.counter
    old, port_old, seq_old = _ping_frame(pinged, counter=base)  # sealed now, sent later
    keys.counter = base + 300
    frame, port, seq = _ping_frame(pinged)  # counter base+300 slides the window forward (CONS-018)
    pinged.send_raw(frame)
    assert answered(pinged, port, seq, 2.0), "a frame that jumps the counter forward by 300 was not answered"
    pinged.send_raw(old, "counter 300 behind the highest seen")
    assert not answered(pinged, port_old, seq_old), "a counter 300 behind the highest seen (window 256) was accepted"
    pinged.alive()


@pytest.mark.req("CONS-017")
def test_out_of_order_inside_window_is_accepted(pinged: Peer) -> None:
    keys = pinged.keys
    assert keys is not None
    base = keys.counter
    late, port_late, seq_late = _ping_frame(pinged, counter=base)
    keys.counter = base + 10
    frame, port, seq = _ping_frame(pinged)
    pinged.send_raw(frame)
    assert answered(pinged, port, seq, 2.0)
    pinged.send_raw(late, "counter 10 behind, never seen")
    assert answered(pinged, port_late, seq_late, 2.0), "an unseen counter inside the replay window was refused"


@pytest.mark.req("CONS-019")
def test_forged_frames_do_not_move_the_window(pinged: Peer) -> None:
    keys = pinged.keys
    assert keys is not None
    base = keys.counter
    for jump in (1000, 5000):
        forged = bytearray(_ping_frame(pinged, counter=base + jump)[0])
        forged[-1] ^= 0xFF
        pinged.send_raw(bytes(forged), f"forged frame, counter {base + jump}")
    frame, port, seq = _ping_frame(pinged, counter=base)
    keys.counter = base + 1
    pinged.send_raw(frame, "the real next frame")
    assert answered(pinged, port, seq, 2.0), "after forged high-counter frames the real next frame was refused"


@pytest.mark.req("NONCE-003", "NONCE-001", "TUN-013")
def test_counter_starts_per_profile_and_grows_by_one(pinged: Peer) -> None:
    pinged.alive()
    counters = [i.counter for i in pinged.inbound]
    start = pinged.target.counter_start
    assert counters[0] == start, (
        f"the target's first PILS counter is {counters[0]}, the {pinged.target.profile.value} profile expects {start}"
    )
    assert counters == list(range(start, start + len(counters))), f"counters are not consecutive: {counters}"


@pytest.mark.req("NONCE-004", "CONS-009", "CONS-010", "NONCE-002")
def test_nonce_never_repeats_and_prefix_is_stable(pinged: Peer) -> None:
    for _ in range(3):
        pinged.alive()
    nonces = [(i.prefix, i.counter) for i in pinged.inbound]
    assert len(set(nonces)) == len(nonces), "the target reused a nonce under one key"
    assert len({p for p, _ in nonces}) == 1, "the target changed its nonce prefix inside one session"


# -- port 443 (draft 11.4): the record layer's nonces, judged as the secure channel's client ----------------------


def _secure(peer: Peer) -> tuple[Stream, AESGCM, bytes]:
    """Connect to port 443 and swap raw X25519 keys (test_s10_secure's handshake): (stream, AEAD, server key)."""
    s = peer.stream(SECURE)
    s.connect()
    private = X25519PrivateKey.from_private_bytes(peer.rng.randbytes(32))
    s.send(private.public_key().public_bytes_raw())
    got, end = collect(s, 2.0, want=32)
    if len(got) != 32:
        release(s)
        raise AssertionError(f"port 443 sent {len(got)} bytes (connection {end}) instead of its 32-byte X25519 key")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=b"pilot-secure-v1").derive(
        private.exchange(X25519PublicKey.from_public_bytes(got))
    )
    return s, AESGCM(key), got


def _server_records(buf: bytes) -> list[tuple[bytes, bytes]]:
    """(nonce, sealed) of every whole record in ``buf`` (``len u32 || nonce[12] || ciphertext+tag``)."""
    out = []
    while len(buf) >= 4:
        (n,) = struct.unpack_from(">I", buf)
        if n < 28 or len(buf) < 4 + n:
            break
        out.append((buf[4:16], buf[16 : 4 + n]))
        buf = buf[4 + n :]
    return out


def _exchange(peer: Peer, s: Stream, aead: AESGCM, counters: range) -> list[tuple[bytes, bytes]]:
    for c in counters:
        s.send(_record(aead, c, b"nonce check %d" % c))
    got, end = collect(s, 2.0, want=len(counters) * (4 + 12 + 16 + 13))
    records = _server_records(got)
    if not records and end == "open":
        release(s)
        raise Unsupported("port 443 writes no record back, so its nonces cannot be seen")
    return records


@pytest.mark.req("NONCE-007", "NONCE-008")
def test_port_443_nonce_is_role_prefix_and_counter(peer: Peer) -> None:
    """The server's records carry nonce = 00000001 (its role) || a counter that starts at the profile's first
    value (draft 0; go-interop 1, E-NONCE-1) and grows by one per record."""
    peer.keyed()
    s, aead, _ = _secure(peer)
    start = peer.target.counter_start
    records = _exchange(peer, s, aead, range(start, start + 3))
    release(s)
    assert len(records) >= 3, f"3 records sent, {len(records)} came back"
    prefixes = {n[:4] for n, _ in records}
    assert prefixes == {SERVER}, f"the server's nonce prefixes are {sorted(p.hex() for p in prefixes)}, not 00000001"
    counters = [int.from_bytes(n[4:], "big") for n, _ in records]
    assert counters == list(range(start, start + len(counters))), (
        f"the server's record counters are {counters}; expected {start}, {start + 1}, ... (one per record)"
    )
    for nonce, sealed in records:
        aead.decrypt(nonce, sealed, SERVER)  # InvalidTag fails the test: the nonce is not what sealed it


@pytest.mark.req("NONCE-009")
def test_each_port_443_connection_has_its_own_key_and_counters(peer: Peer) -> None:
    """Two connections: two server keys, each connection's counters start afresh, and a record sealed under the
    first connection's key is refused on the second."""
    peer.keyed()
    a, aead_a, key_a = _secure(peer)
    b, aead_b, key_b = _secure(peer)
    assert key_a != key_b, "the server used the same X25519 key for two port-443 connections"
    start = peer.target.counter_start
    got_a = _exchange(peer, a, aead_a, range(start, start + 2))
    got_b = _exchange(peer, b, aead_b, range(start, start + 1))
    assert got_a and got_b, "a connection got no record back"
    assert int.from_bytes(got_b[0][0][4:], "big") == start, (
        f"the second connection's first server counter is {int.from_bytes(got_b[0][0][4:], 'big')}, not {start}: "
        "counters are not per connection"
    )
    b.send(_record(aead_a, start + 1, b"sealed under the other connection's key"))
    cross, end = collect(b, 1.0)
    release(a)
    release(b)
    assert not cross, f"a record sealed under another connection's key was answered ({len(cross)} bytes, {end})"
