"""The shipped crypto vectors, checked with plain ``hmac``/``hashlib``/``struct`` and ``cryptography`` (issue 13).

Nothing here imports pilot_proto: HKDF is written out from RFC 5869 with ``hmac``, AES-256-GCM is
``cryptography``'s AESGCM, X25519/Ed25519 are ``cryptography``'s, frames are cut with ``struct``.  A bug
shared by our codec and our vectors cannot pass these tests.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from independent_vectors import H, cases, load

pytestmark = pytest.mark.req("SEC-006", "TUN-019")


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32, salt: bytes = b"") -> bytes:
    """RFC 5869 by hand: PRK = HMAC(salt or 0^32, IKM); T(i) = HMAC(PRK, T(i-1) || info || i)."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
    return out[:length]


def test_hkdf_by_hand_matches_rfc5869_case_3() -> None:
    """Sanity of the oracle itself: RFC 5869 test case 3 (SHA-256, empty salt and info)."""
    okm = hkdf_sha256(H("0b" * 22), b"", 42)
    assert okm.hex() == ("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")


def x25519(private: bytes, public: bytes) -> bytes | None:
    """The raw shared secret, or None when it is all zeros (cryptography refuses those, RFC 7748 6.1)."""
    try:
        secret = X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return None
    return None if secret == bytes(32) else secret


def test_tunnel_kdf_file() -> None:
    n = 0
    for group, t in cases("tunnel_kdf_test.json"):
        n += 1
        if group["type"] == "HkdfTest":
            assert group["salt"] == ""
            assert hkdf_sha256(H(t["ikm"]), t["info"].encode()).hex() == t["key"], t["tcId"]
            assert t["info"] in ("pilot-tunnel-v1", "pilot-secure-v1")
            continue
        secret = x25519(H(t["privateKey"]), H(t["peerPublicKey"]))
        if t["result"] == "invalid":
            assert secret is None, f"tcId {t['tcId']}: low-order key gives a usable secret"
            assert t["error"] == "bad_public_key"
        else:
            assert secret is not None and secret.hex() == t["shared"], t["tcId"]
            assert hkdf_sha256(secret, group["info"].encode()).hex() == t["key"], t["tcId"]
    assert n == load("tunnel_kdf_test.json")["numberOfTests"]


def _tunnel_key(receiver_private: str, peer_public: bytes) -> bytes | None:
    secret = x25519(H(receiver_private), peer_public)
    return None if secret is None else hkdf_sha256(secret, b"pilot-tunnel-v1")


def test_tunnel_kex_pilk() -> None:
    for _, t in cases("tunnel_kex_test.json", "PilkTest"):
        frame = H(t["frame"])
        assert len(frame) == 40 and frame[:4] == b"PILK", t["tcId"]
        (sender,) = struct.unpack_from(">I", frame, 4)
        assert sender == t["sender"]
        pub = frame[8:40]
        key = _tunnel_key(t["receiverPrivateKey"], pub)
        if t["result"] == "invalid":
            assert key is None and t["error"] == "bad_public_key"
            continue
        sender_pub = X25519PrivateKey.from_private_bytes(H(t["senderPrivateKey"])).public_key().public_bytes_raw()
        assert sender_pub == pub, t["tcId"]
        assert key is not None and key.hex() == t["tunnelKey"], t["tcId"]


def _pila_verdict(frame: bytes, known: bytes | None) -> str | None:
    """The draft 7.4 checks in their order; the error code, or None when the PILA is acceptable."""
    sender, x_pub, ed_pub, sig = struct.unpack_from(">I32s32s64s", frame, 4)
    if known is None:
        return "unknown_identity"
    if ed_pub != known:
        return "identity_mismatch"
    try:
        Ed25519PublicKey.from_public_bytes(known).verify(sig, b"auth" + struct.pack(">I", sender) + x_pub)
    except InvalidSignature:
        return "bad_signature"
    return None


def test_tunnel_kex_pila() -> None:
    verdicts = []
    for _, t in cases("tunnel_kex_test.json", "PilaTest"):
        frame = H(t["frame"])
        assert len(frame) == 136 and frame[:4] == b"PILA", t["tcId"]
        known = H(t["knownPublicKey"]) if t["knownPublicKey"] is not None else None
        verdict = _pila_verdict(frame, known)
        verdicts.append(verdict)
        assert verdict == t.get("error"), f"tcId {t['tcId']}: independent verdict {verdict}, file says {t['result']}"
        assert (verdict is None) == (t["result"] == "valid")
        if verdict is None:
            assert _tunnel_key(t["receiverPrivateKey"], frame[8:40]) == H(t["tunnelKey"])
    assert None in verdicts and "bad_signature" in verdicts  # the file exercises both outcomes


def _window_verdict(counter: int, accepted: list[int], size: int) -> str | None:
    """Sliding replay window by hand (draft 19.9): behind the window is too old, a seen counter a replay."""
    if not accepted or counter > max(accepted):
        return None
    if max(accepted) - counter >= size:
        return "too_old"
    return "replay" if counter in accepted else None


def test_tunnel_pils_seal() -> None:
    for group, t in cases("tunnel_pils_test.json", "PilsSealTest"):
        key, frame = H(group["key"]), H(t["frame"])
        magic, sender, prefix, counter = struct.unpack_from(">4sI4sQ", frame)
        assert (magic, sender, prefix.hex(), counter) == (b"PILS", t["sender"], t["prefix"], t["counter"])
        nonce = frame[8:20]
        sealed = AESGCM(key).encrypt(nonce, H(t["packet"]), struct.pack(">I", t["sender"]))
        assert frame[20:] == sealed, t["tcId"]


def test_tunnel_pils_open() -> None:
    outcomes = set()
    for group, t in cases("tunnel_pils_test.json", "PilsOpenTest"):
        key, frame = H(group["key"]), H(t["frame"])
        _, sender, _prefix, counter = struct.unpack_from(">4sI4sQ", frame)
        verdict = _window_verdict(counter, t["acceptedBefore"], group["windowSize"])
        plaintext = None
        if verdict is None:
            try:
                plaintext = AESGCM(key).decrypt(frame[8:20], frame[20:], struct.pack(">I", sender))
            except InvalidTag:
                verdict = "auth_failed"
        if plaintext is not None:
            (inner_src,) = struct.unpack_from(">I", plaintext, 6)  # source node, header offset 6
            if inner_src != sender:
                verdict = "sender_mismatch"
        outcomes.add(verdict)
        assert verdict == t.get("error"), f"tcId {t['tcId']}: independent verdict {verdict}, file {t.get('error')}"
        if verdict is None:
            assert plaintext == H(t["packet"])
    assert outcomes == {None, "auth_failed", "replay", "too_old", "sender_mismatch"}


def test_golden_crypto_kinds() -> None:
    doc = load("golden_test.json")
    group = doc["testGroups"][0]
    by_kind = {t["kind"]: t for t in group["tests"]}
    # PILA: signed by the Ed25519 key of the group's seed
    pila = by_kind["l5-key-exchange-auth"]
    raw = H(pila["encoded"])
    seed_pub = Ed25519PrivateKey.from_private_bytes(H(group["ed25519Seed"])).public_key().public_bytes_raw()
    assert _pila_verdict(raw, seed_pub) is None
    assert raw[40:72] == seed_pub
    # PILK: magic, sender, key
    pilk = H(by_kind["l5-key-exchange-unauth"]["encoded"])
    assert pilk[:4] == b"PILK" and pilk[8:] == raw[8:40] and len(pilk) == 40
    # PILS: AES-GCM of the stated plaintext under the group key
    pils = by_kind["l6-encrypted-frame"]
    frame = H(pils["encoded"])
    (sender,) = struct.unpack_from(">I", frame, 4)
    plain = AESGCM(H(group["keyHex"])).decrypt(frame[8:20], frame[20:], struct.pack(">I", sender))
    assert plain == H(pils["fields"]["plaintext"])
