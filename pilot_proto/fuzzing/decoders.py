"""One harness per registered wire decoder (:func:`pilot_proto.wire.formats.discover`).

Oracles, per input:

1. the decoder returns a value or raises :class:`~pilot_proto.errors.PilotError` -- nothing else;
2. it is deterministic (decoding the same bytes twice gives equal values);
3. where the format has one encoding per value (:data:`CANONICAL`), an accepted input re-encodes to
   exactly the bytes given: ``encode(decode(x)) == x``.  A decoder that accepts two spellings of one
   value (a reserved bit ignored, a length field not checked) breaks it.  Under ``go-interop`` some
   formats ignore bytes after a complete message, as Go does (errata E-PKT-1, E-TUN-*, E-NAT-*):
   for those (:data:`TAIL_IGNORED`) the re-encoding must equal the input's prefix instead;
4. where the format has several spellings by design (text and JSON; :data:`REDECODE`), the value
   survives a round trip: ``decode(encode(decode(x))) == decode(x)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pilot_proto.errors import PilotError
from pilot_proto.fuzzing.harness import Finding, Harness
from pilot_proto.fuzzing.seeds import all_seeds
from pilot_proto.profile import Profile

__all__ = ["CANONICAL", "REDECODE", "TAIL_IGNORED", "decoder_harness", "harnesses"]

Encoder = Callable[[Any], bytes]


def _ipc_body(profile: Profile) -> Encoder:
    from pilot_proto.wire import ipc

    return lambda v: ipc.encode_ipc_body(v, profile)


def _canonical() -> dict[str, Encoder]:
    from pilot_proto.wire import beacon, dataexchange, eventstream, frames, header, ipc, sack, secure

    table: dict[str, Encoder] = {
        "address:address.binary": lambda v: v.to_bytes(),
        "secure:key": lambda v: bytes(v),
        "secure:auth_frame": secure.encode_auth_frame,
        "dataexchange:frame": dataexchange.encode_data_frame,
        "eventstream:record": lambda v: eventstream.encode_record(v.topic, v.payload),
        "sack:sack@draft": sack.encode_sack,
        "ipc:frame@draft": lambda v: ipc.encode_ipc_frame(v, Profile.DRAFT),
    }
    for p in Profile:
        s = p.value
        table[f"header:packet@{s}"] = header.encode_packet
        table[f"control:ping@{s}"] = header.encode_packet
        table[f"control:pong@{s}"] = header.encode_packet
        table[f"frames:tunnel_frame@{s}"] = frames.encode_frame
        table[f"beacon:beacon@{s}"] = beacon.encode_beacon
        table[f"secure:record@{s}"] = secure.encode_record
        table[f"ipc:body@{s}"] = _ipc_body(p)
    return table


def _redecode() -> dict[str, Encoder]:
    from pilot_proto.wire import eventstream, ipc, registry, tasksubmit, trust

    table: dict[str, Encoder] = {
        "address:address.text@draft": lambda v: str(v).encode(),
        "address:address.text@go-interop": lambda v: str(v).encode(),
        "eventstream:text_line": eventstream.encode_text_line,
        "registry:message": registry.encode_registry_message,
        "tasksubmit:frame": tasksubmit.encode_task_frame,  # a JSON body: several spellings per value
    }
    for p in Profile:
        table[f"trust:message@{p.value}"] = trust.encode_trust
    # The length-prefixed IPC frame under go-interop carries a body whose tail Go ignores (E-IPC-*): the
    # frame's length field then differs from a fresh encoding, so only the value must survive.
    table["ipc:frame@go-interop"] = lambda v: ipc.encode_ipc_frame(v, Profile.GO_INTEROP)
    return table


#: Decoders whose format has exactly one encoding per value: ``encode(decode(x)) == x``.
CANONICAL: dict[str, Encoder] = _canonical()
#: Decoders that read a complete message from the front and ignore what follows (by profile, see errata).
TAIL_IGNORED: frozenset[str] = frozenset(
    {"address:address.binary"}
    | {
        f"{m}@go-interop"
        for m in ("header:packet", "control:ping", "control:pong", "frames:tunnel_frame", "beacon:beacon", "ipc:body")
    }
)
#: Decoders with several spellings per value by design: ``decode(encode(v)) == v``.
REDECODE: dict[str, Encoder] = _redecode()


def decoder_harness(name: str, decode: Callable[[bytes], object]) -> Harness:
    canonical = CANONICAL.get(name)
    tail_ok = name in TAIL_IGNORED
    redecode = REDECODE.get(name)

    def fuzz_one_input(data: bytes) -> object:
        try:
            value = decode(data)
        except PilotError as err:
            return (err.code, err.field)
        except Exception as exc:  # the oracle: nothing but PilotError escapes a decoder
            raise Finding("crash", f"{name} raised {type(exc).__name__}: {exc!r}") from exc
        try:
            again = decode(data)
        except Exception as exc:
            raise Finding("nondeterministic", f"{name} accepted the input once, then raised {exc!r}") from exc
        if again != value:
            raise Finding("nondeterministic", f"{name} decoded the same bytes to {value!r} and {again!r}")
        if canonical is not None:
            try:
                out = canonical(value)
            except Exception as exc:
                raise Finding("roundtrip", f"{name}: cannot re-encode accepted value {value!r}: {exc!r}") from exc
            if out != data and not (tail_ok and data.startswith(out)):
                raise Finding("roundtrip", f"{name}: accepted {data.hex()} but re-encodes to {out.hex()}")
        elif redecode is not None:
            try:
                back = decode(redecode(value))
            except Exception as exc:
                raise Finding("roundtrip", f"{name}: re-encoded value does not decode: {exc!r}") from exc
            if back != value:
                raise Finding("roundtrip", f"{name}: {value!r} came back as {back!r}")
        return ("accepted", type(value).__name__)

    def seeds() -> list[bytes]:
        good = []
        for seed in all_seeds():
            try:
                decode(seed)
            except Exception:
                continue
            good.append(seed)
        return good or [b""]

    oracle = "canonical round trip" if canonical else ("value round trip" if redecode else "no crash")
    return Harness(f"decoder:{name}", fuzz_one_input, seeds, "decoder", f"wire decoder ({oracle})")


def harnesses() -> list[Harness]:
    from pilot_proto.wire.formats import discover

    return [decoder_harness(name, fn) for name, fn in discover().items()]
