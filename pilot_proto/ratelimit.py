"""Token buckets for every layer's rate limits (draft 10.8; NAT-044, NAT-046; issue 9 admission control).

One implementation serves the stream layer's SYN admission, the tunnel's key-exchange admission and
the NAT layer's beacon limits.  Sans-IO: time is the caller's ``now``; nothing is read from a clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["KeyedLimiter", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up (full at ``now``).

    :meth:`take` spends one token if there is one.  :meth:`available` and :meth:`spend` split that in
    two, for a caller that must check several buckets before it spends from any of them.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def available(self, now: float) -> bool:
        """Refill up to ``now``; is there a whole token?"""
        if now > self.stamp:
            t = self.tokens + (now - self.stamp) * self.rate
            self.tokens = t if t < self.burst else self.burst
            self.stamp = now
        return self.tokens >= 1.0

    def spend(self) -> None:
        """Spend one token (after :meth:`available` said there is one)."""
        self.tokens -= 1.0

    def take(self, now: float) -> bool:
        if self.available(now):
            self.tokens -= 1.0
            return True
        return False


class KeyedLimiter:
    """One bucket per key; at most ``max_keys`` buckets, least recently used evicted first.

    An evicted key comes back with a full bucket, so the table bound trades a little precision for
    bounded memory under a flood of distinct sources.
    """

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: Hashable, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)
