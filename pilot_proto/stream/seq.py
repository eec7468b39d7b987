"""RFC 1982 serial-number arithmetic on 32-bit sequence numbers (draft 8.4).

``a`` is *after* ``b`` when ``int32(a - b) > 0``.  Internally the session layer
keeps unbounded "absolute" positions (plain Python ints that never wrap) and
converts at the wire boundary with :func:`unwrap`, so every comparison inside a
connection is a plain integer comparison and the 2^32 wrap is handled once.
"""

from __future__ import annotations

__all__ = ["MASK", "seq_add", "seq_after", "seq_before", "seq_diff", "seq_ge", "seq_le", "unwrap", "wrap"]

MASK = 0xFFFFFFFF
_HALF = 0x80000000
_MOD = 0x100000000


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` in ``[-2^31, 2^31)`` (the int32 of RFC 1982)."""
    return ((a - b + _HALF) & MASK) - _HALF


def seq_after(a: int, b: int) -> bool:
    """``a`` comes strictly after ``b`` (``seqAfter`` of draft 8.4)."""
    return ((a - b + _HALF) & MASK) > _HALF


def seq_before(a: int, b: int) -> bool:
    """``a`` comes strictly before ``b``."""
    return ((a - b + _HALF) & MASK) < _HALF


def seq_ge(a: int, b: int) -> bool:
    return ((a - b + _HALF) & MASK) >= _HALF


def seq_le(a: int, b: int) -> bool:
    return ((a - b + _HALF) & MASK) <= _HALF


def seq_add(a: int, n: int) -> int:
    """``a + n`` modulo 2^32."""
    return (a + n) & MASK


def wrap(pos: int) -> int:
    """Absolute position -> 32-bit wire sequence number."""
    return pos & MASK


def unwrap(seq: int, near: int) -> int:
    """The absolute position closest to ``near`` whose low 32 bits are ``seq``."""
    return near + ((seq - near + _HALF) & MASK) - _HALF
