"""Configuration of the NAT traversal client and beacon server (draft section 9)."""

from __future__ import annotations

from dataclasses import dataclass

from pilot_proto.profile import DEFAULT_PROFILE, Profile

__all__ = ["BeaconConfig", "NatConfig"]


@dataclass(frozen=True)
class NatConfig:
    """Daemon-side knobs.  Defaults are the draft's numbers (9.4) and Go's where the draft is silent.

    Attempt ``k`` (0-based) of either phase waits ``attempt_timeout * attempt_backoff**k`` for an
    authenticated answer before the next one; with the defaults direct sends go out at t = 0, 1, 3 s
    (Go's ``DialDirectRetries`` timing) and relay sends at t = 7, 8, 10 s, failure at 14 s.
    """

    profile: Profile = DEFAULT_PROFILE
    direct_attempts: int = 3  # NAT-030
    relay_attempts: int = 3  # NAT-032
    attempt_timeout: float = 1.0
    attempt_backoff: float = 2.0
    use_punch: bool = True  # send a PunchRequest when dialling (NAT-011)
    punch_packets: int = 3  # PILPs per punch command (Go handlePunchCommand; NAT-015)
    discover_timeout: float = 5.0  # NAT-008 (Go fixedTimeout)
    discover_retries: int = 3
    rediscover_interval: float | None = 25.0  # NAT-009 (GoC beacon keepalive)
    keepalive_interval: float | None = 25.0  # NAT-036 (GoC peer keepalive)
    direct_dead_after: float | None = 75.0  # DIRECT with nothing authenticated heard: dial again (ours)
    relay_probe_interval: float = 60.0  # NAT-035 (GoC RelayProbeInterval)
    max_candidates: int = 4  # NAT-046
    max_peers: int = 4096
    unsolicited_punch_burst: float = 8.0  # NAT-046: punch commands we did not ask for
    unsolicited_punch_rate: float = 1.0  # tokens per second
    pilp_with_sender: bool = True  # draft 8-byte PILP; Go sends the 4-byte magic (E-NAT-1)
    pilp_records_candidate: bool = True  # draft records the PILP source; Go ignores it (E-NAT-1)
    accept_bare_relay: bool = True  # draft delivery = bare frame from the beacon (E-NAT-2)
    skip_unroutable_punch: bool = False  # GoC: no PILPs to private/loopback/link-local targets (E-NAT-5)

    @classmethod
    def for_profile(cls, profile: Profile | str, **overrides: object) -> NatConfig:
        p = Profile.parse(profile)
        base: dict[str, object] = {"profile": p}
        if p is Profile.GO_INTEROP:
            base.update(pilp_with_sender=False, pilp_records_candidate=False, accept_bare_relay=False)
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]


@dataclass(frozen=True)
class BeaconConfig:
    """Beacon-server knobs (GoC values where it has them; NAT-044, NAT-047)."""

    profile: Profile = DEFAULT_PROFILE
    max_nodes: int = 100_000  # GoC maxBeaconNodes
    node_ttl: float = 600.0  # GoC beaconNodeTTL
    reap_interval: float = 60.0
    max_relay_payload: int = 0xFFFF  # NAT-025
    rate_per_source: float = 500.0  # datagrams per second per source IP
    burst_per_source: float = 1000.0
    max_sources: int = 65_536  # size of the rate-limit table (LRU)
    verify_relay_sender: bool = True  # NAT-045: 0x05 sender must be registered at the source

    @classmethod
    def for_profile(cls, profile: Profile | str, **overrides: object) -> BeaconConfig:
        base: dict[str, object] = {"profile": Profile.parse(profile)}
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]
