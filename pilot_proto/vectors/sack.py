"""SACK vectors (draft 8.6, wire-notes 1.11, erratum E-SACK-1): ``stream_sack_test.json``.

* ``SackDecodeTest`` -- ``payload`` -> ``blocks`` (``[left, right_exclusive]`` wire values) or ``error``;
  groups per profile because ``draft`` requires the exact length 5 + 8n and ``go-interop`` ignores extra bytes.
* ``SackEncodeTest`` -- ``blocks`` -> ``payload``.
* ``SackClassifyTest`` -- the receiver rule of E-SACK-1: a pure ACK with ``payload`` arrives at a sender with
  initial sequence number ``iss`` whose first unacknowledged / next positions are ``snd_una`` / ``snd_nxt``
  (absolute: 1 = first data byte, wire = iss + position); ``classification`` is ``"sack"`` (with the useful
  absolute ``blocks``) or ``"data"``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pilot_proto.errors import ErrorCode, PilotError
from pilot_proto.profile import Profile
from pilot_proto.stream.config import StreamConfig
from pilot_proto.stream.sack_rule import classify_ack_payload
from pilot_proto.vectors import VectorSuite
from pilot_proto.vectors._format import Doc, ExpectationMismatch, expect, iter_tests, make_doc
from pilot_proto.wire.sack import decode_sack, encode_sack

__all__ = ["SUITES"]

FILENAME = "stream_sack_test.json"

_DECODE: list[tuple[bytes, str, list[str]]] = [
    (encode_sack([(1, 4097)]), "one block", []),
    (encode_sack([(1, 100), (200, 300), (400, 500), (600, 700)]), "four blocks (the maximum)", []),
    (encode_sack([(0xFFFFFF00, 0x00000100)]), "block across the 2^32 wrap", ["Wrap"]),
    (encode_sack([(1, 2)]) + b"\x00", "one trailing byte", ["TrailingBytes"]),
    (encode_sack([(1, 2), (3, 4)])[:13], "count 2 with one block: truncated", ["Truncated"]),
    (b"SACK", "magic only", ["Truncated"]),
    (b"SACK\x00", "count 0", ["BadCount"]),
    (b"SACK\x05" + bytes(40), "count 5", ["BadCount"]),
    (b"Sack\x01" + bytes(8), "wrong magic case", ["BadMagic"]),
    (b"", "empty", ["Truncated"]),
]
_ENCODE = [
    ([(1, 2)], "one block"),
    ([(10, 20), (30, 40), (50, 60)], "three blocks"),
    ([(0xFFFFFFF0, 5)], "wrapping block"),
]
# Stated decode verdicts: the error a case flagged so must give (``TrailingBytes`` only under draft).
_CODE_OF_FLAG = {
    "TrailingBytes": ErrorCode.TRAILING_DATA,
    "Truncated": ErrorCode.TRUNCATED,
    "BadCount": ErrorCode.OUT_OF_RANGE,
    "BadMagic": ErrorCode.BAD_MAGIC,
}
_Outcome = tuple[str, list[list[int]] | None]  # ("sack", useful absolute blocks) or ("data", None)
_STALE: _Outcome = ("sack", [])
# (payload blocks as absolute positions relative to iss, snd_una, snd_nxt, comment, flags,
#  stated outcome under draft, stated outcome under go-interop)  -- erratum E-SACK-1
_CLASSIFY: list[tuple[list[tuple[int, int]] | None, int, int, str, list[str], _Outcome, _Outcome]] = [
    ([(4097, 8193)], 1, 12289, "blocks inside the outstanding window: SACK", [],
     ("sack", [[4097, 8193]]), ("sack", [[4097, 8193]])),
    ([(1, 4097)], 8193, 12289, "stale block below snd_una (reordered old SACK): SACK, ignored", ["Stale"],
     _STALE, _STALE),
    ([(4097, 12289)], 8193, 12289, "block straddling snd_una: trimmed", [],
     ("sack", [[8193, 12289]]), ("sack", [[8193, 12289]])),
    ([(500, 600)], 1, 1, "nothing sent yet: a SACK-shaped payload is user data (draft)", ["LookAlike"],
     ("data", None), _STALE),
    ([(4097, 99999)], 1, 12289, "block past snd_nxt: user data (draft), bogus block ignored (go)", ["LookAlike"],
     ("data", None), _STALE),
    ([(300, 200)], 1, 12289, "left > right: user data (draft), ignored (go)", ["LookAlike"],
     ("data", None), _STALE),
    (None, 1, 12289, "SACK plus a trailing byte: user data (draft), SACK (go)", ["TrailingBytes"],
     ("data", None), ("sack", [[4097, 8193]])),
]  # fmt: skip


def _decode_test(raw: bytes, profile: Profile, comment: str, flags: list[str]) -> dict[str, Any]:
    try:
        blocks = decode_sack(raw, strict=profile is Profile.DRAFT)
    except PilotError as exc:
        return {"comment": comment, "flags": flags, "payload": raw.hex(), "error": exc.code.value,
                "result": "invalid"}  # fmt: skip
    return {"comment": comment, "flags": flags, "payload": raw.hex(), "blocks": [list(b) for b in blocks],
            "result": "valid"}  # fmt: skip


def _classify(profile: Profile, payload: bytes, iss: int, una: int, nxt: int) -> dict[str, Any]:
    cfg = StreamConfig.for_profile(profile)
    got = classify_ack_payload(payload, iss, una, nxt, strict=cfg.strict_sack_length,
                               fallback_to_data=cfg.sack_fallback_to_data)  # fmt: skip
    if got is None:
        return {"classification": "data"}
    return {"classification": "sack", "blocks": [list(b) for b in got[0]]}


def _generate() -> Doc:
    groups: list[dict[str, Any]] = []
    for profile in Profile:
        for raw, comment, flags in _DECODE:
            codes = [_CODE_OF_FLAG[f] for f in flags if f in _CODE_OF_FLAG]
            if profile is Profile.GO_INTEROP and "TrailingBytes" in flags:
                codes = []
            error = codes[0].value if codes else None
            expect(f"{comment} ({profile.value})", partial(decode_sack, raw, strict=profile is Profile.DRAFT), error)
        groups.append({"type": "SackDecodeTest", "profile": profile.value,
                       "tests": [_decode_test(r, profile, c, list(f)) for r, c, f in _DECODE]})  # fmt: skip
    groups.append({"type": "SackEncodeTest", "profile": "any", "tests": [
        {"comment": c, "blocks": [list(b) for b in bl], "payload": encode_sack(bl).hex(), "result": "valid"}
        for bl, c in _ENCODE]})  # fmt: skip
    iss = 0xFFFFF000  # so wire values wrap inside the window
    for profile in Profile:
        tests = []
        for blocks, una, nxt, comment, flags, draft_outcome, go_outcome in _CLASSIFY:
            raw = encode_sack([(iss + 4097, iss + 8193)]) + b"\x00" if blocks is None else encode_sack(
                [((iss + left) & 0xFFFFFFFF, (iss + right) & 0xFFFFFFFF) for left, right in blocks])  # fmt: skip
            test = {"comment": comment, "flags": list(flags), "iss": iss, "snd_una": una, "snd_nxt": nxt,
                    "payload": raw.hex()}  # fmt: skip
            got = _classify(profile, raw, iss, una, nxt)
            stated = draft_outcome if profile is Profile.DRAFT else go_outcome
            if (got["classification"], got.get("blocks")) != stated:
                raise ExpectationMismatch(f"SACK classification {comment!r} ({profile.value}): {got}, stated {stated}")
            test.update(got)
            test["result"] = "valid"
            tests.append(test)
        groups.append({"type": "SackClassifyTest", "profile": profile.value, "tests": tests})
    return make_doc(
        "PILOT-STREAM-SACK",
        "stream_sack_test_schema.json",
        groups,
        header=[
            "SACK payload (Go layout): 'SACK' || count u8 (1..4) || count x (left u32 BE, right u32 BE exclusive).",
            "draft profile: exact length 5 + 8*count; go-interop: extra bytes ignored (erratum E-SACK-1).",
            "Classification (draft): SACK only if every block lies in sent space 1..snd_nxt; otherwise user data.",
            "Senders never emit a data segment starting with 'SACK' (the first byte goes alone).",
        ],
        notes={
            "Wrap": {"bugType": "EDGE_CASE", "description": "sequence numbers across 2^32"},
            "TrailingBytes": {"bugType": "EDGE_CASE", "description": "bytes after the last block"},
            "Truncated": {"bugType": "TRUNCATED", "description": "fewer bytes than the count needs"},
            "BadCount": {"bugType": "MALFORMED_INPUT", "description": "count outside 1..4"},
            "BadMagic": {"bugType": "MALFORMED_INPUT", "description": "not the SACK magic"},
            "Stale": {"bugType": "EDGE_CASE", "description": "SACK overtaken by the cumulative ACK"},
            "LookAlike": {"bugType": "FUNCTIONALITY", "description": "user data shaped like a SACK (E-SACK-1)"},
        },
    )


def _verify(doc: Doc) -> list[str]:
    out: list[str] = []
    for group, t in iter_tests(doc):
        tc, kind, name = t["tcId"], group["type"], group.get("profile", "any")
        profile = Profile.DRAFT if name == "any" else Profile.parse(name)
        if kind == "SackDecodeTest":
            got = _decode_test(bytes.fromhex(t["payload"]), profile, "", [])
            for key in ("result", "blocks", "error"):
                if got.get(key) != t.get(key):
                    out.append(f"tcId {tc} ({name}): {key} is {got.get(key)!r}, expected {t.get(key)!r}")
        elif kind == "SackEncodeTest":
            raw = encode_sack([(b[0], b[1]) for b in t["blocks"]]).hex()
            if raw != t["payload"]:
                out.append(f"tcId {tc}: encoded {raw}, expected {t['payload']}")
        elif kind == "SackClassifyTest":
            got = _classify(profile, bytes.fromhex(t["payload"]), t["iss"], t["snd_una"], t["snd_nxt"])
            for key in ("classification", "blocks"):
                if got.get(key) != t.get(key):
                    out.append(f"tcId {tc} ({name}): {key} is {got.get(key)!r}, expected {t.get(key)!r}")
        else:
            out.append(f"tcId {tc}: unknown group type {kind}")
    return out


SUITES = [VectorSuite(FILENAME, _generate, _verify)]
