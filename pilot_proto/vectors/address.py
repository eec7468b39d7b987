"""Address vectors (draft 4): ``address_test.json``.

* ``AddressTextTest`` -- ``text`` -> ``network``, ``node``, 6-byte ``binary`` and the ``canonical`` text
  we write; invalid texts carry ``error``.  Groups have a ``profile`` parameter because the draft's
  own examples ``1:00A3.F291.0004`` and ``X:FFFF.FFFF.FFFF`` parse only under ``draft`` (errata
  E-ADDR-1, E-ADDR-2).
* ``SocketAddressTextTest`` -- the same plus ``port``.
* ``AddressBinaryTest`` -- 6 bytes -> ``network``/``node``; shorter input is ``truncated``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from pilot_proto.errors import ErrorCode
from pilot_proto.profile import Profile
from pilot_proto.vectors import VectorSuite
from pilot_proto.vectors._format import Doc, expect, group_profiles, iter_tests, make_doc, run_vector
from pilot_proto.wire.address import Addr, SocketAddr

__all__ = ["SUITES"]

FILENAME = "address_test.json"


_BAD = ErrorCode.BAD_ADDRESS.value


def _text_test(
    text: str, profile: Profile, comment: str, flags: list[str] | None = None, *, error: str | None
) -> dict[str, Any]:
    """One text case; ``error`` is the stated verdict (``None``: must parse)."""
    addr = expect(f"{comment} ({profile.value})", partial(Addr.parse, text, profile), error)
    if addr is None:
        return {"comment": comment, "flags": flags or [], "text": text, "error": error, "result": "invalid"}
    return {
        "comment": comment,
        "flags": flags or [],
        "text": text,
        "network": addr.network,
        "node": addr.node,
        "binary": addr.to_bytes().hex(),
        "canonical": str(addr),
        "result": "valid",
    }


def _both(text: str, comment: str, flags: list[str], error: str | None) -> dict[str, Any]:
    """A profile-``any`` case: both profiles must give the stated verdict; the draft reading is written."""
    _text_test(text, Profile.GO_INTEROP, comment, flags, error=error)
    return _text_test(text, Profile.DRAFT, comment, flags, error=error)


def _socket_test(
    text: str, profile: Profile, comment: str, flags: list[str] | None = None, *, error: str | None
) -> dict[str, Any]:
    sa = expect(f"{comment} ({profile.value})", partial(SocketAddr.parse, text, profile), error)
    if sa is None:
        return {"comment": comment, "flags": flags or [], "text": text, "error": error, "result": "invalid"}
    return {
        "comment": comment,
        "flags": flags or [],
        "text": text,
        "network": sa.addr.network,
        "node": sa.addr.node,
        "port": sa.port,
        "canonical": str(sa),
        "result": "valid",
    }


_ANY_VALID = [
    ("0:0000.0000.0001", "draft 4.2 example: node 1 on the backbone (the registry)"),
    ("0:0000.0000.0000", "unspecified / wildcard"),
    ("0:0000.0000.0002", "beacon"),
    ("0:0000.0000.0003", "nameserver"),
    ("1:0001.F291.0004", "network 1 in the Go form (network repeated in hex)"),
    ("1:0001.f291.0004", "lowercase hex is accepted; we write uppercase"),
    ("0007:0007.0000.0009", "leading zeros in the decimal network"),
    ("7:0007.FFFF.FFFF", "broadcast on network 7 in the Go form"),
    ("65535:FFFF.FFFF.FFFF", "broadcast on the reserved network: the same text in both forms"),
    ("65535:FFFF.0000.0001", "reserved network 65535 (a valid text; its use is a policy matter)"),
    ("65534:FFFE.DEAD.BEEF", "largest user network"),
]
# valid under draft (the first group is not checked), bad_address under go-interop (E-ADDR-1, E-ADDR-2)
_PROFILE_SPLIT = [
    ("1:00A3.F291.0004", "draft 4.2 example: the first group matches nothing (erratum E-ADDR-1)", "DraftExample"),
    ("7:FFFF.FFFF.FFFF", "draft 4.4 broadcast form on network 7 (erratum E-ADDR-2)", "DraftBroadcast"),
    ("0:FFFF.FFFF.FFFF", "draft 4.4 broadcast form on the backbone (erratum E-ADDR-2)", "DraftBroadcast"),
    ("2:0001.0000.0001", "first group 1 disagrees with network 2", "GroupMismatch"),
]
_ANY_INVALID = [
    ("", "empty"),
    ("0", "no colon"),
    (":0000.0000.0001", "no network"),
    ("0:0000.0000", "two groups"),
    ("0:0000.0000.0000.0001", "four groups"),
    ("0:000.0000.0001", "three-digit group"),
    ("0:00000.0000.0001", "five-digit group"),
    ("0:0000.0000.000G", "non-hex digit"),
    ("0:0000.0000.+001", "sign inside a group"),
    ("-1:0000.0000.0001", "negative network"),
    ("65536:0000.0000.0001", "network above 65535"),
    ("0x1:0001.0000.0001", "hex network"),
    (" 0:0000.0000.0001", "leading space"),
    ("0:0000.0000.0001 ", "trailing space"),
    ("\u0661:0001.0000.0001", "non-ASCII digit in the network"),
]
_SOCKET = [
    ("1:0001.F291.0004:1000", "Go form with port 1000", Profile.GO_INTEROP, None),
    ("0:0000.0000.0001:0", "port 0", Profile.GO_INTEROP, None),
    ("0:0000.0000.0001:65535", "port 65535", Profile.GO_INTEROP, None),
    ("0:0000.0000.0001:00080", "leading zeros in the port", Profile.GO_INTEROP, None),
    ("0:0000.0000.0001", "no port", Profile.GO_INTEROP, _BAD),
    ("0:0000.0000.0001:", "empty port", Profile.GO_INTEROP, _BAD),
    ("0:0000.0000.0001:65536", "port above 65535", Profile.GO_INTEROP, _BAD),
    ("0:0000.0000.0001:-1", "negative port", Profile.GO_INTEROP, _BAD),
]


def _generate() -> Doc:
    groups: list[dict[str, Any]] = []
    any_tests = [_both(t, c, [], None) for t, c in _ANY_VALID]
    any_tests += [_both(t, c, ["Malformed"], _BAD) for t, c in _ANY_INVALID]
    groups.append({"type": "AddressTextTest", "profile": "any", "tests": any_tests})
    for profile in Profile:
        split = _BAD if profile is Profile.GO_INTEROP else None
        tests = [_text_test(t, profile, c, [f], error=split) for t, c, f in _PROFILE_SPLIT]
        groups.append({"type": "AddressTextTest", "profile": profile.value, "tests": tests})
    example = "1:00A3.F291.0004:1000"
    draft_socket = _socket_test(example, Profile.DRAFT, "draft 4.3 example", ["DraftExample"], error=None)
    go_socket = _socket_test(example, Profile.GO_INTEROP, "draft 4.3 example", ["DraftExample"], error=_BAD)
    socket_tests = [_socket_test(t, p, c, error=e) for t, c, p, e in _SOCKET]
    groups.append({"type": "SocketAddressTextTest", "profile": "any", "tests": socket_tests})
    groups.append({"type": "SocketAddressTextTest", "profile": "draft", "tests": [draft_socket]})
    groups.append({"type": "SocketAddressTextTest", "profile": "go-interop", "tests": [go_socket]})
    binary = []
    for addr, comment in ((Addr(0, 1), "registry"), (Addr(1, 0xF2910004), "network 1"),
                          (Addr(0xFFFF, 0xFFFFFFFF), "all ones")):  # fmt: skip
        binary.append({"comment": comment, "binary": addr.to_bytes().hex(), "network": addr.network,
                       "node": addr.node, "canonical": str(addr), "result": "valid"})  # fmt: skip
    for n in (0, 5):
        expect(f"{n} address bytes", partial(Addr.from_bytes, bytes(n)), ErrorCode.TRUNCATED.value)
        binary.append({"comment": f"{n} bytes", "flags": ["Truncated"], "binary": "00" * n, "error": "truncated",
                       "result": "invalid"})  # fmt: skip
    groups.append({"type": "AddressBinaryTest", "profile": "any", "tests": binary})
    return make_doc(
        "PILOT-ADDRESS",
        "address_test_schema.json",
        groups,
        header=[
            "draft 4.1: network u16 || node u32, big-endian (6 bytes).",
            "draft 4.2 text N:XXXX.YYYY.ZZZZ; we write N:NNNN.HHHH.LLLL (Go's form, uppercase hex).",
            "go-interop requires the first hex group to equal N; draft ignores it (errata E-ADDR-1, E-ADDR-2).",
            "Socket addresses split on the last ':'; the port is decimal 0-65535.",
        ],
        notes={
            "DraftExample": {"bugType": "FUNCTIONALITY", "description": "example text of the draft itself"},
            "DraftBroadcast": {"bugType": "FUNCTIONALITY", "description": "the draft's broadcast text form"},
            "GroupMismatch": {"bugType": "EDGE_CASE", "description": "first hex group differs from the network"},
            "Malformed": {"bugType": "MALFORMED_INPUT", "description": "not an address text"},
            "Truncated": {"bugType": "TRUNCATED", "description": "fewer than 6 bytes"},
        },
    )


def _check(tc: int, label: str, fn: Callable[[], dict[str, Any]], t: dict[str, Any]) -> list[str]:
    got, problems = run_vector(t, label, fn)
    if got is None:
        return problems
    return [f"tcId {tc} ({label}): {k} is {v!r}, expected {t.get(k)!r}" for k, v in got.items() if t.get(k) != v]


def _verify(doc: Doc) -> list[str]:
    out: list[str] = []
    for group, t in iter_tests(doc):
        tc = t["tcId"]
        for profile in group_profiles(group):
            label = profile.value
            kind = group["type"]
            if kind == "AddressTextTest":

                def addr_fields(text: str = t["text"], p: Profile = profile) -> dict[str, Any]:
                    a = Addr.parse(text, p)
                    return {"network": a.network, "node": a.node, "binary": a.to_bytes().hex(), "canonical": str(a)}

                out += _check(tc, label, addr_fields, t)
            elif kind == "SocketAddressTextTest":

                def socket_fields(text: str = t["text"], p: Profile = profile) -> dict[str, Any]:
                    s = SocketAddr.parse(text, p)
                    return {"network": s.addr.network, "node": s.addr.node, "port": s.port, "canonical": str(s)}

                out += _check(tc, label, socket_fields, t)
            elif kind == "AddressBinaryTest":

                def binary_fields(raw: str = t["binary"]) -> dict[str, Any]:
                    a = Addr.from_bytes(bytes.fromhex(raw))
                    return {"network": a.network, "node": a.node, "canonical": str(a)}

                out += _check(tc, label, binary_fields, t)
            else:
                out.append(f"tcId {tc}: unknown group type {kind}")
    return out


SUITES = [VectorSuite(FILENAME, _generate, _verify)]
