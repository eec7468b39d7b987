"""HKDF, X25519, identities and PILA verification (draft 7.3, 7.4, 10.1, 10.3)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from pilot_proto.errors import DecodeError, ErrorCode, RemoteProtocolError
from pilot_proto.testing.keys import insecure_test_identity, insecure_test_x25519
from pilot_proto.tunnel.aead import SessionCipher
from pilot_proto.tunnel.identity import Identity, NodeIdentity, verify_auth_kex
from pilot_proto.tunnel.kdf import (
    SECURE_INFO,
    TUNNEL_INFO,
    derive_secure_key,
    derive_tunnel_key,
    x25519_shared_secret,
)
from pilot_proto.wire.frames import auth_kex_signed_message, decode_frame, encode_frame


def _rfc5869_t1(ikm: bytes, info: bytes) -> bytes:
    prk = hmac.new(b"", ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


@pytest.mark.req("SEC-008")
def test_tunnel_key_is_hkdf_sha256_empty_salt_first_block() -> None:
    ikm = bytes(range(32))
    assert TUNNEL_INFO == b"pilot-tunnel-v1" and len(TUNNEL_INFO) == 15
    assert bytes(derive_tunnel_key(ikm)) == _rfc5869_t1(ikm, b"pilot-tunnel-v1")


@pytest.mark.req("SEC-009")
def test_secure_key_uses_its_own_info_string() -> None:
    ikm = b"\x42" * 32
    assert SECURE_INFO == b"pilot-secure-v1"
    assert bytes(derive_secure_key(ikm)) == _rfc5869_t1(ikm, b"pilot-secure-v1")
    assert derive_secure_key(ikm) != derive_tunnel_key(ikm)


@pytest.mark.req("SEC-004", "TUN-015")
def test_both_sides_derive_the_same_key() -> None:
    a, b = insecure_test_x25519("a"), insecure_test_x25519("b")
    ka = derive_tunnel_key(x25519_shared_secret(a, b.public_key().public_bytes_raw()))
    kb = derive_tunnel_key(x25519_shared_secret(b, a.public_key().public_bytes_raw()))
    assert ka == kb and len(ka) == 32


@pytest.mark.req("SEC-028")
@pytest.mark.parametrize(
    "point", ["00" * 32, "01" + "00" * 31, "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"]
)
def test_low_order_public_key_is_refused(point: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        x25519_shared_secret(insecure_test_x25519(1), bytes.fromhex(point))
    assert info.value.code is ErrorCode.BAD_PUBLIC_KEY
    assert info.value.requirement == "SEC-028"


@pytest.mark.req("SEC-010")
def test_key_material_buffers_are_zeroed() -> None:
    secret = x25519_shared_secret(insecure_test_x25519(1), insecure_test_x25519(2).public_key().public_bytes_raw())
    assert isinstance(secret, bytearray) and any(secret)
    key = derive_tunnel_key(secret)
    assert isinstance(key, bytearray) and any(key)
    cipher = SessionCipher(key)
    assert key == bytearray(32)  # the derived key buffer is wiped once the AEAD exists
    assert len(cipher.fingerprint) == 8


@pytest.mark.req("SEC-001", "SEC-002")
def test_identity_round_trips_through_go_file_format() -> None:
    ident = insecure_test_identity(7)
    data = ident.to_json()
    doc = json.loads(data)
    assert set(doc) == {"private_key", "public_key"}
    again = Identity.from_json(data)
    assert again.public_bytes == ident.public_bytes and again.seed() == ident.seed()
    assert again.sign(b"m") == ident.sign(b"m")  # Ed25519 is deterministic


@pytest.mark.req("SEC-002")
def test_identity_file_with_foreign_public_key_is_refused() -> None:
    doc = json.loads(insecure_test_identity(7).to_json())
    doc["public_key"] = json.loads(insecure_test_identity(8).to_json())["public_key"]
    with pytest.raises(DecodeError) as info:
        Identity.from_json(json.dumps(doc))
    assert info.value.code is ErrorCode.IDENTITY_MISMATCH
    with pytest.raises(DecodeError):
        Identity.from_json(b"{not json")


@pytest.mark.req("TUN-018", "TUN-019")
def test_pila_signature_covers_auth_node_and_key() -> None:
    node = NodeIdentity(0x0102, insecure_test_identity(0x0102))
    xpub = insecure_test_x25519("x").public_key().public_bytes_raw()
    frame = node.auth_kex_frame(xpub)
    assert auth_kex_signed_message(0x0102, xpub) == b"auth" + bytes.fromhex("00000102") + xpub
    decoded = decode_frame(encode_frame(frame))
    verify_auth_kex(decoded, node.identity.public_bytes)  # type: ignore[arg-type]


@pytest.mark.req("TUN-019", "TUN-020")
def test_pila_failures_name_the_reason() -> None:
    ident = insecure_test_identity(2)
    node = NodeIdentity(2, ident)
    xpub = insecure_test_x25519("x").public_key().public_bytes_raw()
    good = node.auth_kex_frame(xpub)
    cases = [
        (good, None, ErrorCode.UNKNOWN_IDENTITY),
        (
            NodeIdentity(2, insecure_test_identity("m")).auth_kex_frame(xpub),
            ident.public_bytes,
            ErrorCode.IDENTITY_MISMATCH,
        ),
        (good._replace(sender=3), ident.public_bytes, ErrorCode.BAD_SIGNATURE),
        (good._replace(x25519_public=bytes(31) + b"\x09"), ident.public_bytes, ErrorCode.BAD_SIGNATURE),
        (good._replace(signature=bytes(64)), ident.public_bytes, ErrorCode.BAD_SIGNATURE),
    ]
    for frame, known, code in cases:
        with pytest.raises(RemoteProtocolError) as info:
            verify_auth_kex(frame, known)
        assert info.value.code is code
