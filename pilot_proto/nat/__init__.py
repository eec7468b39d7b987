"""NAT traversal (draft section 9): beacon client and server, punching, relay, path selection.

* :class:`~pilot_proto.nat.path.PathManager` -- daemon side: discovery, the 9.4 strategy, wrapping
  frames for the chosen path and unwrapping relay deliveries.
* :class:`~pilot_proto.nat.beacon_server.BeaconServer` -- the beacon.
* :mod:`pilot_proto.testing.nat` -- NAT simulator that proves the draft's claims.
"""

from pilot_proto.nat.beacon_client import BeaconClient
from pilot_proto.nat.beacon_server import BeaconServer
from pilot_proto.nat.config import BeaconConfig, NatConfig
from pilot_proto.nat.events import (
    Datagram,
    DiscoveryFailed,
    EndpointDiscovered,
    FrameReceived,
    NatEvent,
    PathDirect,
    PathRelayed,
    PeerUnreachable,
)
from pilot_proto.nat.path import PathManager, PathState, PeerPath

__all__ = [
    "BeaconClient",
    "BeaconConfig",
    "BeaconServer",
    "Datagram",
    "DiscoveryFailed",
    "EndpointDiscovered",
    "FrameReceived",
    "NatConfig",
    "NatEvent",
    "PathDirect",
    "PathManager",
    "PathRelayed",
    "PathState",
    "PeerPath",
    "PeerUnreachable",
]
