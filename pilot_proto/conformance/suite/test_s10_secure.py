"""Draft 10.5, 11.4: the port-443 secure channel, judged as its client.

Over a stream to port 443 the harness sends its raw 32-byte X25519 key, reads the server's raw 32 bytes, derives
HKDF-SHA256(empty salt, info 'pilot-secure-v1') and exchanges records ``len u32 BE || nonce[12] || ciphertext ||
tag[16]`` (``len`` counts nonce, ciphertext and tag) whose nonce is the sender's role prefix (client 00000002,
server 00000001) || a counter and whose AAD is that prefix.  The crypto is built here from ``cryptography``, not
from :mod:`pilot_proto.tunnel.secure_channel`.  A target with nothing on port 443 (Go's daemon) is unsupported; a
secure service that writes nothing back lets only the key agreement be judged."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pilot_proto.conformance.harness import Peer, Stream
from pilot_proto.conformance.suite._services import collect, release
from pilot_proto.conformance.verdicts import Unsupported

SECURE = 443
CLIENT, SERVER = (2).to_bytes(4, "big"), (1).to_bytes(4, "big")


def _handshake(peer: Peer) -> tuple[Stream, AESGCM, int]:
    """Connect, swap raw X25519 keys, derive the channel key: (stream, AEAD, first counter)."""
    peer.keyed()
    s = peer.stream(SECURE)
    s.connect()
    private = X25519PrivateKey.from_private_bytes(peer.rng.randbytes(32))
    s.send(private.public_key().public_bytes_raw())
    got, end = collect(s, 2.0, want=32)
    if len(got) < 32:
        release(s)
        raise AssertionError(f"the server sent {len(got)} bytes (connection {end}) instead of its 32-byte X25519 key")
    assert len(got) == 32, f"the server's key agreement is {len(got)} bytes before any record (raw 32 expected)"
    assert got != bytes(32), "the server sent an all-zero X25519 key"
    shared = private.exchange(X25519PublicKey.from_public_bytes(got))
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=b"pilot-secure-v1").derive(shared)
    return s, AESGCM(key), peer.target.counter_start


def _record(aead: AESGCM, counter: int, plain: bytes, *, prefix: bytes = CLIENT, aad: bytes | None = None) -> bytes:
    nonce = prefix + counter.to_bytes(8, "big")
    sealed = aead.encrypt(nonce, plain, prefix if aad is None else aad)
    return struct.pack(">I", len(nonce) + len(sealed)) + nonce + sealed


@pytest.mark.req("SEC-014", "SEC-009", "SVC-054", "SEC-012", "SVC-051", "SEC-013")
def test_secure_channel_key_agreement_and_records(peer: Peer) -> None:
    """Raw key swap, then a record from us is answered by records that open under the same key with the server's
    prefix as AAD, each length counting nonce + ciphertext + tag."""
    s, aead, counter = _handshake(peer)
    plain = b"pilot conformance secure " + peer.rng.randbytes(16)
    s.send(_record(aead, counter, plain))
    got, end = collect(s, 2.0, want=4 + 12 + len(plain) + 16)
    release(s)
    if not got and end == "open":
        raise Unsupported("port 443 completed the key agreement but wrote no record back, so records cannot be judged")
    assert len(got) >= 4, f"{len(got)} bytes after the key agreement (connection {end})"
    (n,) = struct.unpack_from(">I", got)
    assert 28 <= n <= 16 * 1024 * 1024, f"record length {n} is outside nonce+tag (28) .. 16 MiB"
    assert len(got) >= 4 + n, f"record announces {n} bytes, {len(got) - 4} came (connection {end})"
    nonce, sealed = got[4:16], got[16 : 4 + n]
    assert nonce[:4] == SERVER, f"the server's nonce prefix is {nonce[:4].hex()}, its role prefix is 00000001"
    assert int.from_bytes(nonce[4:], "big") == counter, (
        f"the server's first record counter is {int.from_bytes(nonce[4:], 'big')}; this profile starts at {counter}"
    )
    try:
        reply = aead.decrypt(nonce, sealed, SERVER)
    except Exception:  # InvalidTag: wrong key, wrong AAD or a broken record
        pytest.fail("the server's record does not open under HKDF('pilot-secure-v1') with AAD = its prefix 00000001")
    assert reply, "the server's record carries no data"


@pytest.mark.req("SEC-013")
def test_secure_record_with_the_wrong_aad_is_refused(peer: Peer) -> None:
    """After a good record is answered, one sealed with an empty AAD (not our prefix) must not be: nothing comes
    back for it."""
    s, aead, counter = _handshake(peer)
    s.send(_record(aead, counter, b"sealed with the right AAD"))
    first, end = collect(s, 2.0, want=4 + 12 + 16)
    if not first:
        release(s)
        raise Unsupported(f"port 443 answers no record (connection {end}), so a refused one cannot be told apart")
    s.send(_record(aead, counter + 1, b"sealed with the wrong AAD", aad=b""))
    got, end = collect(s, 1.0)
    release(s)
    assert not got, f"the server answered a record sealed with the wrong AAD ({len(got)} bytes, connection {end})"


@pytest.mark.req("SVC-052")
@pytest.mark.parametrize("length", [(16 << 20) + 1, 20], ids=["over-16-MiB", "below-nonce-and-tag"])
def test_secure_record_length_out_of_bounds_is_refused(peer: Peer, length: int) -> None:
    """A record length over 16 MiB ends the connection before buffering; one below nonce + tag (28; Go's reader: 12)
    can never open, so the connection ends too."""
    s, _, _ = _handshake(peer)
    s.send(struct.pack(">I", length) + peer.rng.randbytes(min(length, 64)))
    got, end = collect(s, 2.0)
    release(s)
    assert end != "open", f"a record of length {length} did not end the connection within 2 s (got {len(got)} bytes)"
