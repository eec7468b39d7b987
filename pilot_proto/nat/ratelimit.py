"""The NAT layer's rate limits (NAT-044, NAT-046) use the shared token buckets of :mod:`pilot_proto.ratelimit`."""

from __future__ import annotations

from pilot_proto.ratelimit import KeyedLimiter, TokenBucket

__all__ = ["KeyedLimiter", "TokenBucket"]
