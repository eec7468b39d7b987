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
    """Replay state for one receive nonce stream (one key + one sender prefix).

    Stored lazily so the common case -- the next counter in order -- costs one comparison and one
    store: every counter in ``(_base, top]`` has been accepted (an in-order *run*), and ``_bits``
    records the counters at or below ``_base`` (bit ``i`` = counter ``_base - i``).  The run is folded
    into the bitmap only when a counter arrives out of order.  :meth:`snapshot` shows the
    canonical ``(top, bits)`` either way.
    """

    __slots__ = ("_base", "_bits", "mask", "size", "top")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 1:
            raise ValueError("window size must be at least 1")
        self.size = size
        self.mask = (1 << size) - 1
        #: Highest counter accepted so far; -1 before the first frame.
        self.top = -1
        self._base = -1
        self._bits = 0

    @property
    def bits(self) -> int:
        """Bitmap of the window relative to ``top`` (bit ``i`` = counter ``top - i`` was accepted)."""
        run = self.top - self._base
        if run == 0:
            return self._bits
        if run >= self.size:
            return self.mask
        return ((self._bits << run) | ((1 << run) - 1)) & self.mask

    def check(self, counter: int) -> ErrorCode | None:
        """``None`` if ``counter`` may be accepted, else ``REPLAY`` or ``TOO_OLD``.  Never mutates."""
        top = self.top
        if counter > top:
            return None
        if top - counter >= self.size:
            return ErrorCode.TOO_OLD
        if counter > self._base or (self._bits >> (self._base - counter)) & 1:
            return ErrorCode.REPLAY
        return None

    def commit(self, counter: int) -> None:
        """Record ``counter`` as seen; call only after :meth:`check` passed and the frame authenticated."""
        top = self.top
        if counter == top + 1:  # extends the in-order run
            self.top = counter
            return
        bits = self.bits
        if counter > top:
            shift = counter - top
            bits = 1 if shift >= self.size else ((bits << shift) | 1) & self.mask
            self.top = counter
        else:
            bits |= 1 << (top - counter)
        self._bits, self._base = bits, self.top

    def seen(self, counter: int) -> bool:
        """True if ``counter`` would be refused (already seen or too old)."""
        return self.check(counter) is not None

    def snapshot(self) -> tuple[int, int]:
        """``(top, bits)``: the whole state, for tests that prove it did not change."""
        return (self.top, self.bits)
