"""Congestion control behind a small ABC (draft 8.7).

The connection calls these hooks; an implementation only keeps ``cwnd`` and
``ssthresh`` (bytes).  Two implementations:

* :class:`DraftAIMD` -- the draft text: IW 10 segments, slow start +1 segment
  per ACK (RFC 3465 ABC with limit L), congestion avoidance +1 segment per
  cwnd of acknowledged bytes, ssthresh = max(cwnd/2, 2 segments) on loss,
  cwnd = ssthresh after fast retransmit and 1 segment after an RTO (Tahoe).
* :class:`NewRenoLike` -- the Go reference: unlimited ABC in slow start,
  +max(1, MSS*acked/cwnd) in avoidance, Reno inflation during fast recovery,
  ssthresh floor 1 MSS, cwnd = IW after an RTO (errata E-SES-4, E-SES-5).

Plug in another algorithm with ``StreamConfig(congestion_factory=...)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pilot_proto.stream.config import StreamConfig

__all__ = ["CongestionController", "DraftAIMD", "NewRenoLike", "make_controller"]


class CongestionController(ABC):
    """Hooks called by a connection; sizes in bytes."""

    name = "abstract"

    def __init__(self, cfg: StreamConfig) -> None:
        self.mss = cfg.mss
        self.max_cwnd = cfg.max_cwnd
        self.cwnd = min(cfg.initial_window_segments * cfg.mss, cfg.max_cwnd)
        self.ssthresh = cfg.ssthresh_start
        self.floor = cfg.ssthresh_floor_segments * cfg.mss

    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    @abstractmethod
    def on_ack(self, acked: int, flight: int) -> None:
        """``acked`` new bytes were cumulatively acknowledged outside recovery."""

    @abstractmethod
    def on_fast_retransmit(self, flight: int) -> None:
        """Loss detected by duplicate ACKs / SACK; recovery starts."""

    def on_dupack_in_recovery(self) -> None:  # noqa: B027 - optional hook
        """A further duplicate ACK arrived while in fast recovery."""

    def on_recovery_exit(self) -> None:  # noqa: B027 - optional hook
        """Everything outstanding at loss detection is now acknowledged."""

    @abstractmethod
    def on_rto(self, flight: int) -> None:
        """The retransmission timer expired."""


class DraftAIMD(CongestionController):
    """Draft 8.7 as written (Tahoe-style RTO, ABC)."""

    name = "draft"

    def __init__(self, cfg: StreamConfig) -> None:
        super().__init__(cfg)
        self.abc_limit = cfg.abc_limit_segments * cfg.mss
        self.rto_cwnd = cfg.rto_cwnd_segments * cfg.mss
        self._ca_acc = 0

    def on_ack(self, acked: int, flight: int) -> None:
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, self.abc_limit) if self.abc_limit else acked
            if self.cwnd > self.ssthresh:
                self.cwnd = self.ssthresh
        else:
            self._ca_acc += acked
            if self._ca_acc >= self.cwnd:
                self._ca_acc -= self.cwnd
                self.cwnd += self.mss
        if self.cwnd > self.max_cwnd:
            self.cwnd = self.max_cwnd

    def _decrease(self) -> None:
        self.ssthresh = max(self.cwnd // 2, self.floor)
        self._ca_acc = 0

    def on_fast_retransmit(self, flight: int) -> None:
        self._decrease()
        self.cwnd = self.ssthresh

    def on_rto(self, flight: int) -> None:
        self._decrease()
        self.cwnd = self.rto_cwnd


class NewRenoLike(CongestionController):
    """What the Go reference does (Reno fast recovery with inflation)."""

    name = "newreno"

    def __init__(self, cfg: StreamConfig) -> None:
        super().__init__(cfg)
        self.rto_cwnd = cfg.rto_cwnd_segments * cfg.mss
        self.abc_limit = cfg.abc_limit_segments * cfg.mss

    def on_ack(self, acked: int, flight: int) -> None:
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, self.abc_limit) if self.abc_limit else acked
        else:
            self.cwnd += max(1, self.mss * acked // self.cwnd)
        if self.cwnd > self.max_cwnd:
            self.cwnd = self.max_cwnd

    def on_fast_retransmit(self, flight: int) -> None:
        self.ssthresh = max(self.cwnd // 2, self.floor)
        self.cwnd = min(self.ssthresh + 3 * self.mss, self.max_cwnd)

    def on_dupack_in_recovery(self) -> None:
        self.cwnd = min(self.cwnd + self.mss, self.max_cwnd)

    def on_recovery_exit(self) -> None:
        self.cwnd = self.ssthresh

    def on_rto(self, flight: int) -> None:
        self.ssthresh = max(self.cwnd // 2, self.floor)
        self.cwnd = self.rto_cwnd


def make_controller(cfg: StreamConfig) -> CongestionController:
    if cfg.congestion_factory is not None:
        return cfg.congestion_factory(cfg)
    return NewRenoLike(cfg) if cfg.congestion == "newreno" else DraftAIMD(cfg)
