"""Tunnel frame vectors (draft 7): ``tunnel_frames_test.json``.

One group per profile setting (``any``, ``draft``, ``go-interop``); each test has the ``frame`` in hex,
its ``magic`` and, when valid, the decoded fields (``sender``, ``nonce``, ``ciphertext``,
``x25519Public``, ``ed25519Public``, ``signature``, ``trailer``, ``packet``; ``sender`` is ``null``
for Go's 4-byte PILP).  Only the framing is checked here: the PILS ciphertext, PILA signature and PILT
packet are opaque bytes (their own vectors are ``tunnel_*_test.json`` and ``header_test.json``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pilot_proto.errors import ErrorCode
from pilot_proto.profile import Profile
from pilot_proto.vectors import VectorSuite
from pilot_proto.vectors._format import (
    Doc,
    ExpectationMismatch,
    expect,
    group_profiles,
    iter_tests,
    make_doc,
    run_vector,
)
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import (
    AuthKeyExchangeFrame,
    EncryptedFrame,
    Frame,
    KeyExchangeFrame,
    PlaintextFrame,
    PunchFrame,
    decode_frame,
    encode_frame,
)
from pilot_proto.wire.header import Flags, Packet, PacketProtocol, encode_packet

__all__ = ["SUITES", "frame_from_json", "frame_to_json"]

FILENAME = "tunnel_frames_test.json"

_X = bytes(range(0x20, 0x40))
_ED = bytes(range(0x40, 0x60))
_SIG = bytes(range(0x60, 0xA0))
_NONCE = bytes.fromhex("0a0b0c0d") + (5).to_bytes(8, "big")
_PACKET = encode_packet(Packet(Flags.SYN, PacketProtocol.STREAM, Addr(0, 1), Addr(0, 2), 49152, 1000, window=512))

_JSON_NAMES = {"x25519_public": "x25519Public", "ed25519_public": "ed25519Public"}


def frame_to_json(frame: Frame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in frame._asdict().items():
        out[_JSON_NAMES.get(name, name)] = value.hex() if isinstance(value, bytes) else value
    return out


def frame_from_json(magic: str, fields: dict[str, Any]) -> Frame:
    def b(name: str) -> bytes:
        return bytes.fromhex(fields[_JSON_NAMES.get(name, name)])

    if magic == "PILT":
        return PlaintextFrame(b("packet"))
    if magic == "PILS":
        return EncryptedFrame(fields["sender"], b("nonce"), b("ciphertext"))
    if magic == "PILK":
        return KeyExchangeFrame(fields["sender"], b("x25519_public"))
    if magic == "PILA":
        return AuthKeyExchangeFrame(fields["sender"], b("x25519_public"), b("ed25519_public"), b("signature"),
                                    b("trailer"))  # fmt: skip
    if magic == "PILP":
        return PunchFrame(fields["sender"])
    raise ValueError(f"unknown magic {magic!r}")


# Stated verdicts: a case flagged with one of these must be refused with that code (under ``draft`` for the
# profile-split cases, which ``go-interop`` accepts: errata E-TUN-2, E-PILA-1, E-PILP-1); any other case must decode.
_CODE_OF_FLAG = {
    "Truncated": ErrorCode.TRUNCATED,
    "BadMagic": ErrorCode.BAD_MAGIC,
    "TrailingData": ErrorCode.TRAILING_DATA,
    "PilaTrailer": ErrorCode.TRAILING_DATA,
    "GoPunch": ErrorCode.TRUNCATED,
}
_GO_ACCEPTS = {"TrailingData", "PilaTrailer", "GoPunch"}


def _test(comment: str, raw: bytes, profile: Profile, flags: list[str] | None = None) -> dict[str, Any]:
    flags = flags or []
    codes = {_CODE_OF_FLAG[f] for f in flags if f in _CODE_OF_FLAG}
    if profile is Profile.GO_INTEROP and set(flags) & _GO_ACCEPTS:
        codes = set()
    error = codes.pop().value if codes else None
    test: dict[str, Any] = {"comment": comment, "flags": flags, "magic": raw[:4].decode("latin-1"),
                            "frame": raw.hex()}  # fmt: skip
    frame = expect(f"{comment} ({profile.value})", partial(decode_frame, raw, profile), error)
    if frame is None:
        test.update(error=error, result="invalid")
        return test
    if encode_frame(frame) != raw[: len(encode_frame(frame))]:
        raise ExpectationMismatch(f"vector {comment!r}: the decoded frame re-encodes to other bytes")
    test.update(frame_to_json(frame))
    test["result"] = "valid"
    return test


def _generate() -> Doc:
    pilt = encode_frame(PlaintextFrame(_PACKET))
    pils = encode_frame(EncryptedFrame(1, _NONCE, b"\xc1" * 34 + b"\x7a" * 16))
    pils_min = encode_frame(EncryptedFrame(0xFFFFFFFF, _NONCE, b"\x7a" * 16))
    pilk = encode_frame(KeyExchangeFrame(0x00A3F291, _X))
    pila = encode_frame(AuthKeyExchangeFrame(7, _X, _ED, _SIG))
    pilp = encode_frame(PunchFrame(0x01020304))
    d = Profile.DRAFT
    both = [
        _test("PILT carrying the Appendix B SYN", pilt, d),
        _test("PILT with nothing after the 34-byte header is still a frame (38 bytes)", pilt[:38], d),
        _test("PILS with a 34-byte sealed packet and its tag", pils, d),
        _test("PILS of minimum size: empty plaintext, 16-byte tag", pils_min, d, ["Boundary"]),
        _test("PILK, 40 bytes", pilk, d),
        _test("PILA, 136 bytes", pila, d),
        _test("PILP with sender ID, 8 bytes (draft 7.5)", pilp, d),
        _test("empty datagram", b"", d, ["Truncated"]),
        _test("three bytes of a magic", b"PIL", d, ["Truncated"]),
        _test("unknown magic PILX", b"PILX" + bytes(36), d, ["BadMagic"]),
        _test("lowercase magic", b"pilt" + pilt[4:], d, ["BadMagic"]),
        _test("PILT shorter than a header", pilt[:37], d, ["Truncated"]),
        _test("PILT with only the magic", b"PILT", d, ["Truncated"]),
        _test("PILS one byte short of the tag", pils_min[:-1], d, ["Truncated"]),
        _test("PILS without ciphertext", pils_min[:20], d, ["Truncated"]),
        _test("PILK one byte short", pilk[:-1], d, ["Truncated"]),
        _test("PILK without the key", pilk[:8], d, ["Truncated"]),
        _test("PILA one byte short", pila[:-1], d, ["Truncated"]),
        _test("PILA without the signature", pila[:72], d, ["Truncated"]),
        _test("PILP with a partial sender ID", pilp[:6], d, ["Truncated"]),
    ]
    longer = [
        ("PILK followed by one extra byte", pilk + b"\x00", ["TrailingData"]),
        ("PILA with a GoC capability trailer (caps=5, flags=request)", pila + b"\x05\x01", ["PilaTrailer"]),
        ("PILP as Go sends it: the bare magic", b"PILP", ["GoPunch"]),
        ("PILP followed by one extra byte", pilp + b"\x00", ["TrailingData"]),
    ]
    per_profile = [
        {"type": "TunnelFrameTest", "profile": p.value, "tests": [_test(c, raw, p, f) for c, raw, f in longer]}
        for p in Profile
    ]
    return make_doc(
        "PILOT-TUNNEL-FRAME",
        "tunnel_frames_test_schema.json",
        [{"type": "TunnelFrameTest", "profile": "any", "tests": both}, *per_profile],
        header=[
            "draft 7: magic (4) then PILT packet | PILS sender u32, nonce 12, ciphertext+tag (>= 16) |",
            "PILK sender, X25519 (32) | PILA sender, X25519, Ed25519 (32), signature (64) | PILP sender.",
            "draft: PILK 40, PILA 136 and PILP 8 bytes exactly; go-interop accepts longer PILK/PILA",
            "(a PILA keeps the extra bytes as 'trailer') and the 4-byte PILP (errata E-TUN-2, E-PILA-1, E-PILP-1).",
        ],
        notes={
            "Boundary": {"bugType": "EDGE_CASE", "description": "smallest valid size"},
            "Truncated": {"bugType": "TRUNCATED", "description": "shorter than the frame type needs"},
            "BadMagic": {"bugType": "MODIFIED_PARAMETER", "description": "not one of the five magics"},
            "TrailingData": {"bugType": "EDGE_CASE", "description": "bytes after a fixed-size frame (E-TUN-2)"},
            "PilaTrailer": {"bugType": "EDGE_CASE", "description": "GoC PILA trailer (E-PILA-1)"},
            "GoPunch": {"bugType": "EDGE_CASE", "description": "Go's 4-byte PILP (E-PILP-1)"},
        },
    )


def _verify(doc: Doc) -> list[str]:
    out: list[str] = []
    for group, t in iter_tests(doc):
        tc = t["tcId"]
        raw = bytes.fromhex(t["frame"])
        for profile in group_profiles(group):
            got, problems = run_vector(t, profile.value, partial(decode_frame, raw, profile))
            out += problems
            if got is None:
                continue
            want = frame_from_json(t["magic"], t)
            if got != want:
                out.append(f"tcId {tc} ({profile.value}): decoded {got!r}, expected {want!r}")
            elif encode_frame(want) != raw[: len(encode_frame(want))]:
                out.append(f"tcId {tc} ({profile.value}): re-encoding gives different bytes")
    return out


SUITES = [VectorSuite(FILENAME, _generate, _verify)]
