"""Tunnel security vectors: HKDF, PILK/PILA key exchange, PILS sealing and opening (draft 7, 10, 11, 19).

Three files:

* ``tunnel_kdf_test.json`` -- HKDF-SHA256 (empty salt) for both info strings,
  and X25519 + HKDF from private/public key pairs, with low-order peer keys
  that must be refused.
* ``tunnel_kex_test.json`` -- PILK and PILA frames and the tunnel key the
  receiver derives; PILA with a bad signature, a foreign Ed25519 key, a
  signature made for another node ID, and an unknown sender.
* ``tunnel_pils_test.json`` -- PILS frames from a fixed key, prefix, counter
  and sender; opening with a prior window state: tampered tag, wrong AAD,
  replayed and too-old counters, inner-source mismatch.

All inputs are fixed (INSECURE test keys from :mod:`pilot_proto.testing.keys`);
Ed25519 signatures are deterministic (RFC 8032), so files regenerate byte for byte.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pilot_proto.errors import ErrorCode
from pilot_proto.testing.keys import insecure_test_identity, insecure_test_x25519
from pilot_proto.tunnel.aead import PilsOpener, PilsSealer, SessionCipher
from pilot_proto.tunnel.identity import NodeIdentity, verify_auth_kex
from pilot_proto.tunnel.kdf import SECURE_INFO, TUNNEL_INFO, derive_key, derive_tunnel_key, x25519_shared_secret
from pilot_proto.vectors import VectorSuite
from pilot_proto.vectors._format import Doc, ExpectationMismatch, expect, iter_tests, make_doc, run_vector
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import (
    AuthKeyExchangeFrame,
    EncryptedFrame,
    KeyExchangeFrame,
    decode_frame,
    encode_frame,
)
from pilot_proto.wire.header import Packet, PacketProtocol, encode_packet

__all__ = ["SUITES"]

_H = bytes.fromhex

# low-order X25519 u-coordinates (RFC 7748 section 6.1 / Wycheproof); each yields the all-zero secret
_LOW_ORDER = [
    ("zero point", "00" * 32),
    ("u = 1 (order 4)", "01" + "00" * 31),
    ("order-8 point", "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ("order-8 point", "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    ("p - 1", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def _pub(label: str | int) -> bytes:
    return insecure_test_x25519(label).public_key().public_bytes_raw()


def _priv(label: str | int) -> bytes:
    return insecure_test_x25519(label).private_bytes_raw()


def _shared_key(private_hex: str, peer_public: bytes) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    secret = x25519_shared_secret(X25519PrivateKey.from_private_bytes(_H(private_hex)), peer_public)
    return bytes(secret), bytes(derive_tunnel_key(secret))


_BAD_KEY = ErrorCode.BAD_PUBLIC_KEY.value


def _hkdf_reference(ikm: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 from ``cryptography`` (not our kdf module): the key a generated vector must carry."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ikm)


# -- HKDF ---------------------------------------------------------------------------------------------


def _gen_kdf() -> Doc:
    secrets = [
        ("all-zero IKM (never produced by a valid exchange; HKDF still defined)", bytes(32)),
        ("bytes 00..1f", bytes(range(32))),
        ("all 0xff", b"\xff" * 32),
        ("X25519 shared secret of test keys 1 and 2", bytes(x25519_shared_secret(insecure_test_x25519(1), _pub(2)))),
    ]
    hkdf_tests = []
    for comment, ikm in secrets:
        for info in (TUNNEL_INFO, SECURE_INFO):
            if bytes(derive_key(ikm, info)) != _hkdf_reference(ikm, info):
                raise ExpectationMismatch(f"HKDF {comment!r} {info!r}: our key differs from RFC 5869 HKDF-SHA256")
            hkdf_tests.append(
                {
                    "comment": comment,
                    "ikm": ikm.hex(),
                    "info": info.decode(),
                    "key": bytes(derive_key(ikm, info)).hex(),
                    "result": "valid",
                }
            )
    ecdh_tests: list[dict[str, Any]] = []
    for a, b in ((1, 2), (2, 1), ("alice", "bob")):
        got = expect(f"X25519 {a}/{b}", partial(_shared_key, _priv(a).hex(), _pub(b)), None)
        assert got is not None
        secret, key = got
        if key != _hkdf_reference(secret, TUNNEL_INFO):
            raise ExpectationMismatch(f"X25519 {a}/{b}: tunnel key is not HKDF(shared secret)")
        ecdh_tests.append(
            {
                "comment": f"test key {a} with test key {b}'s public key",
                "privateKey": _priv(a).hex(),
                "peerPublicKey": _pub(b).hex(),
                "shared": secret.hex(),
                "key": key.hex(),
                "result": "valid",
            }
        )
    for comment, point in _LOW_ORDER:
        expect(f"low-order {comment}", partial(_shared_key, _priv(1).hex(), _H(point)), _BAD_KEY)
        ecdh_tests.append(
            {
                "comment": f"low-order peer key: {comment}",
                "flags": ["LowOrderPublic"],
                "privateKey": _priv(1).hex(),
                "peerPublicKey": point,
                "error": _BAD_KEY,
                "result": "invalid",
            }
        )
    return make_doc(
        "HKDF-SHA256",
        "tunnel_kdf_test_schema.json",
        [
            {"type": "HkdfTest", "salt": "", "keySize": 256, "tests": hkdf_tests},
            {"type": "X25519HkdfTest", "info": TUNNEL_INFO.decode(), "tests": ecdh_tests},
        ],
        header=[
            "draft 10.3: key = HKDF-SHA256(salt empty, IKM = X25519 shared secret, info), first 32 bytes.",
            "info is 'pilot-tunnel-v1' for tunnel sessions and 'pilot-secure-v1' for port 443.",
        ],
        notes={"LowOrderPublic": {"bugType": "EDGE_CASE", "description": "shared secret is all zeros; refuse"}},
    )


def _verify_kdf(doc: Doc) -> list[str]:
    out = []
    for group, t in iter_tests(doc):
        tc = t["tcId"]
        if group["type"] == "HkdfTest":
            got = bytes(derive_key(_H(t["ikm"]), t["info"].encode())).hex()
            if got != t["key"]:
                out.append(f"tcId {tc}: key {got} != {t['key']}")
        else:
            keys, problems = run_vector(t, "x25519", partial(_shared_key, t["privateKey"], _H(t["peerPublicKey"])))
            out += problems
            if keys is not None and (keys[0].hex(), keys[1].hex()) != (t["shared"], t["key"]):
                out.append(f"tcId {tc}: shared/key differ")
    return out


# -- key exchange -------------------------------------------------------------------------------------


def _gen_kex() -> Doc:
    receiver = _priv("receiver")
    pilk_tests = []
    for sender, label in ((0x00000005, 5), (0x0001F291, "node-f291"), (0xFFFFFFFE, "max")):
        pub = _pub(label)
        got = expect(f"PILK from {sender}", partial(_shared_key, receiver.hex(), pub), None)
        assert got is not None
        key = got[1]
        pilk_tests.append(
            {
                "comment": f"PILK from node {sender}",
                "sender": sender,
                "senderPrivateKey": _priv(label).hex(),
                "frame": encode_frame(KeyExchangeFrame(sender, pub)).hex(),
                "receiverPrivateKey": receiver.hex(),
                "tunnelKey": key.hex(),
                "result": "valid",
            }
        )
    expect("PILK with the all-zero key", partial(_shared_key, receiver.hex(), bytes(32)), _BAD_KEY)
    pilk_tests.append(
        {
            "comment": "PILK carrying the all-zero X25519 key",
            "flags": ["LowOrderPublic"],
            "sender": 7,
            "frame": encode_frame(KeyExchangeFrame(7, bytes(32))).hex(),
            "receiverPrivateKey": receiver.hex(),
            "error": _BAD_KEY,
            "result": "invalid",
        }
    )

    node = 0x00000002
    ident = NodeIdentity(node, insecure_test_identity(node))
    other = insecure_test_identity("mallory")
    xpub = _pub("pila-2")
    good = ident.auth_kex_frame(xpub)
    _, key = _shared_key(receiver.hex(), xpub)
    sig = bytearray(good.signature)
    sig[10] ^= 0x01
    foreign = NodeIdentity(node, other).auth_kex_frame(xpub)
    wrong_node = NodeIdentity(node + 1, ident.identity).auth_kex_frame(xpub)._replace(sender=node)
    registered = ident.identity.public_bytes
    E = ErrorCode
    # (comment, flags, frame, registry key, the error the draft requires or None for accepted)
    cases: list[tuple[str, list[str], AuthKeyExchangeFrame, bytes | None, ErrorCode | None]] = [
        ("valid PILA, key known from the registry", [], good, registered, None),
        ("one signature bit flipped", ["BadSignature"], good._replace(signature=bytes(sig)), registered,
         E.BAD_SIGNATURE),
        ("Ed25519 key in the frame is not the node's registered key (self-consistent signature)",
         ["WrongKey"], foreign, registered, E.IDENTITY_MISMATCH),
        ("signature made for node 3 placed in a frame from node 2", ["WrongNode"], wrong_node, registered,
         E.BAD_SIGNATURE),
        ("registry knows no key for the sender", ["UnknownIdentity"], good, None, E.UNKNOWN_IDENTITY),
    ]  # fmt: skip
    pila_tests = []
    for comment, flags, frame, known, code in cases:
        err = code.value if code is not None else None
        expect(comment, partial(verify_auth_kex, frame, known), err)
        test: dict[str, Any] = {
            "comment": comment,
            "flags": flags,
            "frame": encode_frame(frame).hex(),
            "knownPublicKey": known.hex() if known is not None else None,
            "receiverPrivateKey": receiver.hex(),
        }
        if err is None:
            test["tunnelKey"] = key.hex()
            test["result"] = "valid"
        else:
            test["error"] = err
            test["result"] = "invalid"
        pila_tests.append(test)
    return make_doc(
        "PILOT-KEX",
        "tunnel_kex_test_schema.json",
        [
            {"type": "PilkTest", "tests": pilk_tests},
            {"type": "PilaTest", "signedMessage": "'auth' || sender u32 BE || X25519 public key", "tests": pila_tests},
        ],
        header=[
            "draft 7.3/7.4: PILK = magic, sender, X25519 key; PILA adds the Ed25519 key and a signature.",
            "A PILA is checked against knownPublicKey (the registry's key for the sender), never the frame's key.",
            "tunnelKey is what the receiver derives with receiverPrivateKey (HKDF info pilot-tunnel-v1).",
        ],
        notes={
            "LowOrderPublic": {"bugType": "EDGE_CASE", "description": "all-zero shared secret; refuse"},
            "BadSignature": {"bugType": "AUTH_BYPASS", "description": "signature does not verify"},
            "WrongKey": {"bugType": "AUTH_BYPASS", "description": "frame key differs from the registered key"},
            "WrongNode": {"bugType": "AUTH_BYPASS", "description": "signature bound to another node ID"},
            "UnknownIdentity": {"bugType": "AUTH_BYPASS", "description": "no key to verify against"},
        },
    )


def _verify_kex(doc: Doc) -> list[str]:
    out = []
    for group, t in iter_tests(doc):
        tc = t["tcId"]
        frame = decode_frame(_H(t["frame"]))
        if group["type"] == "PilaTest":
            assert isinstance(frame, AuthKeyExchangeFrame)
            known = t["knownPublicKey"]
            _, problems = run_vector(
                t, "pila", partial(verify_auth_kex, frame, _H(known) if known is not None else None)
            )
            out += problems
            if problems or t["result"] == "invalid":
                continue
        else:
            assert isinstance(frame, KeyExchangeFrame)
            if frame.sender != t["sender"]:
                out.append(f"tcId {tc}: sender {frame.sender} != {t['sender']}")
            if "senderPrivateKey" in t and _pub_of(t["senderPrivateKey"]) != frame.x25519_public:
                out.append(f"tcId {tc}: frame key is not the sender's public key")
        keys, problems = run_vector(t, "kex", partial(_shared_key, t["receiverPrivateKey"], frame.x25519_public))
        out += problems
        if keys is not None and keys[1].hex() != t["tunnelKey"]:
            out.append(f"tcId {tc}: tunnel key differs")
    return out


def _pub_of(private_hex: str) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return X25519PrivateKey.from_private_bytes(_H(private_hex)).public_key().public_bytes_raw()


# -- PILS ---------------------------------------------------------------------------------------------

_PILS_KEY = derive_tunnel_key(x25519_shared_secret(insecure_test_x25519("pils-a"), _pub("pils-b")))


def _packet(sender: int, payload: bytes, seq: int = 0) -> bytes:
    return encode_packet(
        Packet(0x2, PacketProtocol.STREAM, Addr(0, sender), Addr(0, 9), 49152, 7, seq=seq, ack=1, window=512,
               payload=payload)
    )  # fmt: skip


def _seal(sender: int, prefix: bytes, counter: int, packet: bytes, aad_sender: int | None = None) -> bytes:
    sealer = PilsSealer(SessionCipher(bytearray(_PILS_KEY)), aad_sender if aad_sender is not None else sender,
                        prefix, counter_start=counter)  # fmt: skip
    frame = sealer.seal(packet)
    return frame[:4] + sender.to_bytes(4, "big") + frame[8:]


def _gen_pils() -> Doc:
    key = bytes(_PILS_KEY)
    seal_tests = []
    for comment, sender, prefix_hex, counter, payload in (
        ("draft first frame: counter 0", 1, "a1b2c3d4", 0, b""),
        ("go-interop first frame: counter 1", 1, "a1b2c3d4", 1, b""),
        ("counter byte order is big-endian", 0x0001F291, "00000000", 0x0102030405060708, b"hello"),
        ("last counter before the 2^64-1 limit", 42, "ffffffff", (1 << 64) - 2, b"x" * 100),
    ):
        pkt = _packet(sender, payload)
        seal_tests.append(
            {
                "comment": comment,
                "sender": sender,
                "prefix": prefix_hex,
                "counter": counter,
                "packet": pkt.hex(),
                "frame": _seal(sender, _H(prefix_hex), counter, pkt).hex(),
                "result": "valid",
            }
        )
    prefix = _H("0badf00d")
    sender = 5
    base = _seal(sender, prefix, 300, _packet(sender, b"data", 300))
    tampered = bytearray(base)
    tampered[-1] ^= 0x80
    E = ErrorCode
    # (comment, flags, frame, counters accepted before, the error the draft requires or None)
    open_cases: list[tuple[str, list[str], bytes, list[int], ErrorCode | None]] = [
        ("fresh window accepts counter 0", [], _seal(sender, prefix, 0, _packet(sender, b"a")), [], None),
        ("in-window, out of order, not yet seen", [], _seal(sender, prefix, 250, _packet(sender, b"b")), [200, 300],
         None),
        ("ahead of the window slides it", [], _seal(sender, prefix, 1000, _packet(sender, b"c")), [300], None),
        ("tag tampered", ["Tampered"], bytes(tampered), [], E.AUTH_FAILED),
        ("sealed with AAD = node 6, frame says node 5", ["WrongAad"],
         _seal(sender, prefix, 3, _packet(sender, b"d"), aad_sender=6), [], E.AUTH_FAILED),
        ("counter 300 already accepted", ["Replay"], base, [299, 300], E.REPLAY),
        ("counter 0 already accepted (no 'zero means empty' shortcut)", ["Replay"],
         _seal(sender, prefix, 0, _packet(sender, b"a")), [0], E.REPLAY),
        ("counter 44 is 256 behind the highest (300)", ["TooOld"],
         _seal(sender, prefix, 44, _packet(sender, b"e")), [300], E.TOO_OLD),
        ("counter 45 is the oldest still inside a 256 window at 300", [],
         _seal(sender, prefix, 45, _packet(sender, b"e")), [300], None),
        ("inner packet claims source node 6 inside node 5's frame", ["SenderMismatch"],
         _seal(sender, prefix, 301, _packet(6, b"f"), aad_sender=sender), [], E.SENDER_MISMATCH),
    ]  # fmt: skip
    open_tests = []
    for comment, flags, frame, seen, code in open_cases:
        test: dict[str, Any] = {"comment": comment, "flags": flags, "frame": frame.hex(), "acceptedBefore": seen}
        packet = expect(comment, partial(_open, key, frame, seen), code.value if code is not None else None)
        if packet is None:
            assert code is not None
            test["error"] = code.value
            test["result"] = "invalid"
        else:
            test["packet"] = packet.hex()
            test["result"] = "valid"
        open_tests.append(test)
    return make_doc(
        "PILS-AES-256-GCM",
        "tunnel_pils_test_schema.json",
        [
            {"type": "PilsSealTest", "key": key.hex(), "tests": seal_tests},
            {"type": "PilsOpenTest", "key": key.hex(), "windowSize": 256, "tests": open_tests},
        ],
        header=[
            "frame = 'PILS' || sender u32 BE || prefix(4) || counter u64 BE || ciphertext+tag,",
            "sealed with AES-256-GCM(key, nonce = prefix || counter, plaintext = packet, AAD = sender u32 BE).",
            "acceptedBefore lists counters (same prefix) the receiver accepted earlier; windowSize is 256 (19.9).",
            "The inner packet's source node must equal the frame's sender ID.",
        ],
        notes={
            "Tampered": {"bugType": "MODIFIED_CIPHERTEXT", "description": "tag altered"},
            "WrongAad": {"bugType": "AUTH_BYPASS", "description": "AAD is not the frame's sender ID"},
            "Replay": {"bugType": "REPLAY", "description": "counter already accepted"},
            "TooOld": {"bugType": "REPLAY", "description": "counter behind the window"},
            "SenderMismatch": {"bugType": "AUTH_BYPASS", "description": "inner source differs from sender"},
        },
    )


def _open(key: bytes, frame_bytes: bytes, seen: list[int]) -> bytes:
    frame = decode_frame(frame_bytes)
    assert isinstance(frame, EncryptedFrame)
    opener = PilsOpener(SessionCipher(bytearray(key)), frame.sender)
    window = opener._new_window(frame.nonce[:4])
    for c in seen:
        window.commit(c)
    return opener.open(frame.nonce, frame.ciphertext)


def _verify_pils(doc: Doc) -> list[str]:
    out = []
    for group, t in iter_tests(doc):
        tc = t["tcId"]
        key = _H(group["key"])
        if group["type"] == "PilsSealTest":
            sealer = PilsSealer(SessionCipher(bytearray(key)), t["sender"], _H(t["prefix"]), counter_start=t["counter"])
            if sealer.seal(_H(t["packet"])).hex() != t["frame"]:
                out.append(f"tcId {tc}: sealed frame differs")
            continue
        packet, problems = run_vector(t, "open", partial(_open, key, _H(t["frame"]), t["acceptedBefore"]))
        out += problems
        if packet is not None and packet.hex() != t["packet"]:
            out.append(f"tcId {tc}: decrypted packet differs")
    return out


SUITES = [
    VectorSuite("tunnel_kdf_test.json", _gen_kdf, _verify_kdf),
    VectorSuite("tunnel_kex_test.json", _gen_kex, _verify_kex),
    VectorSuite("tunnel_pils_test.json", _gen_pils, _verify_pils),
]
