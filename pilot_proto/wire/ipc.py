"""Driver <-> daemon IPC over a Unix socket (draft 16; wire-notes 1.21, Go ``pkg/daemon/ipc.go``).

Framing: ``len u32 BE || cmd u8 || payload`` with ``1 <= len <= 1 MiB``; ``len``
counts the command byte (IPC-001..003, erratum E-IPC-3).  Commands 0x01-0x22
(IPC-004) each have a payload layout, declared in :data:`PAYLOADS` as
``construct`` schemas which are also the codec.  Two layouts depend on the
profile: Accept (Go 14 bytes with ``local_port`` / SPEC 12 bytes, E-IPC-1) and
RecvFrom (Go adds ``dst_port``, E-IPC-2).

Fixed-size payloads followed by extra bytes are refused under ``draft`` and
the extra bytes ignored under ``go-interop`` (Go reads only the prefix it
needs; erratum E-IPC-4).  Text is strict UTF-8; JSON payloads must parse.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import construct as c

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError
from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.wire._codec import StreamDecoder, build, decode_json, decode_utf8, encode_utf8, parse_exact
from pilot_proto.wire.address import Addr

__all__ = [
    "DIRECTION",
    "MAX_MESSAGE",
    "PAYLOADS",
    "Accept",
    "Bind",
    "BindOK",
    "Close",
    "CloseOK",
    "Command",
    "Dial",
    "DialOK",
    "Direction",
    "Empty",
    "Error",
    "Flag",
    "HandshakeRequest",
    "HandshakeSub",
    "IpcMessage",
    "IpcReader",
    "JsonMessage",
    "NetworkRequest",
    "NetworkSub",
    "Recv",
    "RecvFrom",
    "Send",
    "SendTo",
    "Text",
    "decode_ipc_body",
    "decode_ipc_frame",
    "encode_ipc_body",
    "encode_ipc_frame",
]

MAX_MESSAGE = 1 << 20
_LEN = struct.Struct(">I")


class Command(enum.IntEnum):
    BIND = 0x01
    BIND_OK = 0x02
    DIAL = 0x03
    DIAL_OK = 0x04
    ACCEPT = 0x05
    SEND = 0x06
    RECV = 0x07
    CLOSE = 0x08
    CLOSE_OK = 0x09
    ERROR = 0x0A
    SEND_TO = 0x0B
    RECV_FROM = 0x0C
    INFO = 0x0D
    INFO_OK = 0x0E
    HANDSHAKE = 0x0F
    HANDSHAKE_OK = 0x10
    RESOLVE_HOSTNAME = 0x11
    RESOLVE_HOSTNAME_OK = 0x12
    SET_HOSTNAME = 0x13
    SET_HOSTNAME_OK = 0x14
    SET_VISIBILITY = 0x15
    SET_VISIBILITY_OK = 0x16
    DEREGISTER = 0x17
    DEREGISTER_OK = 0x18
    SET_TAGS = 0x19
    SET_TAGS_OK = 0x1A
    SET_WEBHOOK = 0x1B
    SET_WEBHOOK_OK = 0x1C
    SET_TASK_EXEC = 0x1D
    SET_TASK_EXEC_OK = 0x1E
    NETWORK = 0x1F
    NETWORK_OK = 0x20
    HEALTH = 0x21
    HEALTH_OK = 0x22


class Direction(enum.Enum):
    TO_DAEMON = "driver->daemon"
    TO_DRIVER = "daemon->driver"


_TO_DRIVER = {Command.BIND_OK, Command.DIAL_OK, Command.ACCEPT, Command.RECV, Command.CLOSE_OK, Command.ERROR,
              Command.RECV_FROM}  # fmt: skip
#: Who sends each command (IPC-005): requests are odd up to 0x0D, then every OK reply is even.
DIRECTION: dict[Command, Direction] = {
    cmd: Direction.TO_DRIVER if cmd in _TO_DRIVER or (cmd >= Command.INFO_OK and cmd % 2 == 0) else Direction.TO_DAEMON
    for cmd in Command
}


class HandshakeSub(enum.IntEnum):
    SEND = 0x01
    APPROVE = 0x02
    REJECT = 0x03
    PENDING = 0x04
    TRUSTED = 0x05
    REVOKE = 0x06


class NetworkSub(enum.IntEnum):
    LIST = 0x01
    JOIN = 0x02
    LEAVE = 0x03
    MEMBERS = 0x04
    INVITE = 0x05
    POLL_INVITES = 0x06
    RESPOND_INVITE = 0x07


# -- messages ---------------------------------------------------------------------------


class Bind(NamedTuple):
    port: int


class BindOK(NamedTuple):
    port: int


class Dial(NamedTuple):
    addr: Addr
    port: int


class DialOK(NamedTuple):
    conn_id: int


class Accept(NamedTuple):
    """``local_port`` is Go-only (E-IPC-1): ``None`` under ``draft``."""

    conn_id: int
    remote: Addr
    remote_port: int
    local_port: int | None = None


class Send(NamedTuple):
    conn_id: int
    data: bytes


class Recv(NamedTuple):
    conn_id: int
    data: bytes


class Close(NamedTuple):
    conn_id: int


class CloseOK(NamedTuple):
    conn_id: int


class Error(NamedTuple):
    code: int
    message: str


class SendTo(NamedTuple):
    addr: Addr
    port: int
    data: bytes


class RecvFrom(NamedTuple):
    """``dst_port`` is Go-only (E-IPC-2): ``None`` under ``draft``."""

    src: Addr
    src_port: int
    data: bytes
    dst_port: int | None = None


class Empty(NamedTuple):
    """Info, Deregister, Health: no payload."""

    command: Command


class Text(NamedTuple):
    """ResolveHostname, SetHostname (hostname) and SetWebhook (URL)."""

    command: Command
    text: str


class Flag(NamedTuple):
    """SetVisibility (public) and SetTaskExec (enabled)."""

    command: Command
    value: bool


class JsonMessage(NamedTuple):
    """SetTags and every JSON reply; ``document`` is the JSON text as sent."""

    command: Command
    document: bytes


class HandshakeRequest(NamedTuple):
    """Handshake (0x0F): ``node_id`` for SEND/APPROVE/REJECT/REVOKE; ``text`` is justification or reason."""

    sub: HandshakeSub
    node_id: int = 0
    text: str = ""


class NetworkRequest(NamedTuple):
    """Network (0x1F); which fields are used depends on ``sub`` (IPC-022)."""

    sub: NetworkSub
    network_id: int = 0
    token: str = ""
    node_id: int = 0
    accept: bool = False


IpcMessage = (
    Bind | BindOK | Dial | DialOK | Accept | Send | Recv | Close | CloseOK | Error | SendTo | RecvFrom | Empty
    | Text | Flag | JsonMessage | HandshakeRequest | NetworkRequest
)  # fmt: skip

# -- declarative payload layouts ------------------------------------------------------------

_ADDR = c.Struct("network" / c.Int16ub, "node" / c.Int32ub)
_EMPTY = c.Struct()
_PORT = c.Struct("port" / c.Int16ub)
_CONN = c.Struct("conn_id" / c.Int32ub)
_CONN_DATA = c.Struct("conn_id" / c.Int32ub, "data" / c.GreedyBytes)
_ADDR_PORT = c.Struct("addr" / _ADDR, "port" / c.Int16ub)
_TEXT = c.Struct("text" / c.GreedyBytes)
_BYTE = c.Struct("value" / c.Int8ub)
_ACCEPT_GO = c.Struct("local_port" / c.Int16ub, "conn_id" / c.Int32ub, "remote" / _ADDR, "remote_port" / c.Int16ub)
_ACCEPT_SPEC = c.Struct("conn_id" / c.Int32ub, "remote" / _ADDR, "remote_port" / c.Int16ub)
_RECV_FROM_GO = c.Struct("src" / _ADDR, "src_port" / c.Int16ub, "dst_port" / c.Int16ub, "data" / c.GreedyBytes)
_RECV_FROM_SPEC = c.Struct("src" / _ADDR, "src_port" / c.Int16ub, "data" / c.GreedyBytes)
_SUB_NODE_TEXT = c.Struct("node_id" / c.Int32ub, "text" / c.GreedyBytes)
_SUB_NODE = c.Struct("node_id" / c.Int32ub)
HANDSHAKE_BODIES: dict[HandshakeSub, c.Construct] = {
    HandshakeSub.SEND: _SUB_NODE_TEXT,
    HandshakeSub.APPROVE: _SUB_NODE,
    HandshakeSub.REJECT: _SUB_NODE_TEXT,
    HandshakeSub.PENDING: _EMPTY,
    HandshakeSub.TRUSTED: _EMPTY,
    HandshakeSub.REVOKE: _SUB_NODE,
}
NETWORK_BODIES: dict[NetworkSub, c.Construct] = {
    NetworkSub.LIST: _EMPTY,
    NetworkSub.JOIN: c.Struct("network_id" / c.Int16ub, "token" / c.GreedyBytes),
    NetworkSub.LEAVE: c.Struct("network_id" / c.Int16ub),
    NetworkSub.MEMBERS: c.Struct("network_id" / c.Int16ub),
    NetworkSub.INVITE: c.Struct("network_id" / c.Int16ub, "node_id" / c.Int32ub),
    NetworkSub.POLL_INVITES: _EMPTY,
    NetworkSub.RESPOND_INVITE: c.Struct("network_id" / c.Int16ub, "accept" / c.Int8ub),
}
_JSON_COMMANDS = frozenset({Command.SET_TAGS} | {cmd for cmd in Command if cmd >= Command.INFO_OK and cmd % 2 == 0})
_TEXT_COMMANDS = frozenset({Command.RESOLVE_HOSTNAME, Command.SET_HOSTNAME, Command.SET_WEBHOOK})
_FLAG_COMMANDS = frozenset({Command.SET_VISIBILITY, Command.SET_TASK_EXEC})
_EMPTY_COMMANDS = frozenset({Command.INFO, Command.DEREGISTER, Command.HEALTH})

#: Payload schema per (command, profile); sub-commands of 0x0F/0x1F are in HANDSHAKE_BODIES/NETWORK_BODIES.
PAYLOADS: dict[tuple[Command, Profile], c.Construct] = {}
for _profile in Profile:
    _go = _profile is Profile.GO_INTEROP
    for _cmd, _schema in {
        Command.BIND: _PORT, Command.BIND_OK: _PORT, Command.DIAL: _ADDR_PORT, Command.DIAL_OK: _CONN,
        Command.ACCEPT: _ACCEPT_GO if _go else _ACCEPT_SPEC, Command.SEND: _CONN_DATA, Command.RECV: _CONN_DATA,
        Command.CLOSE: _CONN, Command.CLOSE_OK: _CONN,
        Command.ERROR: c.Struct("code" / c.Int16ub, "message" / c.GreedyBytes),
        Command.SEND_TO: c.Struct("addr" / _ADDR, "port" / c.Int16ub, "data" / c.GreedyBytes),
        Command.RECV_FROM: _RECV_FROM_GO if _go else _RECV_FROM_SPEC,
        Command.HANDSHAKE: c.Struct("sub" / c.Int8ub, "body" / c.GreedyBytes),
        Command.NETWORK: c.Struct("sub" / c.Int8ub, "body" / c.GreedyBytes),
        **{cmd: _TEXT for cmd in _JSON_COMMANDS | _TEXT_COMMANDS},
        **{cmd: _BYTE for cmd in _FLAG_COMMANDS},
        **{cmd: _EMPTY for cmd in _EMPTY_COMMANDS},
    }.items():  # fmt: skip
        PAYLOADS[(_cmd, _profile)] = _schema

_REQ: dict[Command, str] = {
    Command.BIND: "IPC-006", Command.BIND_OK: "IPC-006", Command.DIAL: "IPC-007", Command.DIAL_OK: "IPC-007",
    Command.ACCEPT: "IPC-008", Command.SEND: "IPC-009", Command.RECV: "IPC-009", Command.CLOSE: "IPC-010",
    Command.CLOSE_OK: "IPC-010", Command.ERROR: "IPC-011", Command.SEND_TO: "IPC-012", Command.RECV_FROM: "IPC-013",
    Command.HANDSHAKE: "IPC-016", Command.NETWORK: "IPC-022", Command.SET_TAGS: "IPC-019",
    **{cmd: "IPC-014" for cmd in _JSON_COMMANDS - {Command.SET_TAGS}},
    **{cmd: "IPC-017" for cmd in _TEXT_COMMANDS}, **{cmd: "IPC-018" for cmd in _FLAG_COMMANDS},
    **{cmd: "IPC-015" for cmd in _EMPTY_COMMANDS},
}  # fmt: skip

# -- decoding -------------------------------------------------------------------------------


def _bad(code: ErrorCode, field: str, rule: str, req: str, section: str = "16.2") -> DecodeError:
    return DecodeError(code, f"ipc.{field}", rule, section=section, requirement=req)


def _utf8(raw: bytes, field: str, req: str) -> str:
    return decode_utf8(raw, field=f"ipc.{field}", section="16.2", requirement=req)


def _addr(obj: Any) -> Addr:
    return Addr(obj.network, obj.node)


def _bool(value: int, field: str, req: str) -> bool:
    if value > 1:
        raise _bad(ErrorCode.BAD_VALUE, field, f"{value} is not 0 or 1", req)
    return value == 1


def _sub_body(cmd: Command, sub: int, body: bytes, profile: Profile) -> HandshakeRequest | NetworkRequest:
    lenient = profile is Profile.GO_INTEROP
    if cmd is Command.HANDSHAKE:
        try:
            hsub = HandshakeSub(sub)
        except ValueError:
            raise _bad(ErrorCode.BAD_VALUE, "handshake.sub", f"unknown sub-command {sub:#04x}", "IPC-016") from None
        obj = parse_exact(HANDSHAKE_BODIES[hsub], body, what="ipc.handshake", section="16.2", requirement="IPC-016",
                          allow_trailing=lenient)  # fmt: skip
        text = _utf8(obj.text, "handshake.text", "IPC-016") if "text" in obj else ""
        return HandshakeRequest(hsub, obj.get("node_id", 0), text)
    try:
        nsub = NetworkSub(sub)
    except ValueError:
        raise _bad(ErrorCode.BAD_VALUE, "network.sub", f"unknown sub-command {sub:#04x}", "IPC-021", "16.3") from None
    obj = parse_exact(NETWORK_BODIES[nsub], body, what="ipc.network", section="16.3", requirement="IPC-022",
                      allow_trailing=lenient)  # fmt: skip
    token = _utf8(obj.token, "network.token", "IPC-022") if "token" in obj else ""
    accept = _bool(obj.accept, "network.accept", "IPC-022") if "accept" in obj else False
    return NetworkRequest(nsub, obj.get("network_id", 0), token, obj.get("node_id", 0), accept)


def decode_ipc_body(data: bytes | bytearray | memoryview, profile: Profile = DEFAULT_PROFILE) -> IpcMessage:
    """One message without its length prefix: ``cmd u8 || payload``."""
    raw = bytes(data)
    if not raw:
        raise _bad(ErrorCode.TRUNCATED, "cmd", "empty message has no command byte", "IPC-003", "16.1")
    if len(raw) > MAX_MESSAGE:
        raise _bad(ErrorCode.TOO_LARGE, "length", f"{len(raw)} bytes exceed 1 MiB", "IPC-002", "16.1")
    try:
        cmd = Command(raw[0])
    except ValueError:
        raise _bad(ErrorCode.BAD_VALUE, "cmd", f"unknown command {raw[0]:#04x}", "IPC-004") from None
    req = _REQ[cmd]
    if cmd is Command.ACCEPT:  # E-IPC-1: each profile refuses the other's size
        size = 14 if profile is Profile.GO_INTEROP else 12
        if len(raw) - 1 != size:
            raise _bad(ErrorCode.LENGTH_MISMATCH, "accept", f"{len(raw) - 1}-byte Accept, {profile.value} uses {size}",
                       req)  # fmt: skip
    obj = parse_exact(PAYLOADS[(cmd, profile)], raw[1:], what=f"ipc.{cmd.name.lower()}", section="16.2",
                      requirement=req, allow_trailing=profile is Profile.GO_INTEROP)  # fmt: skip
    return _to_message(cmd, obj, profile, req)


def _to_message(cmd: Command, obj: Any, profile: Profile, req: str) -> IpcMessage:
    if cmd is Command.BIND:
        return Bind(obj.port)
    if cmd is Command.BIND_OK:
        return BindOK(obj.port)
    if cmd is Command.DIAL:
        return Dial(_addr(obj.addr), obj.port)
    if cmd is Command.DIAL_OK:
        return DialOK(obj.conn_id)
    if cmd is Command.CLOSE:
        return Close(obj.conn_id)
    if cmd is Command.CLOSE_OK:
        return CloseOK(obj.conn_id)
    if cmd is Command.ACCEPT:
        return Accept(obj.conn_id, _addr(obj.remote), obj.remote_port, obj.get("local_port"))
    if cmd is Command.SEND:
        return Send(obj.conn_id, obj.data)
    if cmd is Command.RECV:
        return Recv(obj.conn_id, obj.data)
    if cmd is Command.ERROR:
        return Error(obj.code, _utf8(obj.message, "error.message", req))
    if cmd is Command.SEND_TO:
        return SendTo(_addr(obj.addr), obj.port, obj.data)
    if cmd is Command.RECV_FROM:
        return RecvFrom(_addr(obj.src), obj.src_port, obj.data, obj.get("dst_port"))
    if cmd in (Command.HANDSHAKE, Command.NETWORK):
        return _sub_body(cmd, obj.sub, obj.body, profile)
    if cmd in _JSON_COMMANDS:
        decode_json(obj.text, field=f"ipc.{cmd.name.lower()}", section="16.2", requirement=req)
        return JsonMessage(cmd, obj.text)
    if cmd in _TEXT_COMMANDS:
        return Text(cmd, _utf8(obj.text, cmd.name.lower(), req))
    if cmd in _FLAG_COMMANDS:
        return Flag(cmd, _bool(obj.value, cmd.name.lower(), req))
    return Empty(cmd)


def _check_len(length: int) -> None:
    if length > MAX_MESSAGE:
        raise _bad(ErrorCode.TOO_LARGE, "length", f"length {length} exceeds 1 MiB", "IPC-002", "16.1")
    if length == 0:
        raise _bad(ErrorCode.TRUNCATED, "cmd", "zero-length message has no command byte", "IPC-003", "16.1")


def decode_ipc_frame(data: bytes | bytearray | memoryview, profile: Profile = DEFAULT_PROFILE) -> IpcMessage:
    """Exactly one framed message: ``len u32 || cmd || payload``."""
    if len(data) < 4:
        raise _bad(ErrorCode.TRUNCATED, "length", f"{len(data)} bytes, the length prefix is 4", "IPC-001", "16.1")
    (length,) = _LEN.unpack_from(data)
    _check_len(length)
    if len(data) - 4 < length:
        raise _bad(ErrorCode.TRUNCATED, "payload", f"length says {length}, {len(data) - 4} present", "IPC-001", "16.1")
    if len(data) - 4 > length:
        raise _bad(ErrorCode.TRAILING_DATA, "payload", f"{len(data) - 4 - length} bytes after the message",
                   "IPC-001", "16.1")  # fmt: skip
    return decode_ipc_body(bytes(data[4:]), profile)


class IpcReader(StreamDecoder[IpcMessage]):
    """Incremental reader of one direction of an IPC connection.

    ``expect`` (optional) refuses commands sent the wrong way (IPC-005).
    """

    def __init__(self, profile: Profile = DEFAULT_PROFILE, expect: Direction | None = None) -> None:
        super().__init__()
        self.profile = profile
        self.expect = expect

    def _check_prefix(self) -> None:
        if len(self._buf) >= 4:
            _check_len(_LEN.unpack_from(self._buf)[0])

    def _parse(self, buf: bytearray) -> tuple[IpcMessage, int] | None:
        if len(buf) < 4:
            return None
        (length,) = _LEN.unpack_from(buf)
        _check_len(length)
        end = 4 + length
        if len(buf) < end:
            return None
        body = bytes(buf[4:end])
        if self.expect is not None and body[0] in Command._value2member_map_:
            cmd = Command(body[0])
            if DIRECTION[cmd] is not self.expect:
                raise _bad(ErrorCode.BAD_VALUE, "cmd", f"{cmd.name} travels {DIRECTION[cmd].value}", "IPC-005")
        return decode_ipc_body(body, self.profile), end


# -- encoding -------------------------------------------------------------------------------


def _command_of(msg: IpcMessage) -> Command:
    fixed: dict[type, Command] = {
        Bind: Command.BIND, BindOK: Command.BIND_OK, Dial: Command.DIAL, DialOK: Command.DIAL_OK,
        Accept: Command.ACCEPT, Send: Command.SEND, Recv: Command.RECV, Close: Command.CLOSE,
        CloseOK: Command.CLOSE_OK, Error: Command.ERROR, SendTo: Command.SEND_TO, RecvFrom: Command.RECV_FROM,
        HandshakeRequest: Command.HANDSHAKE, NetworkRequest: Command.NETWORK,
    }  # fmt: skip
    if type(msg) in fixed:
        return fixed[type(msg)]
    cmd = Command(msg.command)  # type: ignore[union-attr]
    allowed = {Empty: _EMPTY_COMMANDS, Text: _TEXT_COMMANDS, Flag: _FLAG_COMMANDS, JsonMessage: _JSON_COMMANDS}
    if cmd not in allowed[type(msg)]:
        raise LocalProtocolError(ErrorCode.BAD_VALUE, f"{type(msg).__name__} cannot carry {cmd.name}",
                                 field="ipc.cmd", section="16.2", requirement="IPC-004")  # fmt: skip
    return cmd


def _text(s: str, field: str, req: str) -> bytes:
    return encode_utf8(s, field=f"ipc.{field}", section="16.2", requirement=req)


def _to_obj(cmd: Command, msg: Any, profile: Profile, req: str) -> dict[str, Any]:
    if isinstance(msg, Accept | RecvFrom):
        extra = msg.local_port if isinstance(msg, Accept) else msg.dst_port
        if profile is Profile.GO_INTEROP and extra is None:
            raise LocalProtocolError(ErrorCode.BAD_VALUE, f"{cmd.name} needs its Go-only port under go-interop",
                                     field=f"ipc.{cmd.name.lower()}", section="16.2", requirement=req)  # fmt: skip
    if isinstance(msg, HandshakeRequest):
        body = build(HANDSHAKE_BODIES[HandshakeSub(msg.sub)], {"node_id": msg.node_id,
                     "text": _text(msg.text, "handshake.text", req)}, what="ipc.handshake", section="16.2",
                     requirement=req)  # fmt: skip
        return {"sub": msg.sub, "body": body}
    if isinstance(msg, NetworkRequest):
        fields = {"network_id": msg.network_id, "token": _text(msg.token, "network.token", req),
                  "node_id": msg.node_id, "accept": int(msg.accept)}  # fmt: skip
        return {"sub": msg.sub, "body": build(NETWORK_BODIES[NetworkSub(msg.sub)], fields, what="ipc.network",
                                              section="16.3", requirement=req)}  # fmt: skip
    if isinstance(msg, Text):
        return {"text": _text(msg.text, cmd.name.lower(), req)}
    if isinstance(msg, JsonMessage):
        return {"text": msg.document}
    if isinstance(msg, Flag):
        return {"value": int(msg.value)}
    if isinstance(msg, Error):
        return {"code": msg.code, "message": _text(msg.message, "error.message", req)}
    if isinstance(msg, Empty):
        return {}
    obj: dict[str, Any] = dict(msg._asdict())
    for key, value in obj.items():
        if isinstance(value, Addr):
            obj[key] = {"network": value.network, "node": value.node}
    return obj


def encode_ipc_body(msg: IpcMessage, profile: Profile = DEFAULT_PROFILE) -> bytes:
    """``cmd u8 || payload`` for ``msg`` under ``profile``."""
    cmd = _command_of(msg)
    req = _REQ[cmd]
    payload = build(PAYLOADS[(cmd, profile)], _to_obj(cmd, msg, profile, req), what=f"ipc.{cmd.name.lower()}",
                    section="16.2", requirement=req)  # fmt: skip
    if 1 + len(payload) > MAX_MESSAGE:
        raise LocalProtocolError(ErrorCode.TOO_LARGE, f"message of {1 + len(payload)} bytes exceeds 1 MiB",
                                 field="ipc.length", section="16.1", requirement="IPC-002")  # fmt: skip
    return bytes([cmd]) + payload


def encode_ipc_frame(msg: IpcMessage, profile: Profile = DEFAULT_PROFILE) -> bytes:
    """The framed message: ``len u32 BE || cmd || payload``."""
    body = encode_ipc_body(msg, profile)
    return _LEN.pack(len(body)) + body


def _drain(profile: Profile, data: bytes) -> list[IpcMessage]:
    reader = IpcReader(profile)
    reader.feed(data)
    return reader.messages()


DECODERS: dict[str, Callable[[bytes], object]] = {
    "body@draft": lambda b: decode_ipc_body(b, Profile.DRAFT),
    "body@go-interop": lambda b: decode_ipc_body(b, Profile.GO_INTEROP),
    "frame@draft": lambda b: decode_ipc_frame(b, Profile.DRAFT),
    "frame@go-interop": lambda b: decode_ipc_frame(b, Profile.GO_INTEROP),
    "stream@draft": lambda b: _drain(Profile.DRAFT, b),
    "stream@go-interop": lambda b: _drain(Profile.GO_INTEROP, b),
}
