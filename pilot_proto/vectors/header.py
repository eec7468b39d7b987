"""Packet header vectors (draft 6, 12.1): ``header_test.json``.

Each test holds the header fields as integers in a ``header`` object (``version``, ``flags``,
``protocol``, ``src``/``dst`` as address text, ``srcPort``, ``dstPort``, ``seq``, ``ack``,
``window``, ``checksum``; nested so the header's ``flags`` does not collide with the Wycheproof
``flags`` list), the ``payload`` and the ``encoded`` packet in hex.  Invalid tests carry only
``encoded`` and the ``error`` code.

Groups carry a ``profile`` parameter: ``any`` (both profiles agree), ``draft`` or ``go-interop``
(where erratum E-PKT-1 makes them differ: bytes after the payload).

The draft's Appendix B gives two packets with the checksum left as ``[CRC32]``; the checksums
here are what our codec computes (the tests recompute them with an independent table-driven CRC).
The Appendix B data packet leaves addresses, ports, seq and ack unspecified: we use the SYN's
endpoints and seq = ack = 1 (the first data segment after a handshake with ISN 0).
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
from pilot_proto.wire.address import Addr, broadcast
from pilot_proto.wire.header import Flags, Packet, PacketProtocol, decode_packet, encode_packet

__all__ = ["SUITES", "packet_from_json", "packet_to_json"]

FILENAME = "header_test.json"
_SYN = Packet(Flags.SYN, PacketProtocol.STREAM, Addr(0, 1), Addr(0, 2), 49152, 1000, window=512)
_DATA = Packet(Flags.ACK, PacketProtocol.STREAM, Addr(0, 1), Addr(0, 2), 49152, 1000, 1, 1, 502, b"hello")


def packet_to_json(pkt: Packet) -> dict[str, Any]:
    """The ``header`` object of a vector (checksum as on the wire)."""
    return {
        "version": pkt.version,
        "flags": int(pkt.flags),
        "protocol": int(pkt.protocol),
        "src": str(pkt.src),
        "dst": str(pkt.dst),
        "srcPort": pkt.src_port,
        "dstPort": pkt.dst_port,
        "seq": pkt.seq,
        "ack": pkt.ack,
        "window": pkt.window,
        "checksum": pkt.checksum,
    }


def packet_from_json(header: dict[str, Any], payload_hex: str) -> Packet:
    return Packet(
        flags=header["flags"],
        protocol=header["protocol"],
        src=Addr.parse(header["src"], Profile.GO_INTEROP),
        dst=Addr.parse(header["dst"], Profile.GO_INTEROP),
        src_port=header["srcPort"],
        dst_port=header["dstPort"],
        seq=header["seq"],
        ack=header["ack"],
        window=header["window"],
        payload=bytes.fromhex(payload_hex),
        version=header["version"],
        checksum=header["checksum"],
    )


# The error each invalid vector's flag stands for (draft 12.1 decode order decides which flag a case gets).
_CODE_OF_FLAG = {
    "BadChecksum": ErrorCode.BAD_CHECKSUM,
    "Truncated": ErrorCode.TRUNCATED,
    "BadVersion": ErrorCode.BAD_VERSION,
    "TrailingData": ErrorCode.TRAILING_DATA,
}


def _valid(
    comment: str,
    pkt: Packet,
    *,
    trailing: bytes = b"",
    flags: list[str] | None = None,
    profile: Profile = Profile.DRAFT,
) -> dict[str, Any]:
    raw = encode_packet(pkt)
    decoded = expect(comment, partial(decode_packet, raw + trailing, profile), None)
    assert decoded is not None
    if decoded._replace(checksum=0) != pkt._replace(checksum=0):
        raise ExpectationMismatch(f"vector {comment!r}: decodes to {decoded}, not the packet it was built from")
    return {
        "comment": comment,
        "flags": flags or [],
        "header": packet_to_json(decoded),
        "payload": decoded.payload.hex(),
        "encoded": (raw + trailing).hex(),
        "result": "valid",
    }


def _invalid(comment: str, raw: bytes, profile: Profile, flags: list[str]) -> dict[str, Any]:
    error = _CODE_OF_FLAG[flags[0]].value
    expect(comment, partial(decode_packet, raw, profile), error)
    return {"comment": comment, "flags": flags, "encoded": raw.hex(), "error": error, "result": "invalid"}


def _generate() -> Doc:
    base = _DATA
    valid = [
        _valid("draft Appendix B SYN: 0:0000.0000.0001:49152 -> 0:0000.0000.0002:1000, window 512", _SYN,
               flags=["AppendixB"]),
        _valid("draft Appendix B data packet: ACK, 'hello', window 502 (seq/ack/endpoints chosen by us)", _DATA,
               flags=["AppendixB"]),
        _valid("SYN-ACK", _SYN._replace(flags=Flags.SYN | Flags.ACK, src=_SYN.dst, dst=_SYN.src, src_port=1000,
                                        dst_port=49152, ack=1)),
        _valid("FIN", base._replace(flags=Flags.FIN, payload=b"", seq=6, ack=0, window=0)),
        _valid("RST", base._replace(flags=Flags.RST, payload=b"", seq=0, ack=0, window=0)),
        _valid("all four flags at once", base._replace(flags=0xF)),
        _valid("datagram, flags/seq/ack/window zero", Packet(0, PacketProtocol.DATAGRAM, Addr(1, 0x0A0B0C0D),
                                                             Addr(1, 0x01020304), 50000, 1001, payload=b"\x00\xff")),
        _valid("control ping to port 0", Packet(0, PacketProtocol.CONTROL, Addr(0, 5), Addr(0, 6), 49153, 0, 42,
                                                payload=b"ping")),
        _valid("datagram to the broadcast address of network 7", Packet(0, PacketProtocol.DATAGRAM, Addr(7, 9),
                                                                         broadcast(7), 1, 2, payload=b"all")),
        _valid("every field at its maximum", Packet(0xF, 0xFF, Addr(0xFFFF, 0xFFFFFFFF), Addr(0xFFFF, 0xFFFFFFFF),
                                                    0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF, b"\xff" * 3)),
        _valid("unassigned protocol byte 0x7f is carried by the codec (PKT-014)", base._replace(protocol=0x7F),
               flags=["UnassignedProtocol"]),
        _valid("1024-byte payload", base._replace(payload=bytes(range(256)) * 4)),
    ]  # fmt: skip
    good = encode_packet(_DATA)
    bad_crc = bytearray(good)
    bad_crc[33] ^= 0x01
    bad_payload = bytearray(good)
    bad_payload[-1] ^= 0x20
    invalid = [
        _invalid("checksum field off by one bit", bytes(bad_crc), Profile.DRAFT, ["BadChecksum"]),
        _invalid("payload byte changed after the CRC was computed", bytes(bad_payload), Profile.DRAFT, ["BadChecksum"]),
        _invalid("checksum field zeroed", good[:30] + bytes(4) + good[34:], Profile.DRAFT, ["BadChecksum"]),
        _invalid("empty datagram", b"", Profile.DRAFT, ["Truncated"]),
        _invalid("one byte", good[:1], Profile.DRAFT, ["Truncated"]),
        _invalid("header cut at 33 bytes", good[:33], Profile.DRAFT, ["Truncated"]),
        _invalid("header without payload although length says 5", good[:34], Profile.DRAFT, ["Truncated"]),
        _invalid("payload one byte short", good[:-1], Profile.DRAFT, ["Truncated"]),
    ]
    for version in (0, *range(2, 16)):
        raw = encode_packet(_DATA._replace(version=version))
        invalid.append(_invalid(f"version {version} with a valid CRC", raw, Profile.DRAFT, ["BadVersion"]))
    invalid.append(
        _invalid(
            "version 2 and a bad CRC: the checksum is checked first",
            encode_packet(_DATA._replace(version=2))[:-1] + b"\x00",
            Profile.DRAFT,
            ["BadChecksum"],
        )
    )
    trailing_draft = [
        _invalid("one byte after the payload", good + b"\x00", Profile.DRAFT, ["TrailingData"]),
        _invalid("a second packet after the first", good + good, Profile.DRAFT, ["TrailingData"]),
    ]
    trailing_go = [
        _valid("one byte after the payload (ignored)", _DATA, trailing=b"\x00", flags=["TrailingData"],
               profile=Profile.GO_INTEROP),
        _valid("a second packet after the first (ignored)", _DATA, trailing=good, flags=["TrailingData"],
               profile=Profile.GO_INTEROP),
    ]  # fmt: skip
    return make_doc(
        "PILOT-PACKET",
        "header_test_schema.json",
        [
            {"type": "PacketTest", "profile": "any", "tests": valid + invalid},
            {"type": "PacketTest", "profile": "draft", "tests": trailing_draft},
            {"type": "PacketTest", "profile": "go-interop", "tests": trailing_go},
        ],
        header=[
            "draft 6: 34-byte header, big-endian; byte 0 = version << 4 | flags; CRC-32 (zlib/IEEE) over the",
            "header with a zeroed checksum field followed by the payload, stored big-endian at offset 30.",
            "Decode order: truncation, trailing data (draft only), checksum, then version (draft 12.1).",
            "header.src/dst are address texts in the canonical N:NNNN.HHHH.LLLL form (draft 4.2).",
            "Appendix B leaves the data packet's endpoints, seq and ack open: we use the SYN's, seq = ack = 1.",
        ],
        notes={
            "AppendixB": {"bugType": "FUNCTIONALITY", "description": "the draft's own wire examples"},
            "UnassignedProtocol": {"bugType": "EDGE_CASE", "description": "protocol byte outside 0x01-0x03"},
            "BadChecksum": {"bugType": "MODIFIED_PARAMETER", "description": "CRC-32 does not match (PKT-010)"},
            "Truncated": {"bugType": "TRUNCATED", "description": "shorter than 34 + payload length"},
            "BadVersion": {"bugType": "MODIFIED_PARAMETER", "description": "version is not 1 (VER-001/002)"},
            "TrailingData": {"bugType": "EDGE_CASE", "description": "bytes after the payload (erratum E-PKT-1)"},
        },
    )


def _verify(doc: Doc) -> list[str]:
    out: list[str] = []
    for group, t in iter_tests(doc):
        tc = t["tcId"]
        raw = bytes.fromhex(t["encoded"])
        for profile in group_profiles(group):
            got, problems = run_vector(t, profile.value, partial(decode_packet, raw, profile))
            out += problems
            if got is None:
                continue
            want = packet_from_json(t["header"], t["payload"])
            if got != want:
                out.append(f"tcId {tc} ({profile.value}): decoded {got}, expected {want}")
            rebuilt = encode_packet(want)
            if rebuilt != raw[: len(rebuilt)] or (profile is Profile.DRAFT and rebuilt != raw):
                out.append(f"tcId {tc} ({profile.value}): re-encoding gives different bytes")
    return out


SUITES = [VectorSuite(FILENAME, _generate, _verify)]
