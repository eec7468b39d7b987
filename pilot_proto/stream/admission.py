"""Admission control for new connections: per-source and node-wide SYN rate limits (draft 10.8).

Token buckets refilled continuously from the injected ``now`` (no clock is read).  A SYN is judged
by its source's bucket first and only then by the node-wide one, so SYNs a flooding source is
refused never spend the node-wide budget: one source's flood cannot starve another source
(the Go reference checks the global bucket first, see erratum E-STR-1).  The per-source table is
bounded; when full, the least recently seen source is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from pilot_proto.ratelimit import TokenBucket

__all__ = ["SynAdmission", "TokenBucket"]


class SynAdmission:
    """Decides whether a SYN may create a connection; ``None`` rates disable that limit."""

    __slots__ = ("_global", "_max_sources", "_source_burst", "_source_rate", "_sources")

    def __init__(
        self,
        source_rate: float | None,
        source_burst: float,
        global_rate: float | None,
        global_burst: float,
        max_sources: int,
    ) -> None:
        self._source_rate = source_rate
        self._source_burst = source_burst
        self._global = None if global_rate is None else TokenBucket(global_rate, global_burst, 0.0)
        self._max_sources = max_sources
        self._sources: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    @property
    def tracked_sources(self) -> int:
        return len(self._sources)

    def admit(self, source: Hashable, now: float) -> str | None:
        """``None`` to admit, else the rejection reason (``syn_rate_source`` / ``syn_rate_global``)."""
        rate = self._source_rate
        if rate is not None:
            sources = self._sources
            bucket = sources.get(source)
            if bucket is None:
                while len(sources) >= self._max_sources:
                    sources.popitem(last=False)
                bucket = sources[source] = TokenBucket(rate, self._source_burst, now)
            else:
                sources.move_to_end(source)
            if not bucket.take(now):
                return "syn_rate_source"
        g = self._global
        if g is not None and not g.take(now):
            return "syn_rate_global"
        return None
