"""Seed corpora and the fuzzing dictionary, derived from our own vectors and codecs.

Seeds come from the vector suites generated in memory (:func:`pilot_proto.vectors.all_suites`:
every hex field of every file, so an installed wheel needs no ``vectors/`` directory) plus a few
hand-built encodings of formats the vectors do not reach deeply.  A seed that a decoder accepts is
a *valid* seed for it; mutations start from those so they get past the first length check.
"""

from __future__ import annotations

import contextlib
import functools
import struct

from pilot_proto.profile import Profile

__all__ = ["all_seeds", "dictionary", "dictionary_text", "own_seeds", "vector_seeds"]


def _hex_strings(node: object, out: list[bytes]) -> None:
    if isinstance(node, dict):
        for value in node.values():
            _hex_strings(value, out)
    elif isinstance(node, list):
        for value in node:
            _hex_strings(value, out)
    elif isinstance(node, str) and len(node) % 2 == 0 and 0 < len(node) <= 8192:
        with contextlib.suppress(ValueError):
            out.append(bytes.fromhex(node))


@functools.cache
def vector_seeds() -> tuple[bytes, ...]:
    """Every hex field of every vector suite, generated in memory by our own code."""
    from pilot_proto.vectors import all_suites

    out: list[bytes] = []
    for suite in all_suites().values():
        _hex_strings(suite.generate(), out)
    return tuple(sorted(set(out), key=lambda s: (len(s), s)))


@functools.cache
def own_seeds() -> tuple[bytes, ...]:
    """Hand-built encodings of service, IPC and control formats (their deep paths)."""
    from pilot_proto.wire import control, dataexchange, eventstream, ipc, secure, tasksubmit, trust
    from pilot_proto.wire.address import Addr
    from pilot_proto.wire.frames import KeyExchangeFrame, PlaintextFrame, encode_frame

    a, b = Addr(1, 0x1234), Addr(0, 7)
    ping = control.build_ping(a, b, 49152, 9, b"ping")
    seeds = [
        ping.encode(),
        control.build_reply(ping).encode(),
        secure.encode_record(secure.Record(secure.record_nonce(secure.Role.SERVER, 1), bytes(40))),
        secure.encode_auth_frame(secure.AuthFrame(5, 1_700_000_000, bytes(16), bytes(64))),
        bytes(32),
        trust.encode_trust(trust.TrustMessage(trust.TrustType.REQUEST, 7, bytes(32), "hi", bytes(64), "", 1)),
        dataexchange.encode_data_frame(dataexchange.FileFrame("a.txt", b"data")),
        dataexchange.encode_data_frame(dataexchange.JsonFrame(b'{"k":[1,2]}')),
        eventstream.encode_text_line(eventstream.Publish("t", b"x y")) + b"SUB *\n",
        eventstream.encode_record("topic", b"") + eventstream.encode_record("topic", b"payload"),
        tasksubmit.encode_task_frame(tasksubmit.SendResults("id", "file", "now", filename="f", file_data=b"1")),
        tasksubmit.encode_task_frame(tasksubmit.StatusUpdate("id", tasksubmit.TaskStatus.NEW, "j")),
        encode_frame(PlaintextFrame(ping.encode())),
        encode_frame(KeyExchangeFrame(3, bytes(32))),
        b'{"type":"lookup","node_id":7}',
        b"1:0001.0000.F291",
        b"1:0001.0000.F291:7",
    ]
    for profile in Profile:
        go = profile is Profile.GO_INTEROP
        for msg in (
            ipc.Accept(3, b, 80, 1000 if go else None),
            ipc.RecvFrom(a, 7, b"dgram", 9 if go else None),
            ipc.HandshakeRequest(ipc.HandshakeSub.REJECT, 4, "no"),
            ipc.NetworkRequest(ipc.NetworkSub.INVITE, 2, node_id=9),
            ipc.JsonMessage(ipc.Command.HEALTH_OK, b'{"ok":true}'),
        ):
            body = ipc.encode_ipc_body(msg, profile)
            seeds += [body, struct.pack(">I", len(body)) + body]
    return tuple(seeds)


@functools.cache
def all_seeds() -> tuple[bytes, ...]:
    return tuple(sorted(set(own_seeds()) | set(vector_seeds()), key=lambda s: (len(s), s)))


def dictionary() -> list[bytes]:
    """Tokens worth splicing in: frame magics, beacon and IPC type bytes, header flag/version bytes, extremes."""
    from pilot_proto.wire.beacon import BeaconType
    from pilot_proto.wire.frames import Magic
    from pilot_proto.wire.header import PacketProtocol
    from pilot_proto.wire.ipc import Command

    tokens: list[bytes] = [m.value for m in Magic]
    tokens += [bytes([t.value]) for t in BeaconType]
    tokens += [bytes([c.value]) for c in Command]
    tokens += [bytes([(v << 4) | f]) for v in (0, 1, 2, 15) for f in (0x0, 0x1, 0x2, 0x3, 0x4, 0x8, 0xF)]
    tokens += [bytes([p.value]) for p in PacketProtocol]
    tokens += [b"SACK", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00"]
    tokens += [b"\x00\x07", b"\x01\xbb", b"\x01\xbc", b"\x03\xe9", b"\x03\xea", b"\x03\xeb", b"\xc0\x00"]  # ports
    out: list[bytes] = []
    for t in tokens:
        if t not in out:
            out.append(t)
    return out


def dictionary_text() -> str:
    """The dictionary in libFuzzer / AFL format (``fuzz/pilot.dict``)."""
    lines = ["# Pilot Protocol fuzzing dictionary -- generated by `pilot-proto fuzz --write-layout fuzz/`", ""]
    for i, tok in enumerate(dictionary()):
        esc = "".join(f"\\x{b:02x}" for b in tok)
        lines.append(f'tok_{i:03d}="{esc}"')
    return "\n".join(lines) + "\n"
