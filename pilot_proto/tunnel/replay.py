"""Sliding-window replay protection for PILS counters (draft 19.9).

The window remembers the highest counter accepted and, in an ``int`` bitmap,
which of the 256 counters at or below it were seen (bit ``i`` = counter
``top - i``).  Checking and recording are separate steps on purpose: a
receiver calls :meth:`ReplayWindow.check` *before* decrypting and
:meth:`ReplayWindow.commit` only *after* the GCM tag and the inner source
check pass, so a forged frame can never move the window (CONS-019).  The Go
reference records first and tries to undo on failure, which leaves a forged
high counter in place (erratum E-REPLAY-1).

A window of 256 covers counters ``top-255 .. top``; anything further behind
is ``TOO_OLD`` (CONS-015).  There is no "nothing seen" sentinel value: a fresh
window accepts counter 0 once and only once (erratum E-OBS-1, GoB replays 0).
"""

from __future__ import annotations

from pilot_proto.errors import ErrorCode

__all__ = ["DEFAULT_WINDOW", "ReplayWindow"]

DEFAULT_WINDOW = 256


class ReplayWindow:
    """Replay state for one receive nonce stream (one key + one sender prefix)."""

    __slots__ = ("bits", "mask", "size", "top")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 1:
            raise ValueError("window size must be at least 1")
        self.size = size
        self.mask = (1 << size) - 1
        #: Highest counter accepted so far; -1 before the first frame.
        self.top = -1
        self.bits = 0

    def check(self, counter: int) -> ErrorCode | None:
        """``None`` if ``counter`` may be accepted, else ``REPLAY`` or ``TOO_OLD``.  Never mutates."""
        top = self.top
        if counter > top:
            return None
        diff = top - counter
        if diff >= self.size:
            return ErrorCode.TOO_OLD
        if (self.bits >> diff) & 1:
            return ErrorCode.REPLAY
        return None

    def commit(self, counter: int) -> None:
        """Record ``counter`` as seen; call only after :meth:`check` passed and the frame authenticated."""
        top = self.top
        if counter > top:
            shift = counter - top
            self.bits = 1 if shift >= self.size else ((self.bits << shift) | 1) & self.mask
            self.top = counter
        else:
            self.bits |= 1 << (top - counter)

    def seen(self, counter: int) -> bool:
        """True if ``counter`` would be refused (already seen or too old)."""
        return self.check(counter) is not None

    def snapshot(self) -> tuple[int, int]:
        """``(top, bits)``: the whole state, for tests that prove it did not change."""
        return (self.top, self.bits)
