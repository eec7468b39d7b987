"""Beacon message and NAT punch vectors (draft 7.5, 9; Go layouts of wire-notes 1.9-1.10).

One file, ``beacon_test.json``, three group types:

* ``BeaconMessageTest`` (one group per profile): every message 0x01-0x07 with
  IPv4 and IPv6 endpoints, empty and non-empty relay payloads and Sync lists,
  as hex plus its decoded fields; invalid encodings with their error code.
  Bytes after a fixed-size message are invalid under ``draft`` and ignored
  under ``go-interop``.
* ``PunchFrameTest`` (one group per profile): the draft's 8-byte PILP with a
  sender and Go's bare 4-byte magic (erratum E-NAT-1 / E-PILP-1).
* ``RelayDeliveryTest``: what the beacon sends the destination of a 0x05 --
  the bare payload (``draft``) or ``0x06 || sender || payload`` (``go-interop``),
  erratum E-NAT-2.
"""

from __future__ import annotations

from typing import Any

from pilot_proto.errors import DecodeError
from pilot_proto.profile import Profile
from pilot_proto.vectors import VectorSuite
from pilot_proto.vectors._format import Doc, iter_tests, make_doc
from pilot_proto.wire.beacon import (
    BeaconMessage,
    Discover,
    DiscoverReply,
    Endpoint,
    PunchCommand,
    PunchRequest,
    Relay,
    RelayDeliver,
    Sync,
    decode_beacon,
    encode_beacon,
    encode_delivery,
)
from pilot_proto.wire.frames import PunchFrame, decode_frame, encode_frame

__all__ = ["SUITES"]

_H = bytes.fromhex
_PILS = "50494c53" + "00000002" + "00" * 12 + "11" * 16  # a PILS frame with an empty ciphertext, sender 2
_V4 = Endpoint("198.51.100.7", 40001)
_V6 = Endpoint("2001:db8::7", 9001)

_VALID: list[tuple[str, BeaconMessage]] = [
    ("Discover", Discover(0x00A3F291)),
    ("Discover, node 0", Discover(0)),
    ("DiscoverReply, IPv4", DiscoverReply(_V4)),
    ("DiscoverReply, IPv6", DiscoverReply(_V6)),
    ("PunchRequest", PunchRequest(1, 2)),
    ("PunchCommand, IPv4", PunchCommand(_V4)),
    ("PunchCommand, IPv6", PunchCommand(_V6)),
    ("Relay of a PILS frame", Relay(1, 2, _H(_PILS))),
    ("Relay with empty payload", Relay(1, 2, b"")),
    ("RelayDeliver of a PILS frame", RelayDeliver(1, _H(_PILS))),
    ("RelayDeliver with empty payload", RelayDeliver(1, b"")),
    ("Sync with three nodes", Sync(7, (1, 2, 0xFFFFFFFF))),
    ("Sync with no nodes", Sync(7, ())),
]

_INVALID_BOTH: list[tuple[str, str, str]] = [
    ("empty datagram", "", "truncated"),
    ("type 0x00 unknown", "0000000001", "bad_magic"),
    ("type 0x08 unknown", "0800000001", "bad_magic"),
    ("Discover truncated", "01000000", "truncated"),
    ("DiscoverReply ip_len 5", "0205c6336407019c4141", "bad_value"),
    ("DiscoverReply ip_len 0", "0200", "bad_value"),
    ("DiscoverReply IPv4 missing port", "0204c6336407", "truncated"),
    ("PunchCommand IPv6 missing port", "0410" + "20010db8" + "00" * 11 + "07", "truncated"),
    ("PunchRequest truncated", "0300000001000000", "truncated"),
    ("Relay without dest", "0500000001", "truncated"),
    ("RelayDeliver without sender", "06000001", "truncated"),
    ("Sync count 2, one node", "07000000070002" + "00000001", "truncated"),
]

_TRAILING: list[tuple[str, BeaconMessage]] = [
    ("Discover + 1 byte", Discover(5)),
    ("PunchRequest + 1 byte", PunchRequest(1, 2)),
    ("DiscoverReply + 1 byte", DiscoverReply(_V4)),
    ("PunchCommand + 1 byte", PunchCommand(_V6)),
    ("Sync + 1 byte", Sync(7, (1,))),
]


def _fields(msg: BeaconMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"message": type(msg).__name__}
    for name, value in msg._asdict().items():
        if isinstance(value, Endpoint):
            out[name] = {"host": value.host, "port": value.port}
        elif isinstance(value, bytes):
            out[name] = value.hex()
        elif isinstance(value, tuple):
            out[name] = list(value)
        else:
            out[name] = value
    return out


def _message(fields: dict[str, Any]) -> BeaconMessage:
    kind = fields["message"]
    f = {k: v for k, v in fields.items() if k != "message"}
    if "endpoint" in f:
        f["endpoint"] = Endpoint(f["endpoint"]["host"], f["endpoint"]["port"])
    if "payload" in f:
        f["payload"] = _H(f["payload"])
    if "nodes" in f:
        f["nodes"] = tuple(f["nodes"])
    cls = {c.__name__: c for c in (Discover, DiscoverReply, PunchRequest, PunchCommand, Relay, RelayDeliver, Sync)}
    msg: BeaconMessage = cls[kind](**f)
    return msg


def _generate() -> Doc:
    groups: list[dict[str, Any]] = []
    for profile in Profile:
        tests: list[dict[str, Any]] = []
        for comment, msg in _VALID:
            tests.append(
                {"comment": comment, "msg": encode_beacon(msg).hex(), "fields": _fields(msg), "result": "valid"}
            )
        for comment, hexdata, error in _INVALID_BOTH:
            tests.append({"comment": comment, "msg": hexdata, "error": error, "result": "invalid"})
        for comment, msg in _TRAILING:
            raw = (encode_beacon(msg) + b"\x00").hex()
            if profile is Profile.DRAFT:
                tests.append({"comment": comment, "msg": raw, "error": "trailing_data", "result": "invalid",
                              "flags": ["TrailingData"]})  # fmt: skip
            else:
                tests.append({"comment": comment, "msg": raw, "fields": _fields(msg), "result": "acceptable",
                              "flags": ["TrailingData"]})  # fmt: skip
        groups.append({"type": "BeaconMessageTest", "profile": profile.value, "tests": tests})
    for profile in Profile:
        draft = profile is Profile.DRAFT
        pilp: list[dict[str, Any]] = [
            {"comment": "draft PILP: magic + sender", "frame": encode_frame(PunchFrame(0x0102)).hex(),
             "sender": 0x0102, "result": "valid", "flags": ["PilpDraft"]},
            {"comment": "Go PILP: bare magic", "frame": encode_frame(PunchFrame(None)).hex(), "sender": None,
             "result": "invalid" if draft else "valid", "flags": ["PilpGo"]},
            {"comment": "PILP + 1 byte", "frame": "50494c500000010200", "sender": 0x0102,
             "result": "invalid" if draft else "acceptable", "flags": ["TrailingData"]},
            {"comment": "PILP with a 2-byte sender", "frame": "50494c500001", "sender": None, "result": "invalid"},
        ]  # fmt: skip
        for t in pilp:
            if t["result"] == "invalid":
                t["error"] = "trailing_data" if len(t["frame"]) > 16 else "truncated"
        groups.append({"type": "PunchFrameTest", "profile": profile.value, "tests": pilp})
    deliveries: list[dict[str, Any]] = []
    for profile in Profile:
        for comment, payload in (("PILS payload", _H(_PILS)), ("PILT payload", b"PILT" + bytes(34))):
            deliveries.append({
                "comment": f"{comment}, {profile.value}", "profile": profile.value, "sender": 1, "dest": 2,
                "relay": encode_beacon(Relay(1, 2, payload)).hex(),
                "delivered": encode_delivery(1, payload, profile).hex(), "result": "valid",
            })  # fmt: skip
    groups.append({"type": "RelayDeliveryTest", "tests": deliveries})
    notes = {
        "TrailingData": {
            "bugType": "MALFORMED",
            "description": "bytes after a fixed-size message: draft refuses them, Go ignores them",
        },
        "PilpDraft": {"bugType": "FUNCTIONALITY", "description": "8-byte PILP with the sender's node ID"},
        "PilpGo": {"bugType": "FUNCTIONALITY", "description": "Go sends only the 4-byte magic"},
    }
    return make_doc(
        "PILOT-BEACON",
        "pilot_beacon_test_schema.json",
        groups,
        header=[
            "Beacon messages 0x01-0x07 (draft 9; layouts from the Go reference), PILP variants (draft 7.5)",
            "and the relay delivery form per profile (errata E-NAT-1, E-NAT-2).",
        ],
        notes=notes,
    )


def _verify(doc: Doc) -> list[str]:
    out: list[str] = []
    for group, t in iter_tests(doc):
        tc = t["tcId"]
        gtype = group["type"]
        if gtype == "RelayDeliveryTest":
            relay = decode_beacon(_H(t["relay"]))
            if not isinstance(relay, Relay) or (relay.sender, relay.dest) != (t["sender"], t["dest"]):
                out.append(f"tcId {tc}: relay frame does not decode to {t['sender']}->{t['dest']}")
                continue
            got = encode_delivery(relay.sender, relay.payload, Profile.parse(t["profile"])).hex()
            if got != t["delivered"]:
                out.append(f"tcId {tc}: delivered {got} != {t['delivered']}")
            continue
        profile = Profile.parse(group["profile"])
        data = t["msg"] if gtype == "BeaconMessageTest" else t["frame"]
        try:
            if gtype == "BeaconMessageTest":
                msg = decode_beacon(_H(data), profile)
                if msg != _message(t["fields"]):
                    out.append(f"tcId {tc}: decoded {msg!r} != fields")
                if t["result"] == "valid" and encode_beacon(msg).hex() != data:
                    out.append(f"tcId {tc}: re-encoding differs")
            else:
                frame = decode_frame(_H(data), profile)
                if not isinstance(frame, PunchFrame) or frame.sender != t["sender"]:
                    out.append(f"tcId {tc}: decoded {frame!r}, expected sender {t['sender']}")
                if t["result"] == "valid" and encode_frame(frame).hex() != data:
                    out.append(f"tcId {tc}: re-encoding differs")
        except DecodeError as exc:
            if t["result"] != "invalid":
                out.append(f"tcId {tc}: {t['result']} vector refused: {exc}")
            elif exc.code.value != t["error"]:
                out.append(f"tcId {tc}: error {exc.code.value} != {t['error']}")
            continue
        if t["result"] == "invalid":
            out.append(f"tcId {tc}: invalid vector accepted")
    return out


SUITES = [VectorSuite("beacon_test.json", _generate, _verify)]
