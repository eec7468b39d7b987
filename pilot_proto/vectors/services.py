"""Service wire-format vectors: ping/pong, port 443 framing, 444 trust JSON, 1001, 1002 (both readings), 1003.

One file, ``services_test.json``.  Every decode test names a ``format`` (see
:data:`FORMATS`) and a ``profile``; a valid test gives the bytes (``msg``) and
the decoded message as neutral JSON (``decoded``: bytes as hex, addresses in
text form, enums by name), an invalid one the :class:`~pilot_proto.errors.ErrorCode`
value.  Valid tests without the ``NonCanonical`` flag must re-encode to the same
bytes.  Compute groups give the ping reply, the port-443 auth signed message,
the trust signed strings and the polo score for fixed inputs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from pilot_proto.errors import ErrorCode, PilotError
from pilot_proto.profile import Profile
from pilot_proto.vectors import VectorSuite
from pilot_proto.vectors._format import Doc, ExpectationMismatch, iter_tests, make_doc, run_vector
from pilot_proto.wire import control, registry, secure, trust
from pilot_proto.wire import dataexchange as dx
from pilot_proto.wire import eventstream as es
from pilot_proto.wire import tasksubmit as ts
from pilot_proto.wire.address import Addr
from pilot_proto.wire.formats import jsonable  # re-exported: the neutral JSON form lives in wire
from pilot_proto.wire.header import Flags, PacketProtocol, encode_packet

__all__ = ["FORMATS", "SUITES", "decode_case", "jsonable", "verify_decode_groups"]

_H = bytes.fromhex
Codec = tuple[Callable[[bytes, Profile], Any], Callable[[Any, Profile], bytes]]


def _stream(side: es.Side) -> Codec:
    def decode(data: bytes, profile: Profile) -> list[es.EventMessage]:
        dec = es.EventStreamDecoder(profile, side)
        dec.feed(data)
        return dec.messages()

    def encode(msgs: list[es.EventMessage], profile: Profile) -> bytes:
        return b"".join(es.encode_message(m, profile) for m in msgs)

    return decode, encode


FORMATS: dict[str, Codec] = {
    "control.ping": (control.decode_ping, lambda m, p: encode_packet(m)),
    "control.pong": (control.decode_pong, lambda m, p: encode_packet(m)),
    "secure.record": (secure.decode_record, lambda m, p: secure.encode_record(m)),
    "secure.key": (lambda b, p: secure.decode_key(b), lambda m, p: m),
    "secure.auth_frame": (lambda b, p: secure.decode_auth_frame(b), lambda m, p: secure.encode_auth_frame(m)),
    "trust.message": (trust.decode_trust, lambda m, p: trust.encode_trust(m)),
    "dataexchange.frame": (lambda b, p: dx.decode_data_frame(b), lambda m, p: dx.encode_data_frame(m)),
    "eventstream.text_line": (lambda b, p: es.decode_text_line(b), lambda m, p: es.encode_text_line(m)),
    "eventstream.record": (lambda b, p: es.decode_record(b), lambda m, p: es.encode_record(m.topic, m.payload)),
    "eventstream.stream/client": _stream(es.Side.CLIENT),
    "eventstream.stream/broker": _stream(es.Side.BROKER),
    "tasksubmit.frame": (lambda b, p: ts.decode_task_frame(b), lambda m, p: ts.encode_task_frame(m)),
    "registry.message": (
        lambda b, p: registry.decode_registry_message(b),
        lambda m, p: registry.encode_registry_message(m),
    ),
}


def decode_case(
    fmt: str,
    profile: Profile,
    msg: bytes,
    comment: str,
    *,
    error: ErrorCode | None,
    flags: list[str] | None = None,
    formats: dict[str, Codec] | None = None,
) -> dict[str, Any]:
    """One decode test: ``error`` is the stated verdict, which our decoder must reproduce on ``msg``."""
    decode, encode = (formats or FORMATS)[fmt]
    test: dict[str, Any] = {"comment": comment, "flags": list(flags or []), "profile": profile.value, "msg": msg.hex()}
    try:
        value = decode(msg, profile)
    except PilotError as exc:
        if error is None or exc.code is not error:
            raise ExpectationMismatch(
                f"{fmt}: {comment!r} ({profile.value}): stated {error}, decoder raises {exc.code.value}"
            ) from exc
        test.update(error=exc.code.value, requirement=exc.requirement, result="invalid")
        return test
    if error is not None:
        raise ExpectationMismatch(f"{fmt}: {comment!r} ({profile.value}): stated {error.value}, decoder accepts it")
    test.update(decoded=jsonable(value), result="valid")
    if "NonCanonical" not in test["flags"] and encode(value, profile) != msg:
        raise AssertionError(f"{fmt}: {comment}: re-encoding differs; flag it NonCanonical")
    return test


def verify_decode_groups(doc: Doc, formats: dict[str, Codec]) -> list[str]:
    """Re-decode every decode test of ``doc`` (and re-encode canonical ones)."""
    out = []
    for group, t in iter_tests(doc):
        if group.get("type") != "DecodeTest":
            continue
        tc = t["tcId"]
        decode, encode = formats[group["format"]]
        profile = Profile.parse(t["profile"])
        value, problems = run_vector(t, profile.value, partial(decode, _H(t["msg"]), profile))
        out += problems
        if value is None:
            continue
        if jsonable(value) != t["decoded"]:
            out.append(f"tcId {tc}: decoded {jsonable(value)} != {t['decoded']}")
        if "NonCanonical" not in t["flags"] and encode(value, profile).hex() != t["msg"]:
            out.append(f"tcId {tc}: re-encoding differs")
    return out


E = ErrorCode
#: (profile or None for both, message, comment, flags, the stated verdict: error code, or None for "decodes")
Case = tuple[Profile | None, bytes, str, list[str], ErrorCode | None]


def _group(fmt: str, cases: Sequence[Case], only: Profile | None = None) -> dict[str, Any]:
    """Decode tests; a case without a profile runs under both (or only under ``only``)."""
    tests = []
    for profile, msg, comment, flags, error in cases:
        for p in [profile] if profile else [only] if only else list(Profile):
            tests.append(decode_case(fmt, p, msg, comment, flags=flags, error=error))
    return {"type": "DecodeTest", "format": fmt, "tests": tests}


D, G = Profile.DRAFT, Profile.GO_INTEROP
A1, A2 = Addr(0, 0x00000001), Addr(1, 0x0000F291)


def _control_groups() -> list[dict[str, Any]]:
    ping = control.build_ping(A1, A2, 49152, seq=7, payload=b"ping")
    wrap = control.build_ping(A2, A1, 65535, seq=0xFFFFFFFF)
    pong = control.build_reply(ping)
    bad_crc = bytearray(ping.encode())
    bad_crc[-1] ^= 1
    pings: list[Case] = [
        (None, ping.encode(), "ping with payload", [], None),
        (None, wrap.encode(), "empty ping, seq 2^32-1", [], None),
        (None, ping._replace(dst_port=7).encode(), "Control packet to port 7 is not a ping", [], E.BAD_VALUE),
        (None, ping._replace(flags=Flags.ACK).encode(), "ACK set: a reply, not a request", [], E.BAD_VALUE),
        (None, ping._replace(protocol=PacketProtocol.DATAGRAM).encode(), "Datagram to port 0", [], E.BAD_VALUE),
        (None, bytes(bad_crc), "bad checksum", [], E.BAD_CHECKSUM),
        (D, ping.encode() + b"\x00", "byte after the payload (E-PKT-1)", [], E.TRAILING_DATA),
        (G, ping.encode() + b"\x00", "byte after the payload ignored (E-PKT-1)", ["NonCanonical"], None),
    ]
    pongs: list[Case] = [
        (None, pong.encode(), "reply: ACK, ports swapped, ack = seq + 1, payload echoed", [], None),
        (None, control.build_reply(wrap).encode(), "reply to seq 2^32-1: ack wraps to 0", [], None),
        (None, pong._replace(ack=7).encode(), "ack is not seq + 1", [], E.BAD_VALUE),
        (None, pong._replace(src_port=1).encode(), "reply not from port 0", [], E.BAD_VALUE),
        (None, pong._replace(flags=Flags.ACK | Flags.SYN).encode(), "flags other than ACK", [], E.BAD_FLAGS),
    ]
    replies = []
    for comment, req in (("ping with payload", ping), ("seq 2^32-1", wrap)):
        replies.append({"comment": comment, "request": req.encode().hex(),
                        "reply": control.build_reply(req).encode().hex(), "result": "valid"})  # fmt: skip
    return [
        _group("control.ping", pings),
        _group("control.pong", pongs),
        {"type": "PingReplyTest", "rule": "wire-notes 1.13 (Go handleControlPacket)", "tests": replies},
    ]


def _secure_groups() -> list[dict[str, Any]]:
    rec = secure.Record(secure.record_nonce(secure.Role.CLIENT, 1), b"\xc1" * 5 + b"\x7a" * 16)
    empty = secure.Record(secure.record_nonce(secure.Role.SERVER, 0), b"\x7a" * 16)
    tiny = struct.pack(">I", 12) + secure.record_nonce(secure.Role.SERVER, 1)
    r27 = struct.pack(">I", 27) + bytes(27)
    records: list[Case] = [
        (None, rec.encode(), "client record, counter 1, 5-byte ciphertext + tag", [], None),
        (None, empty.encode(), "server record, counter 0, empty plaintext (len 28)", [], None),
        (D, tiny, "len 12 (nonce only) is below nonce + tag (E-SEC443-1)", [], E.LENGTH_MISMATCH),
        (G, tiny, "len 12 accepted as Go's reader does (E-SEC443-1)", [], None),
        (D, r27, "len 27, one byte short of nonce + tag", [], E.LENGTH_MISMATCH),
        (G, struct.pack(">I", 11) + bytes(11), "len 11 below Go's minimum 12", [], E.LENGTH_MISMATCH),
        (None, struct.pack(">I", secure.MAX_RECORD_LEN + 1) + bytes(12), "len 16 MiB + 1", [], E.TOO_LARGE),
        (None, rec.encode()[:-1], "record cut short", [], E.TRUNCATED),
        (None, rec.encode() + b"\x00", "byte after the record", [], E.TRAILING_DATA),
        (None, b"\x00\x00\x00", "length prefix cut short", [], E.TRUNCATED),
    ]
    auth = secure.AuthFrame(0x01020304, 1_700_000_000, bytes(range(16)), bytes(range(64)))
    auths: list[Case] = [
        (None, auth.encode(), "auth frame: node_id, ts, nonce, signature", [], None),
        (None, auth.encode()[:91], "91 bytes", [], E.TRUNCATED),
        (None, auth.encode() + b"\x00", "93 bytes", [], E.TRAILING_DATA),
    ]
    keys: list[Case] = [
        (None, bytes(range(32)), "raw 32-byte X25519 public key", [], None),
        (None, bytes(31), "31 bytes", [], E.TRUNCATED),
        (None, bytes(33), "33 bytes", [], E.TRAILING_DATA),
    ]
    signed = []
    for node, pub, stamp, nonce in ((0x01020304, bytes(range(32)), 1_700_000_000, bytes(range(16))),
                                    (0xFFFFFFFF, b"\xff" * 32, 0, b"\x00" * 16)):  # fmt: skip
        signed.append({"comment": f"node {node}", "nodeId": node, "x25519Public": pub.hex(), "timestamp": stamp,
                       "nonce": nonce.hex(), "signedMessage": secure.auth_signed_message(node, pub, stamp, nonce).hex(),
                       "result": "valid"})  # fmt: skip
    return [
        _group("secure.record", records),
        _group("secure.key", keys),
        _group("secure.auth_frame", auths),
        {"type": "AuthSignedMessageTest", "domain": secure.AUTH_SIGN_DOMAIN.decode(), "tests": signed},
    ]


def _trust_groups() -> list[dict[str, Any]]:
    req = trust.TrustMessage(trust.TrustType.REQUEST, 7, bytes(range(32)), "let me in", bytes(range(64)), "",
                             1_700_000_000)  # fmt: skip
    rej = trust.TrustMessage(trust.TrustType.REJECT, 4294967295, reason="no <thanks> & bye", timestamp=-1)
    msgs: list[Case] = [
        (None, req.encode(), "request with key and signature", [], None),
        (None, rej.encode(), "reject; <, > and & escaped as Go does", [], None),
        (None, b'{"type":"handshake_revoke","node_id":9}', "missing fields take zero values", ["NonCanonical"], None),
        (D, b'{"type":"handshake_accept","extra":true}', "unknown field refused under draft", [], E.BAD_VALUE),
        (G, b'{"type":"handshake_accept","extra":true}', "unknown field ignored like Go", ["NonCanonical"], None),
        (None, b'{"type":"handshake_maybe"}', "unknown type", [], E.BAD_VALUE),
        (None, b'{"type":"handshake_request","node_id":4294967296}', "node_id over u32", [], E.OUT_OF_RANGE),
        (None, b'{"type":"handshake_request","node_id":"7"}', "node_id as a string", [], E.BAD_VALUE),
        (None, b'{"type":"handshake_request","public_key":"AAAA"}', "public_key of 3 bytes", [], E.LENGTH_MISMATCH),
        (None, b'{"type":"handshake_request","signature":"***"}', "signature not base64", [], E.BAD_ENCODING),
        (None, b'{"type":"handshake_request","type":"handshake_request"}', "duplicate key", [], E.BAD_ENCODING),
        (None, b"[]", "not an object", [], E.BAD_VALUE),
        (None, b"\xff", "not UTF-8", [], E.BAD_ENCODING),
    ]
    strings = []
    for kind, fn in (("handshake", trust.handshake_signing_string), ("respond", trust.respond_signing_string)):
        for a, b in ((7, 12), (0, 4294967295)):
            strings.append({"comment": f"{kind} {a} -> {b}", "kind": kind, "sender": a, "peer": b,
                            "signed": fn(a, b).decode(), "result": "valid"})  # fmt: skip
    return [_group("trust.message", msgs), {"type": "TrustSigningStringTest", "tests": strings}]


def _dx_groups() -> list[dict[str, Any]]:
    frames: list[Case] = [
        (None, dx.encode_data_frame(dx.TextFrame("héllo")), "Text", [], None),
        (None, dx.encode_data_frame(dx.BinaryFrame(b"\x00\xff")), "Binary", [], None),
        (None, dx.encode_data_frame(dx.JsonFrame(b'{"a":[1,2]}')), "JSON", [], None),
        (None, dx.encode_data_frame(dx.FileFrame("report.csv", b"a,b\n")), "File", [], None),
        (None, dx.encode_data_frame(dx.FileFrame("n" * 255, b"")), "File, 255-byte name", [], None),
        (None, struct.pack(">IIH", 4, 258, 256) + b"n" * 256, "File, 256-byte name", [], E.OUT_OF_RANGE),
        (None, struct.pack(">IIH", 4, 8, 6) + b"../etc", "File name with ../", [], E.BAD_VALUE),
        (None, struct.pack(">IIH", 4, 5, 3) + b"a\\b", "File name with a backslash", [], E.BAD_VALUE),
        (None, struct.pack(">II", 5, 0), "type 5", [], E.BAD_VALUE),
        (None, struct.pack(">II", 1, 1) + b"\xff", "Text not UTF-8", [], E.BAD_ENCODING),
        (None, struct.pack(">II", 3, 1) + b"{", "JSON that does not parse", [], E.BAD_ENCODING),
        (None, struct.pack(">II", 2, 1 << 24) + b"", "length 2^24 with no body: truncated", [], E.TRUNCATED),
        (None, struct.pack(">II", 2, (1 << 24) + 1), "length 2^24 + 1", [], E.TOO_LARGE),
    ]
    return [_group("dataexchange.frame", frames)]


def _es_groups() -> list[dict[str, Any]]:
    lines: list[Case] = [
        (None, b"SUB *\n", "subscribe to everything", [], None),
        (None, b"PUB alerts disk almost full\n", "publish; payload keeps its spaces", [], None),
        (None, b"EVENT alerts\n", "event with empty payload", [], None),
        (None, b"SUB\n", "SUB without topic", [], E.TRUNCATED),
        (None, b"SUB a b\n", "topic with a space", [], E.BAD_VALUE),
        (None, b"PUB t x", "no newline", [], E.TRUNCATED),
        (None, b"NOTIFY t x\n", "unknown command", [], E.BAD_VALUE),
    ]
    records: list[Case] = [
        (None, es.encode_record("alerts", b"\x00\x01"), "Go record", [], None),
        (None, es.encode_record("t" * 1024, b""), "1024-byte topic", [], None),
        (None, struct.pack(">H", 1025) + b"t" * 1025 + bytes(4), "1025-byte topic", [], E.TOO_LARGE),
        (None, b"\x00\x01t" + struct.pack(">I", (1 << 24) + 1), "payload length 2^24 + 1", [], E.TOO_LARGE),
        (None, b"\x00\x05ab", "topic cut short", [], E.TRUNCATED),
    ]
    go_conn = es.encode_record("alerts") + es.encode_record("alerts", b"x") + es.encode_record("other", b"y")
    client: list[Case] = [
        (D, b"SUB alerts\nPUB alerts x\n", "draft client: subscribe then publish", [], None),
        (D, b"EVENT alerts x\n", "draft: EVENT sent by a client", [], E.BAD_VALUE),
        (G, go_conn, "Go client: first record subscribes, later records publish", [], None),
    ]
    broker: list[Case] = [
        (D, b"EVENT alerts x\nEVENT * y\n", "draft broker: events", [], None),
        (D, b"PUB alerts x\n", "draft: PUB sent by the broker", [], E.BAD_VALUE),
        (G, es.encode_record("alerts", b"x"), "Go broker: every record is an event", [], None),
    ]
    return [
        _group("eventstream.text_line", lines, only=D),
        _group("eventstream.record", records, only=G),
        _group("eventstream.stream/client", client),
        _group("eventstream.stream/broker", broker),
    ]


def _ts_groups() -> list[dict[str, Any]]:
    frames: list[Case] = [
        (None, ts.encode_task_frame(ts.Submit("t-1", "summarise", "0:0000.0000.0001", "0:0000.0000.0002")), "Submit",
         [], None),
        (None, ts.encode_task_frame(ts.Result("t-1", 200, "accepted")), "Result 200", [], None),
        (None, ts.encode_task_frame(ts.StatusUpdate("t-1", ts.TaskStatus.EXECUTING, "started")), "StatusUpdate", [],
         None),
        (None, ts.encode_task_frame(ts.SendResults("t-1", "file", "2026-04-06T10:00:00Z", filename="out.csv",
                                                   file_data=b"a,b\n", time_idle_ms=1500, time_cpu_ms=90000)),
         "SendResults (file, omitempty fields left out)", [], None),
        (None, struct.pack(">II", 2, 14) + b'{"status":201}', "Result status 201", [], E.BAD_VALUE),
        (None, struct.pack(">II", 3, 17) + b'{"status":"DONE"}', "unknown task status", [], E.BAD_VALUE),
        (None, struct.pack(">II", 9, 2) + b"{}", "type 9", [], E.BAD_VALUE),
        (None, struct.pack(">II", 1, (1 << 24) + 1), "length 2^24 + 1", [], E.TOO_LARGE),
    ]  # fmt: skip
    scores = []
    for cpu, idle, staged in ((0, 0, 0), (60_000, 0, 0), (420_000, 30_000, 0), (180_000, 60_000, 600_000)):
        scores.append({"comment": f"cpu {cpu} ms, idle {idle} ms, staged {staged} ms", "timeCpuMs": cpu,
                       "timeIdleMs": idle, "timeStagedMs": staged, "score": ts.polo_score(cpu, idle, staged),
                       "result": "valid"})  # fmt: skip
    return [_group("tasksubmit.frame", frames), {"type": "PoloScoreTest", "tests": scores}]


def _registry_groups() -> list[dict[str, Any]]:
    msgs: list[Case] = [
        (G, registry.encode_registry_message(registry.subscribe_replication("tok")), "subscribe_replication", [], None),
        (G, registry.encode_registry_message(registry.heartbeat()), "replication heartbeat", [], None),
        (G, registry.encode_registry_message({"type": "lookup", "node_id": 7}), "lookup (keys sorted as Go)", [], None),
        (G, struct.pack(">I", 2) + b"[]", "not an object", [], E.BAD_VALUE),
        (G, struct.pack(">I", 11) + b'{"node":7}', "no type", [], E.TRUNCATED),
        (G, struct.pack(">I", registry.MAX_MESSAGE + 1), "length 64 KiB + 1", [], E.TOO_LARGE),
    ]
    return [_group("registry.message", msgs)]


def _generate() -> Doc:
    groups = _control_groups() + _secure_groups() + _trust_groups() + _dx_groups() + _es_groups() + _ts_groups()
    groups += _registry_groups()
    return make_doc(
        "pilot-services",
        "services_test_schema.json",
        groups,
        header=[
            "Ping/pong (draft 6.3, Go rule), port 443 record/key/auth framing (10.5, 11.4),",
            "port 444 trust JSON (10.6), data exchange 1001, event stream 1002 in the draft's text",
            "and Go's binary reading, task submit 1003. DecodeTest: decode msg under profile; valid",
            "tests list the decoded message (bytes hex, addresses as text). Registry JSON framing (Go) last.",
        ],
        notes={
            "NonCanonical": {"bugType": "LEGACY", "description": "accepted, but our encoder writes other bytes"},
        },
    )


def _verify(doc: Doc) -> list[str]:
    out = verify_decode_groups(doc, FORMATS)
    for group, t in iter_tests(doc):
        tc, kind = t["tcId"], group["type"]
        if kind == "PingReplyTest":
            req = control.decode_ping(_H(t["request"]), Profile.GO_INTEROP)
            if control.build_reply(req).encode().hex() != t["reply"]:
                out.append(f"tcId {tc}: reply differs")
        elif kind == "AuthSignedMessageTest":
            got = secure.auth_signed_message(t["nodeId"], _H(t["x25519Public"]), t["timestamp"], _H(t["nonce"]))
            if got.hex() != t["signedMessage"]:
                out.append(f"tcId {tc}: signed message differs")
        elif kind == "TrustSigningStringTest":
            fn = trust.handshake_signing_string if t["kind"] == "handshake" else trust.respond_signing_string
            if fn(t["sender"], t["peer"]).decode() != t["signed"]:
                out.append(f"tcId {tc}: signing string differs")
        elif (
            kind == "PoloScoreTest" and ts.polo_score(t["timeCpuMs"], t["timeIdleMs"], t["timeStagedMs"]) != t["score"]
        ):
            out.append(f"tcId {tc}: polo score differs")
    return out


SUITES = [VectorSuite("services_test.json", _generate, _verify)]
