"""NAT traversal (draft section 9): beacon client and server, punching, relay, path selection.

Every class here speaks the one idiom of :mod:`pilot_proto.sansio` (``receive_datagram`` /
``datagrams_to_send`` / ``next_event`` / ``get_timer`` / ``handle_timer``):

* :class:`~pilot_proto.nat.path.PathManager` -- daemon side: discovery, the 9.4 strategy (driven
  by the :data:`~pilot_proto.nat.path.TRANSITIONS` table), wrapping frames for the chosen path and
  unwrapping relay deliveries.
* :class:`~pilot_proto.nat.beacon_client.BeaconClient` -- discovery and beacon message filtering
  (owned by a path manager, usable alone).
* :class:`~pilot_proto.nat.beacon_server.BeaconServer` -- the beacon.
* :class:`~pilot_proto.nat.node_paths.NatNode` -- a :class:`~pilot_proto.node.Node` and a path
  manager on one socket: the node's peers are reached by the 9.4 strategy.
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
    InputRejected,
    NatEvent,
    NodeRegistered,
    PathDirect,
    PathRelayed,
    PeerUnreachable,
    PunchCommanded,
    PunchCoordinated,
    RelayDelivered,
)
from pilot_proto.nat.node_paths import NatNode, PeerRoute
from pilot_proto.nat.path import (
    TRANSITIONS,
    PathInput,
    PathManager,
    PathState,
    PeerPath,
    Transition,
    strategy_duration,
)

__all__ = [
    "TRANSITIONS",
    "BeaconClient",
    "BeaconConfig",
    "BeaconServer",
    "Datagram",
    "DiscoveryFailed",
    "EndpointDiscovered",
    "FrameReceived",
    "InputRejected",
    "NatConfig",
    "NatEvent",
    "NatNode",
    "NodeRegistered",
    "PathDirect",
    "PathInput",
    "PathManager",
    "PathRelayed",
    "PathState",
    "PeerPath",
    "PeerRoute",
    "PeerUnreachable",
    "PunchCommanded",
    "PunchCoordinated",
    "RelayDelivered",
    "Transition",
    "strategy_duration",
]
