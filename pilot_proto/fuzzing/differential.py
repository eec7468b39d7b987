"""Differential harnesses: two implementations of one thing must agree on every input.

* ``diff:header@<profile>`` -- the struct fast codec, the ``construct`` schema and the scapy layer
  read a 34-byte header + payload: same verdict, same error code, same fields.
* ``diff:tunnel_frame@<profile>`` -- fast codec vs schema for PILT/PILS/PILK/PILA/PILP.
* ``diff:beacon@<profile>`` -- fast beacon codec vs the beacon schema (verdict; fields when both accept).
* ``diff:pils`` -- our PILS sealer/opener vs plain ``cryptography`` AES-GCM on the same key, nonce
  and AAD (draft 7.3, 11): identical frames, identical plaintexts, both refuse a tampered frame; and
  the replay window against a ten-line reference model (draft 11.4: 256 wide).  The session under test
  takes the default path (the C accelerator when built); a pure-Python twin of it and an
  ``open_frame`` opener must give the same frames, answers and replay state.
"""

from __future__ import annotations

import struct
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pilot_proto.errors import PilotError
from pilot_proto.fuzzing.harness import Finding, Harness
from pilot_proto.fuzzing.seeds import all_seeds
from pilot_proto.profile import Profile

__all__ = ["harnesses"]


def _verdict(fn: object, data: bytes, *args: object, **kw: object) -> tuple[str, object]:
    try:
        value = fn(data, *args, **kw)  # type: ignore[operator]
    except PilotError as err:
        return ("reject", err.code)
    except Exception as exc:
        raise Finding("crash", f"{getattr(fn, '__name__', fn)} raised {type(exc).__name__}: {exc!r}") from exc
    return ("accept", value)


def _header(profile: Profile) -> Harness:
    from pilot_proto.wire import schemas
    from pilot_proto.wire.header import decode_packet
    from pilot_proto.wire.scapy_layers import Pilot

    def fuzz_one_input(data: bytes) -> object:
        fast = _verdict(decode_packet, data, profile)
        slow = _verdict(schemas.parse_packet_schema, data, profile)
        if fast != slow:
            raise Finding("differential", f"header@{profile.value}: fast codec {fast!r} vs schema {slow!r}")
        if fast[0] == "accept":
            pkt: Any = fast[1]
            layer = Pilot(data)
            got = (int(layer.version), int(layer.flags), int(layer.protocol), int(layer.seq), int(layer.ack),
                   int(layer.window), int(layer.checksum), int(layer.src_node), int(layer.dst_node))  # fmt: skip
            want = (pkt.version, int(pkt.flags), int(pkt.protocol), pkt.seq, pkt.ack, pkt.window, pkt.checksum,
                    pkt.src.node, pkt.dst.node)  # fmt: skip
            if got != want:
                raise Finding("differential", f"header@{profile.value}: scapy reads {got} where the codec reads {want}")
        return fast[0], fast[1] if fast[0] == "reject" else None

    return Harness(f"diff:header@{profile.value}", fuzz_one_input, _packet_seeds, "diff",
                   "fast header codec vs construct schema vs scapy layer")  # fmt: skip


def _frames(profile: Profile) -> Harness:
    from pilot_proto.wire import schemas
    from pilot_proto.wire.frames import decode_frame

    def fuzz_one_input(data: bytes) -> object:
        fast = _verdict(decode_frame, data, profile)
        slow = _verdict(schemas.parse_frame_schema, data, profile)
        if fast != slow:
            raise Finding("differential", f"tunnel_frame@{profile.value}: fast {fast!r} vs schema {slow!r}")
        return fast[0], type(fast[1]).__name__ if fast[0] == "accept" else fast[1]

    return Harness(f"diff:tunnel_frame@{profile.value}", fuzz_one_input, _frame_seeds, "diff",
                   "fast tunnel-frame codec vs construct schema")  # fmt: skip


def _beacon(profile: Profile) -> Harness:
    from pilot_proto.wire import beacon

    def fuzz_one_input(data: bytes) -> object:
        fast = _verdict(beacon.decode_beacon, data, profile)
        # Under go-interop the codec ignores bytes after the message, as Go does; the schema is the
        # draft's exact layout, so it is given the canonical spelling of what the codec read.
        go_accepted = fast[0] == "accept" and profile is Profile.GO_INTEROP
        probe = beacon.encode_beacon(cast(Any, fast[1])) if go_accepted else data
        try:
            beacon.BEACON_SCHEMA.parse(probe)
            slow_ok = True
        except Exception:
            slow_ok = False
        if fast[0] == "accept" and not slow_ok:
            raise Finding("differential", f"beacon@{profile.value}: codec accepts {fast[1]!r}, schema refuses")
        if fast[0] == "accept" and beacon.decode_beacon(beacon.encode_beacon(cast(Any, fast[1])), profile) != fast[1]:
            raise Finding("differential", f"beacon@{profile.value}: {fast[1]!r} does not survive encode/decode")
        return fast[0], type(fast[1]).__name__ if fast[0] == "accept" else fast[1]

    return Harness(f"diff:beacon@{profile.value}", fuzz_one_input, _beacon_seeds, "diff",
                   "fast beacon codec vs beacon schema")  # fmt: skip


class _ReferenceWindow:
    """The replay rule of draft 11.4 written as plainly as possible: a set of seen counters, 256 wide."""

    def __init__(self, size: int) -> None:
        self.size, self.top, self.seen = size, -1, set[int]()

    def accept(self, counter: int) -> bool:
        if counter in self.seen or (self.top >= 0 and counter <= self.top - self.size):
            return False
        self.seen.add(counter)
        self.top = max(self.top, counter)
        self.seen = {c for c in self.seen if c > self.top - self.size}
        return True


def _pils() -> Harness:
    from pilot_proto.tunnel.aead import PilsOpener, PilsSealer, SessionCipher
    from pilot_proto.tunnel.replay import DEFAULT_WINDOW

    def fuzz_one_input(data: bytes) -> object:
        if len(data) < 41:
            return "short"
        key, prefix, sender = data[:32], data[32:36], struct.unpack(">I", data[36:40])[0]
        script = data[40:]
        sealer = PilsSealer(SessionCipher(bytearray(key)), sender, prefix, counter_start=script[0] & 1)
        opener = PilsOpener(SessionCipher(bytearray(key)), sender)
        pure = SessionCipher(bytearray(key), accelerated=False)  # twin on the pure-Python path
        pure_sealer = PilsSealer(pure, sender, prefix, counter_start=script[0] & 1)
        pure_opener, frame_opener = PilsOpener(pure, sender), PilsOpener(SessionCipher(bytearray(key)), sender)
        plain = AESGCM(key)
        aad = struct.pack(">I", sender)
        model = _ReferenceWindow(DEFAULT_WINDOW)
        frames: list[tuple[int, bytes]] = []
        i = 1
        while i < len(script):
            op, arg = script[i], script[i + 1] if i + 1 < len(script) else 0
            i += 2
            if op < 128:  # seal a packet whose bytes come from the input
                counter = sealer.counter
                body = bytes(script[i : i + (arg & 31)])
                if not op & 64:  # mostly a packet from ``sender`` (header bytes 6..9, draft 10.2)
                    body = bytes(6) + aad + body
                frame = sealer.seal(body)
                nonce = prefix + struct.pack(">Q", counter)
                want = b"PILS" + aad + nonce + plain.encrypt(nonce, body, aad)
                if frame != want:
                    raise Finding("differential", f"PILS frame differs from plain AES-GCM at counter {counter}")
                if pure_sealer.seal(body) != frame:
                    raise Finding("differential", f"C and pure-Python PILS frames differ at counter {counter}")
                frames.append((counter, frame))
            elif frames:  # deliver a sealed frame (maybe again, maybe tampered)
                counter, frame = frames[arg % len(frames)]
                tamper = op & 1
                if tamper:
                    frame = frame[:-1] + bytes([frame[-1] ^ 1])
                nonce, ct = frame[8:20], frame[20:]
                try:
                    got: object = opener.open(nonce, ct)
                    ok = True
                except PilotError as exc:
                    ok, got = False, exc.code
                twins = (_verdict(pure_opener.open, nonce, ct), _verdict(frame_opener.open_frame, frame))
                for name, twin in zip(("pure-Python open", "open_frame"), twins, strict=True):
                    if twin != (("accept", got) if ok else ("reject", got)):
                        raise Finding("differential", f"counter {counter}: {name} {twin!r}, open {ok} {got!r}")
                if not opener.snapshot() == pure_opener.snapshot() == frame_opener.snapshot():
                    raise Finding("replay", f"counter {counter}: the twins' replay states differ")
                if tamper:
                    if ok:
                        raise Finding("differential", "our opener accepted a frame with a flipped tag bit")
                    continue
                try:
                    ref_plain = plain.decrypt(nonce, ct, aad)
                except InvalidTag as exc:
                    raise Finding("differential", "plain AES-GCM refuses a frame we sealed") from exc
                inner_ok = ref_plain[6:10] == aad  # SEC-027: inner source node == PILS sender
                expected = inner_ok and model.accept(counter)  # recorded only after every check passed
                if ok != expected:
                    raise Finding("replay", f"counter {counter}: ours {'accepts' if ok else 'refuses'}, the "
                                  f"reference window {'accepts' if expected else 'refuses'}")  # fmt: skip
                if ok and got != ref_plain:
                    raise Finding("differential", "our opener returned other plaintext than plain AES-GCM")
        return len(frames) > 0

    def seeds() -> list[bytes]:
        base = bytes(range(32)) + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x07"
        return [base + b"\x00" + b"\x01\x05hello" + b"\x80\x00\x80\x00\x81\x00",
                base + b"\x01" + b"\x00\x00" * 4 + b"\x80\x03\x80\x01\x80\x02\x80\x00\x80\x00"]  # fmt: skip

    return Harness("diff:pils", fuzz_one_input, seeds, "diff", "PILS sealer/opener vs plain AES-GCM and a replay model")


def _packet_seeds() -> list[bytes]:
    return [s for s in all_seeds() if len(s) >= 34 and (s[0] >> 4) <= 2] or [b""]


def _frame_seeds() -> list[bytes]:
    return [s for s in all_seeds() if s[:3] == b"PIL"] or [b"PILT"]


def _beacon_seeds() -> list[bytes]:
    return [s for s in all_seeds() if s and 1 <= s[0] <= 7 and len(s) <= 80] or [b"\x01"]


def harnesses() -> list[Harness]:
    out = [_pils()]
    for p in Profile:
        out += [_header(p), _frames(p), _beacon(p)]
    return out
