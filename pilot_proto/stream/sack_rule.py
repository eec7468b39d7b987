"""Is an ACK payload a SACK or user data?  The receiver half of erratum E-SACK-1 (draft 8.6).

A pure function so the rule can be tested and published as vectors on its own.
"""

from __future__ import annotations

from pilot_proto.errors import DecodeError
from pilot_proto.stream.seq import MASK
from pilot_proto.wire.sack import SACK_MAGIC, decode_sack

__all__ = ["classify_ack_payload"]

_HALF = 0x80000000


def classify_ack_payload(
    payload: bytes, iss: int, snd_una: int, snd_nxt: int, *, strict: bool, fallback_to_data: bool
) -> tuple[list[tuple[int, int]], int] | None:
    """Classify the payload of a pure ACK (flags == ACK) received by a sender in state (``snd_una``, ``snd_nxt``).

    Positions are absolute (1 = first data byte; the wire value is ``iss + position``).  Returns ``None`` when
    the payload is user data, else ``(useful_blocks, bogus_count)`` where ``useful_blocks`` are absolute
    ``(left, right_exclusive)`` ranges trimmed to ``snd_una..snd_nxt``.

    * not a decodable SACK (``strict``: exact length 5 + 8n) -> data;
    * a block outside the sent space ``1..snd_nxt`` is bogus; with ``fallback_to_data`` any bogus block makes
      the payload data (we never sent those bytes, so nobody can be SACKing them);
    * blocks wholly below ``snd_una`` are stale (a reordered old SACK): ignored, not data.
    """
    if payload[:4] != SACK_MAGIC:
        return None
    try:
        raw = decode_sack(payload, strict=strict)
    except DecodeError:
        return None
    ref = (iss + snd_una) & MASK
    good: list[tuple[int, int]] = []
    bogus = 0
    for left, right in raw:
        ls = snd_una + (((left - ref + _HALF) & MASK) - _HALF)
        rs = snd_una + (((right - ref + _HALF) & MASK) - _HALF)
        if not 1 <= ls < rs <= snd_nxt:
            bogus += 1
        elif rs > snd_una:
            good.append((max(ls, snd_una), rs))
    if bogus and fallback_to_data:
        return None
    return good, bogus
