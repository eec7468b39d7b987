"""Retransmission timeout estimator per RFC 6298 (draft 8.5.1).

SRTT/RTTVAR smoothing with alpha = 1/8, beta = 1/4, RTO = SRTT + max(G, K*RTTVAR),
clamped to [rto_min, rto_max].  Callers apply Karn's rule: only segments that were
never retransmitted give samples.  :meth:`backoff` doubles the RTO after a timeout.
"""

from __future__ import annotations

from pilot_proto.stream.config import StreamConfig

__all__ = ["RttEstimator"]


class RttEstimator:
    __slots__ = ("_alpha", "_beta", "_g", "_k", "_max", "_min", "rto", "rttvar", "samples", "srtt")

    def __init__(self, cfg: StreamConfig) -> None:
        self._alpha = cfg.rto_alpha
        self._beta = cfg.rto_beta
        self._g = cfg.clock_granularity
        self._k = cfg.rto_k
        self._min = cfg.rto_min
        self._max = cfg.rto_max
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = min(max(cfg.rto_initial, self._min), self._max)
        self.samples = 0

    def sample(self, r: float) -> None:
        """Fold one RTT measurement ``r`` (seconds) into the estimate."""
        if r < 0:
            return
        srtt = self.srtt
        if srtt is None:
            srtt = r
            rttvar = r / 2
        else:
            dev = srtt - r
            if dev < 0:
                dev = -dev
            rttvar = (1 - self._beta) * self.rttvar + self._beta * dev
            srtt = (1 - self._alpha) * srtt + self._alpha * r
        self.srtt, self.rttvar = srtt, rttvar
        self.samples += 1
        # RTO = SRTT + max(G, K*RTTVAR), clamped; written out (same floats as min/max) since this runs per ACK
        var = self._k * rttvar
        rto = srtt + (var if var > self._g else self._g)
        if rto < self._min:
            rto = self._min
        elif rto > self._max:
            rto = self._max
        self.rto = rto

    def backoff(self) -> None:
        """Double the RTO after a retransmission timeout (RFC 6298 5.5), capped at the maximum."""
        self.rto = min(self.rto * 2, self._max)
