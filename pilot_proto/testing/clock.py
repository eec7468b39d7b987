"""A fake monotonic clock for driving sans-IO state machines in tests.

The core never reads a clock (every mutating call takes ``now``); tests and
simulations need one source of ``now`` that only moves when told to.
"""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """Monotonic seconds that advance only through :meth:`advance` / :meth:`advance_to`.

    Calling the clock returns the current time, so it can be passed wherever a
    ``Callable[[], float]`` is expected.
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        if start != start or start in (float("inf"), float("-inf")):
            raise ValueError(f"start time must be finite, got {start!r}")
        self._now = float(start)

    @property
    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (>= 0) and return the new time."""
        if not seconds >= 0.0:
            raise ValueError(f"a monotonic clock cannot go back (advance by {seconds!r})")
        self._now += seconds
        return self._now

    def advance_to(self, when: float) -> float:
        """Move to ``when`` if it is later; a deadline in the past leaves the clock where it is."""
        if when != when or when == float("inf"):
            raise ValueError(f"cannot advance to {when!r}")
        if when > self._now:
            self._now = float(when)
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
