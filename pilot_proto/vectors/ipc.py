"""IPC vectors: every command 0x01-0x22 under both profiles, valid and invalid (draft 16).

One file, ``ipc_test.json``, of ``DecodeTest`` groups in the shape of
:mod:`pilot_proto.vectors.services`: ``msg`` is a framed message
(``len u32 || cmd || payload``), ``decoded`` the message as neutral JSON.
Accept and RecvFrom appear in both layouts (errata E-IPC-1, E-IPC-2); the
invalid tests cover the 1 MiB limit (the exact-1-MiB valid case is in
``tests/test_wire_ipc.py``, too big for a vector file), zero length, unknown commands and
sub-commands, short payloads, bad text/JSON and extra bytes (E-IPC-4).
"""

from __future__ import annotations

import struct
from typing import Any

from pilot_proto.errors import ErrorCode
from pilot_proto.profile import Profile
from pilot_proto.vectors import VectorSuite
from pilot_proto.vectors._format import Doc, make_doc
from pilot_proto.vectors.services import Codec, decode_case, verify_decode_groups
from pilot_proto.wire import ipc
from pilot_proto.wire.address import Addr
from pilot_proto.wire.ipc import Command, HandshakeSub, NetworkSub

__all__ = ["SUITES"]

FORMATS: dict[str, Codec] = {"ipc.frame": (ipc.decode_ipc_frame, ipc.encode_ipc_frame)}
D, G = Profile.DRAFT, Profile.GO_INTEROP
PEER = Addr(1, 0x0000F291)


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _messages(profile: Profile) -> list[ipc.IpcMessage]:
    go = profile is G
    return [
        ipc.Bind(1000),
        ipc.BindOK(1000),
        ipc.Dial(PEER, 80),
        ipc.DialOK(17),
        ipc.Accept(17, PEER, 49152, 1000 if go else None),
        ipc.Send(17, b"GET / HTTP/1.0\r\n\r\n"),
        ipc.Recv(17, b"HTTP/1.0 200 OK\r\n"),
        ipc.Close(17),
        ipc.CloseOK(17),
        ipc.Error(1, "dial: no route"),
        ipc.SendTo(PEER, 1002, b"datagram"),
        ipc.RecvFrom(PEER, 49153, b"datagram", 1002 if go else None),
        ipc.Empty(Command.INFO),
        ipc.JsonMessage(Command.INFO_OK, b'{"node_id":1,"address":"0:0000.0000.0001"}'),
        ipc.HandshakeRequest(HandshakeSub.SEND, 42, "we share a project"),
        ipc.HandshakeRequest(HandshakeSub.APPROVE, 42),
        ipc.HandshakeRequest(HandshakeSub.REJECT, 42, "unknown agent"),
        ipc.HandshakeRequest(HandshakeSub.PENDING),
        ipc.HandshakeRequest(HandshakeSub.TRUSTED),
        ipc.HandshakeRequest(HandshakeSub.REVOKE, 42),
        ipc.JsonMessage(Command.HANDSHAKE_OK, b'{"status":"sent","node_id":42}'),
        ipc.Text(Command.RESOLVE_HOSTNAME, "alice"),
        ipc.JsonMessage(Command.RESOLVE_HOSTNAME_OK, b'{"address":"0:0000.0000.0007"}'),
        ipc.Text(Command.SET_HOSTNAME, "bob"),
        ipc.JsonMessage(Command.SET_HOSTNAME_OK, b'{"hostname":"bob"}'),
        ipc.Flag(Command.SET_VISIBILITY, True),
        ipc.JsonMessage(Command.SET_VISIBILITY_OK, b'{"public":true}'),
        ipc.Empty(Command.DEREGISTER),
        ipc.JsonMessage(Command.DEREGISTER_OK, b"{}"),
        ipc.JsonMessage(Command.SET_TAGS, b'["gpu","eu"]'),
        ipc.JsonMessage(Command.SET_TAGS_OK, b'{"tags":["gpu","eu"]}'),
        ipc.Text(Command.SET_WEBHOOK, "https://example.org/hook"),
        ipc.JsonMessage(Command.SET_WEBHOOK_OK, b'{"webhook":"https://example.org/hook"}'),
        ipc.Flag(Command.SET_TASK_EXEC, False),
        ipc.JsonMessage(Command.SET_TASK_EXEC_OK, b'{"enabled":false}'),
        ipc.NetworkRequest(NetworkSub.LIST),
        ipc.NetworkRequest(NetworkSub.JOIN, 3, "invite-token"),
        ipc.NetworkRequest(NetworkSub.LEAVE, 3),
        ipc.NetworkRequest(NetworkSub.MEMBERS, 3),
        ipc.NetworkRequest(NetworkSub.INVITE, 3, node_id=42),
        ipc.NetworkRequest(NetworkSub.POLL_INVITES),
        ipc.NetworkRequest(NetworkSub.RESPOND_INVITE, 3, accept=True),
        ipc.JsonMessage(Command.NETWORK_OK, b'[{"id":3,"name":"lab"}]'),
        ipc.Empty(Command.HEALTH),
        ipc.JsonMessage(Command.HEALTH_OK, b'{"status":"ok"}'),
    ]


E = ErrorCode


def _invalid() -> list[tuple[Profile | None, bytes, str, ErrorCode]]:
    """Frames every profile listed must refuse, each with the error it is stated to give."""
    accept_go = ipc.encode_ipc_frame(ipc.Accept(17, PEER, 49152, 1000), G)
    accept_spec = ipc.encode_ipc_frame(ipc.Accept(17, PEER, 49152), D)
    return [
        (D, accept_go, "Go's 14-byte Accept under draft (E-IPC-1)", E.LENGTH_MISMATCH),
        (G, accept_spec, "SPEC's 12-byte Accept under go-interop (E-IPC-1)", E.LENGTH_MISMATCH),
        (None, struct.pack(">I", ipc.MAX_MESSAGE + 1) + b"\x06", "length 1 MiB + 1", E.TOO_LARGE),
        (None, b"\x00\x00\x00\x00", "zero length: no command byte (E-IPC-3)", E.TRUNCATED),
        (None, b"\x00\x00\x00\x05\x06", "length says 5, one byte present", E.TRUNCATED),
        (
            None,
            struct.pack(">I", ipc.MAX_MESSAGE) + b"\x06" + bytes(4),
            "length exactly 1 MiB, body cut short",
            E.TRUNCATED,
        ),
        (None, _frame(b"\x00"), "command 0x00", E.BAD_VALUE),
        (None, _frame(b"\x23"), "command 0x23 (SPEC Managed, beyond the draft)", E.BAD_VALUE),
        (None, _frame(b"\x01\x03"), "Bind with one port byte", E.TRUNCATED),
        (D, _frame(b"\x01\x03\xe8\x00"), "Bind with an extra byte (E-IPC-4)", E.TRAILING_DATA),
        (None, _frame(b"\x0a\x00\x01\xff"), "Error message not UTF-8", E.BAD_ENCODING),
        (None, _frame(b"\x0e{"), "InfoOK JSON that does not parse", E.BAD_ENCODING),
        (None, _frame(b"\x15\x02"), "SetVisibility 2", E.BAD_VALUE),
        (None, _frame(b"\x0f\x07"), "Handshake sub-command 7", E.BAD_VALUE),
        (None, _frame(b"\x0f\x02\x00\x00"), "Handshake approve with 2-byte node", E.TRUNCATED),
        (None, _frame(b"\x1f\x08"), "Network sub-command 8", E.BAD_VALUE),
        (None, _frame(b"\x1f\x05\x00\x03\x00"), "Network invite with 1-byte node", E.TRUNCATED),
        (None, _frame(b"\x1f\x07\x00\x03\x05"), "Network respond-invite accept = 5", E.BAD_VALUE),
    ]


def _generate() -> Doc:
    tests: list[dict[str, Any]] = []
    for profile in Profile:
        for msg in _messages(profile):
            name = Command(ipc._command_of(msg)).name
            raw = ipc.encode_ipc_frame(msg, profile)
            tests.append(decode_case("ipc.frame", profile, raw, name, error=None, formats=FORMATS))
    tests.append(decode_case("ipc.frame", G, _frame(b"\x01\x03\xe8\x00"), "Bind with an extra byte ignored (E-IPC-4)",
                             error=None, flags=["NonCanonical"], formats=FORMATS))  # fmt: skip
    for only, raw, comment, error in _invalid():
        for p in [only] if only else list(Profile):
            tests.append(decode_case("ipc.frame", p, raw, comment, error=error, formats=FORMATS))
    return make_doc(
        "pilot-ipc",
        "ipc_test_schema.json",
        [{"type": "DecodeTest", "format": "ipc.frame", "tests": tests}],
        header=[
            "Framed IPC messages: len u32 BE || cmd u8 || payload, 1 <= len <= 1 MiB (draft 16).",
            "Payload layouts from the Go reference; Accept/RecvFrom differ by profile (errata E-IPC-1, E-IPC-2).",
        ],
        notes={"NonCanonical": {"bugType": "LEGACY", "description": "accepted, but our encoder writes other bytes"}},
    )


def _verify(doc: Doc) -> list[str]:
    return verify_decode_groups(doc, FORMATS)


SUITES = [VectorSuite("ipc_test.json", _generate, _verify)]
