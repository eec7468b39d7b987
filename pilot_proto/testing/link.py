"""An in-memory network link with impairments, driven by caller-supplied time.

:class:`ImpairedLink` carries opaque datagrams (``bytes``, decoded
:class:`~pilot_proto.wire.Packet` objects, anything) between hashable
endpoints.  Each direction ``(src, dst)`` has its own :class:`LinkConfig`:
one-way delay, jitter, loss, reordering, duplication, byte corruption, a
bandwidth cap with a bounded transmit queue.  Nothing here reads a clock or an
unseeded RNG: ``now`` is an argument and the :class:`random.Random` is
injected, so a seed reproduces a run exactly.

Model, per datagram sent at ``now`` on direction ``d``:

1. the transmit queue of ``d`` holds datagrams not yet serialised; if it
   already holds ``queue_limit`` of them the datagram is tail-dropped;
2. serialisation starts at ``max(now, busy_until)`` and takes
   ``size / bandwidth`` seconds (zero when uncapped);
3. with probability ``loss`` the datagram is lost on the wire;
4. otherwise it arrives ``delay + U(-jitter, +jitter)`` (never negative) after
   serialisation ends, plus ``reorder_delay`` with probability ``reorder``;
5. with probability ``duplicate`` a second copy follows with its own delay;
6. with probability ``corrupt`` each delivered copy has one bit flipped.

Deliveries with equal arrival times come out in send order.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Generic, NamedTuple, TypeVar

__all__ = ["Delivery", "ImpairedLink", "LinkConfig", "LinkStats", "flip_random_bit"]

T = TypeVar("T")
E = TypeVar("E", bound=Hashable)
_new_tuple = tuple.__new__


def _probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Impairments of one direction of a link (times in seconds, bandwidth in bytes/second)."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.010
    duplicate: float = 0.0
    corrupt: float = 0.0
    bandwidth: float | None = None
    queue_limit: int | None = None

    def __post_init__(self) -> None:
        for name in ("delay", "jitter", "reorder_delay"):
            _non_negative(name, getattr(self, name))
        for name in ("loss", "reorder", "duplicate", "corrupt"):
            _probability(name, getattr(self, name))
        if self.bandwidth is not None and not (self.bandwidth > 0 and math.isfinite(self.bandwidth)):
            raise ValueError(f"bandwidth must be > 0 bytes/s or None, got {self.bandwidth!r}")
        if self.queue_limit is not None and self.queue_limit < 1:
            raise ValueError(f"queue_limit must be >= 1 datagram or None, got {self.queue_limit!r}")

    @property
    def delay_and_loss_only(self) -> bool:
        """True when a datagram's fate is just "lost with probability ``loss``, else arrives ``delay`` later"."""
        return not (self.jitter or self.reorder or self.duplicate or self.corrupt) and (
            self.bandwidth is None and self.queue_limit is None
        )

    @property
    def lossless(self) -> bool:
        """True when nothing is ever dropped, duplicated or damaged (delays may still reorder)."""
        return self.loss == 0.0 and self.duplicate == 0.0 and self.corrupt == 0.0 and self.queue_limit is None

    def with_(self, **changes: Any) -> LinkConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass(slots=True)
class LinkStats:
    """Counters of what the link did (datagrams unless named ``bytes_*``)."""

    sent: int = 0
    delivered: int = 0
    lost: int = 0
    queue_dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    bytes_sent: int = 0
    bytes_delivered: int = 0

    @property
    def dropped(self) -> int:
        return self.lost + self.queue_dropped


_STAT_NAMES = tuple(f.name for f in fields(LinkStats))


class Delivery(NamedTuple, Generic[T, E]):
    """A datagram arriving at ``dst`` at ``time``."""

    time: float
    src: E
    dst: E
    datagram: T


def flip_random_bit(datagram: Any, rng: random.Random) -> Any:
    """Default corrupter for ``bytes``/``bytearray``: flip one uniformly chosen bit.

    Objects of other types cannot be damaged byte-wise; pass ``corrupter=`` to
    :class:`ImpairedLink` (e.g. encode, flip, keep the bytes) for those.
    """
    if not isinstance(datagram, bytes | bytearray):
        raise TypeError(f"cannot corrupt a {type(datagram).__name__}; give ImpairedLink a corrupter")
    if not datagram:
        return bytes(datagram)
    buf = bytearray(datagram)
    buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _default_size(datagram: Any) -> int:
    try:
        return len(datagram)
    except TypeError:
        return 0


@dataclass(slots=True)
class _Direction:
    config: LinkConfig
    busy_until: float = 0.0
    queue: deque[float] = field(default_factory=deque)  # serialisation end times of queued datagrams
    stats: LinkStats = field(default_factory=LinkStats)
    simple: bool = False  # config.delay_and_loss_only, cached: ImpairedLink.send takes a short path then

    def set_config(self, config: LinkConfig) -> None:
        self.config = config
        self.simple = config.delay_and_loss_only

    def __post_init__(self) -> None:
        self.set_config(self.config)


class ImpairedLink(Generic[T, E]):
    """Datagrams between endpoints with per-direction :class:`LinkConfig` impairments.

    ``size_of`` gives a datagram's size in bytes for the bandwidth cap and the
    byte counters (default ``len``); ``corrupter(datagram, rng)`` returns a
    damaged copy (default :func:`flip_random_bit`).
    """

    def __init__(
        self,
        config: LinkConfig | None = None,
        *,
        rng: random.Random | None = None,
        size_of: Callable[[T], int] = _default_size,
        corrupter: Callable[[T, random.Random], T] = flip_random_bit,
    ) -> None:
        self.default_config = config or LinkConfig()
        self.rng = rng if rng is not None else random.Random(0)
        self.size_of = size_of
        self.corrupter = corrupter
        self._dirs: dict[tuple[E, E], _Direction] = {}
        self._overrides: dict[tuple[E, E], LinkConfig] = {}
        # (arrival, send order, src, dst, datagram, size, direction stats)
        self._heap: list[tuple[float, int, E, E, T, int, LinkStats]] = []
        self._counter = 0

    # -- configuration -----------------------------------------------------
    def configure(self, config: LinkConfig, src: E | None = None, dst: E | None = None) -> None:
        """Set the impairments of direction ``src -> dst``, or of every direction when both are None.

        Datagrams already on the wire keep the fate they were given.
        """
        if (src is None) != (dst is None):
            raise ValueError("give both src and dst, or neither")
        if src is None or dst is None:
            self.default_config = config
            self._overrides.clear()
            for d in self._dirs.values():
                d.set_config(config)
            return
        self._overrides[(src, dst)] = config
        self._direction(src, dst).set_config(config)

    @property
    def stats(self) -> LinkStats:
        """Totals over every direction (a fresh snapshot; each datagram is counted once, in its direction)."""
        total = LinkStats()
        for d in self._dirs.values():
            for name in _STAT_NAMES:
                setattr(total, name, getattr(total, name) + getattr(d.stats, name))
        return total

    def config_for(self, src: E, dst: E) -> LinkConfig:
        return self._overrides.get((src, dst), self.default_config)

    def direction_stats(self, src: E, dst: E) -> LinkStats:
        return self._direction(src, dst).stats

    def _direction(self, src: E, dst: E) -> _Direction:
        key = (src, dst)
        d = self._dirs.get(key)
        if d is None:
            d = self._dirs[key] = _Direction(self.config_for(src, dst))
        return d

    # -- data path -----------------------------------------------------------
    def send(self, src: E, dst: E, datagram: T, now: float) -> bool:
        """Put ``datagram`` on the link at ``now``; False if it was tail-dropped at the queue.

        A datagram lost on the wire still returns True: the sender cannot tell.
        """
        d = self._dirs.get((src, dst)) or self._direction(src, dst)
        cfg = d.config
        size = self.size_of(datagram)
        own = d.stats
        own.sent += 1
        own.bytes_sent += size
        if d.simple:  # the same draws and the same arrival time as the general path below, with fewer tests
            if cfg.loss and self.rng.random() < cfg.loss:
                own.lost += 1
                return True
            self._counter += 1
            heapq.heappush(self._heap, (now + cfg.delay, self._counter, src, dst, datagram, size, own))
            return True
        done = now
        if cfg.bandwidth is not None or cfg.queue_limit is not None:
            queue = d.queue
            while queue and queue[0] <= now:
                queue.popleft()
            if cfg.queue_limit is not None and len(queue) >= cfg.queue_limit:
                own.queue_dropped += 1
                return False
            start = now if d.busy_until < now else d.busy_until
            done = start + (size / cfg.bandwidth if cfg.bandwidth else 0.0)
            d.busy_until = done
            if done > now:
                queue.append(done)
        rng = self.rng
        if cfg.loss and rng.random() < cfg.loss:
            own.lost += 1
            return True
        copies = 1
        if cfg.duplicate and rng.random() < cfg.duplicate:
            copies = 2
            own.duplicated += 1
        for _ in range(copies):
            arrive = done + cfg.delay
            if cfg.jitter:
                arrive = max(done, arrive + rng.uniform(-cfg.jitter, cfg.jitter))
            if cfg.reorder and rng.random() < cfg.reorder:
                arrive += cfg.reorder_delay
                own.reordered += 1
            item = datagram
            item_size = size
            if cfg.corrupt and rng.random() < cfg.corrupt:
                item = self.corrupter(datagram, rng)
                item_size = self.size_of(item)
                own.corrupted += 1
            self._counter += 1
            heapq.heappush(self._heap, (arrive, self._counter, src, dst, item, item_size, own))
        return True

    def next_delivery_time(self) -> float | None:
        """When the earliest datagram on the wire arrives, or None if the wire is empty."""
        return self._heap[0][0] if self._heap else None

    def deliverable(self, now: float) -> list[Delivery[T, E]]:
        """Remove and return every datagram that has arrived by ``now``, in arrival order."""
        heap = self._heap
        out: list[Delivery[T, E]] = []
        if not heap or heap[0][0] > now:
            return out
        pop = heapq.heappop
        append = out.append
        while heap and heap[0][0] <= now:
            arrive, _, src, dst, item, size, own = pop(heap)
            own.delivered += 1
            own.bytes_delivered += size
            # tuple.__new__ skips the NamedTuple constructor's Python-level argument handling (one per datagram)
            append(_new_tuple(Delivery, (arrive, src, dst, item)))
        return out

    @property
    def in_flight(self) -> int:
        """Datagram copies on the wire (sent, not yet delivered, not lost)."""
        return len(self._heap)

    def clear(self) -> int:
        """Drop everything on the wire (a partition); returns how many copies were discarded."""
        n = len(self._heap)
        for entry in self._heap:
            entry[6].lost += 1
        self._heap.clear()
        return n
