"""Admission control for inbound key exchanges (issue 9; draft 10.8 asks for rate limits, not their numbers).

Every X25519 operation an inbound PILK/PILA would cost is paid for with a token before any crypto
runs: one bucket per source address (a bounded LRU table) and one global bucket per class of
sender -- *known* senders (configured peers and peers with a live session) and *unknown* ones -- so
a flood of spoofed first contacts can exhaust only the unknown budget and never the known one.
Sans-IO: time is the caller's ``now``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from pilot_proto.ratelimit import TokenBucket as Bucket

__all__ = ["Bucket", "KexAdmission"]


class KexAdmission:
    """Budgets for inbound key-exchange work; :meth:`admit` says whether one more X25519 operation may run."""

    def __init__(
        self,
        *,
        per_source_rate: float,
        per_source_burst: float,
        known_rate: float,
        unknown_rate: float,
        max_sources: int,
    ) -> None:
        self.per_source_rate, self.per_source_burst = per_source_rate, per_source_burst
        self.max_sources = max_sources
        self._sources: OrderedDict[Hashable, Bucket] = OrderedDict()
        self._known = Bucket(known_rate, known_rate, 0.0)
        self._unknown = Bucket(unknown_rate, unknown_rate, 0.0)

    def __len__(self) -> int:
        return len(self._sources)

    def admit(self, source: Hashable, known: bool, now: float) -> str | None:
        """``None`` and the tokens are spent, or the name of the exhausted budget (nothing spent)."""
        bucket = self._sources.get(source)
        if bucket is None:
            bucket = Bucket(self.per_source_rate, self.per_source_burst, now)
        glob = self._known if known else self._unknown
        if not bucket.available(now):
            verdict: str | None = "per-source"
        elif not glob.available(now):
            verdict = "known-peers" if known else "unknown-peers"
        else:
            bucket.spend()
            glob.spend()
            verdict = None
        if source in self._sources:
            self._sources.move_to_end(source)
        elif verdict is None:  # a refused source is not remembered: a spoofed flood cannot churn the table
            self._sources[source] = bucket
            if len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
        return verdict
