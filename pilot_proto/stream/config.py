"""Every constant and timer of the session layer, with draft and go-interop defaults (draft 8, 12).

All times are seconds, all sizes bytes unless the name says ``segments``.
``StreamConfig.for_profile(profile, **overrides)`` is the only constructor
callers need; overrides are validated.  Each profile difference cites its
erratum in ``spec/errata.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pilot_proto.profile import DEFAULT_PROFILE, Profile

if TYPE_CHECKING:
    from pilot_proto.stream.congestion import CongestionController

__all__ = ["StreamConfig"]


@dataclass(frozen=True, slots=True)
class StreamConfig:
    profile: Profile = DEFAULT_PROFILE
    # -- segmentation / windows (8.7, 8.8, 8.10, 13.3) --------------------------
    mss: int = 4096
    nodelay: bool = False
    recv_buf_segments: int = 512  # receive buffer; the Window field counts its free segments
    max_ooo_segments: int | None = None  # extra cap on buffered out-of-order segments (None: window only)
    zero_window_means_unlimited: bool = False  # E-SES-3
    # -- congestion control (8.7) ---------------------------------------------
    congestion: str = "draft"  # "draft" (DraftAIMD) or "newreno" (NewRenoLike); or congestion_factory
    congestion_factory: Callable[[StreamConfig], CongestionController] | None = None
    initial_window_segments: int = 10
    max_cwnd: int = 1 << 20
    initial_ssthresh: int | None = None  # None: max_cwnd
    ssthresh_floor_segments: int = 2  # E-SES-4
    rto_cwnd_segments: int = 1  # cwnd after an RTO, E-SES-5
    abc_limit_segments: int = 1  # slow-start growth cap per ACK (RFC 3465 L); 0 = unlimited
    dupack_threshold: int = 3
    sack_acks_count_as_dup: bool = True  # E-SES-6
    # -- RTO (8.5.1, RFC 6298) ------------------------------------------------
    rto_initial: float = 1.0
    rto_min: float = 0.2
    rto_max: float = 10.0
    rto_alpha: float = 0.125
    rto_beta: float = 0.25
    rto_k: float = 4.0
    clock_granularity: float = 0.01
    max_retransmits: int = 8  # E-SES-7
    syn_schedule: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 8.0, 8.0)  # wait after each SYN sent; E-SES-8
    # -- SACK (8.6) -----------------------------------------------------------
    max_sack_blocks: int = 4
    strict_sack_length: bool = True  # E-SACK-1: payload length must be exactly 5 + 8n
    sack_fallback_to_data: bool = True  # E-SACK-1: a SACK-looking payload naming nothing we sent is data
    split_sack_lookalike: bool = True  # E-SACK-1: never send a data segment that starts with "SACK"
    # -- timers (8.8.1, 8.9, 8.11, 8.12, 8.13) ----------------------------------
    delayed_ack_segments: int = 2
    delayed_ack_timeout: float = 0.04
    nagle_timeout: float = 0.04
    persist_initial: float = 0.5
    persist_max: float = 30.0
    zero_window_probe_bytes: int = 1  # E-SES-9 (Go probes with an empty ACK)
    keepalive_interval: float = 30.0
    idle_timeout: float = 120.0
    time_wait: float = 10.0
    time_wait_holds_port: bool = True  # E-SES-10
    # -- handshake / teardown / RST / version (8.2, 8.3, 12) ---------------------
    fin_has_ack: bool = True  # E-SES-2 (Go sends FIN without the ACK bit)
    auto_close_on_peer_fin: bool = True  # answer a peer FIN with our own FIN once our data is sent
    # -- events for the application (not on the wire) --------------------------
    #: In-order bytes of one connection that arrive while its ``DataReceived`` is the newest event not yet
    #: popped join that event (one event per batch, not per segment); the window is freed as for one event per
    #: segment.  Off: one ``DataReceived`` per segment (what the stream-scenario vectors record).
    coalesce_received: bool = False
    rst_requires_in_window: bool = True  # E-SES-11
    rst_zero_fields: bool = False  # E-SES-11: Go's RST carries seq=0, ack=0
    rst_on_bad_version_syn: bool = True  # E-VER-1
    # -- limits / ports / admission (8.1, 10.8; every bound is listed in spec/bounds.md) ---------------
    max_connections: int = 4096
    max_connections_per_port: int = 1024
    max_connections_per_peer: int = 256  # a peer (virtual address) holds at most this many connections
    syn_rate_per_source: float | None = 10.0  # SYNs/s one source may open (Go: 10); None: no limit
    syn_burst_per_source: int = 10
    syn_rate_global: float | None = 100.0  # SYNs/s the node accepts in all (Go: 100); None: no limit
    syn_burst_global: int = 100
    max_syn_sources: int = 4096  # sources the per-source limiter remembers (least recently seen forgotten)
    send_buffer_bytes: int = 4 << 20  # written-but-unacknowledged bytes per connection; send() takes no more
    max_ooo_bytes_total: int | None = 16 << 20  # out-of-order bytes held across all connections
    ephemeral_start: int = 49152
    ephemeral_end: int = 65535

    def __post_init__(self) -> None:
        if not 1 <= self.mss <= 0xFFFF:
            raise ValueError(f"mss must be 1..65535, got {self.mss}")
        if not 1 <= self.recv_buf_segments <= 0xFFFF:
            raise ValueError("recv_buf_segments must be 1..65535 (the Window field is u16)")
        if not self.syn_schedule or min(self.syn_schedule) <= 0:
            raise ValueError("syn_schedule needs at least one positive wait")
        if self.rto_min <= 0 or self.rto_max < self.rto_min:
            raise ValueError("need 0 < rto_min <= rto_max")
        if self.max_retransmits < 0 or self.dupack_threshold < 1 or self.delayed_ack_segments < 1:
            raise ValueError("max_retransmits >= 0, dupack_threshold >= 1, delayed_ack_segments >= 1")
        if not 1 <= self.max_sack_blocks <= 4:
            raise ValueError("max_sack_blocks must be 1..4 (the SACK count byte allows 1..4)")
        if self.congestion not in ("draft", "newreno") and self.congestion_factory is None:
            raise ValueError(f"unknown congestion algorithm {self.congestion!r}")
        if self.send_buffer_bytes < 1 or self.max_connections_per_peer < 1 or self.max_syn_sources < 1:
            raise ValueError("send_buffer_bytes, max_connections_per_peer and max_syn_sources must be >= 1")
        if self.initial_window_segments < 1 or self.max_cwnd < self.mss:
            raise ValueError("initial window must be >= 1 segment and max_cwnd >= mss")

    @property
    def recv_buf_bytes(self) -> int:
        return self.recv_buf_segments * self.mss

    @property
    def ssthresh_start(self) -> int:
        return self.max_cwnd if self.initial_ssthresh is None else self.initial_ssthresh

    def replace(self, **changes: Any) -> StreamConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def for_profile(cls, profile: Profile | str = DEFAULT_PROFILE, **overrides: Any) -> StreamConfig:
        """Draft values for ``draft``; what the Go reference (GoB) does for ``go-interop``."""
        profile = Profile.parse(profile)
        base: dict[str, Any] = {"profile": profile}
        if profile is Profile.GO_INTEROP:
            base.update(
                zero_window_means_unlimited=True,
                congestion="newreno",
                initial_ssthresh=(1 << 20) // 2,
                ssthresh_floor_segments=1,
                rto_cwnd_segments=10,
                abc_limit_segments=0,
                sack_acks_count_as_dup=False,
                max_retransmits=7,
                syn_schedule=(1.0, 2.0, 4.0, 1.0, 2.0, 4.0, 8.0),
                strict_sack_length=False,
                sack_fallback_to_data=False,
                zero_window_probe_bytes=0,
                max_ooo_segments=128,
                time_wait_holds_port=False,
                fin_has_ack=False,
                rst_requires_in_window=False,
                rst_zero_fields=True,
                rst_on_bad_version_syn=False,
            )
        base.update(overrides)
        return cls(**base)
