"""Events the session layer hands to the application (h11-style pull via ``next_event``).

Every event subclasses :class:`pilot_proto.sansio.Event`; a refused input is reported as
:class:`pilot_proto.sansio.InputRejected` (``layer="stream"``), re-exported here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pilot_proto.sansio import Event, InputRejected
from pilot_proto.wire.address import Addr, SocketAddr

__all__ = [
    "CloseReason",
    "Closed",
    "Connected",
    "ConnectionRequested",
    "ControlReceived",
    "DataReceived",
    "DatagramReceived",
    "Event",
    "InputRejected",
    "PingReply",
    "PingRequestAnswered",
    "Reset",
    "StreamEnded",
    "StreamEvent",
    "Writable",
]


class CloseReason(enum.Enum):
    """Why a connection ended (carried by :class:`Closed`)."""

    NORMAL = "normal"  # both FINs exchanged / our FIN acknowledged
    IDLE = "idle"  # 120 s without data (draft 8.12)
    TIMEOUT = "timeout"  # data retransmitted too often (draft 8.5.1)
    CONNECT_TIMEOUT = "connect_timeout"  # SYN / SYN-ACK retries exhausted (draft 8.5.1)
    RESET = "reset"  # peer sent RST
    ABORTED = "aborted"  # local abort() (we sent RST)


@dataclass(frozen=True, slots=True)
class ConnectionRequested(Event):
    """A SYN reached a listening port; the connection is SYN_RECEIVED."""

    conn_id: int
    remote: SocketAddr
    local_port: int


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The handshake completed; the connection is ESTABLISHED."""

    conn_id: int
    remote: SocketAddr
    local_port: int


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """In-order stream bytes.  Popping it frees that much receive window."""

    conn_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded(Event):
    """The peer sent FIN: no more data will arrive."""

    conn_id: int


@dataclass(frozen=True, slots=True)
class Closed(Event):
    """The connection is finished for the application (it may linger in TIME_WAIT)."""

    conn_id: int
    reason: CloseReason


@dataclass(frozen=True, slots=True)
class Reset(Event):
    """The peer reset the connection (or refused the SYN)."""

    conn_id: int


@dataclass(frozen=True, slots=True)
class DatagramReceived(Event):
    """One Datagram (protocol 0x02) packet (draft 6.3)."""

    src: Addr
    src_port: int
    dst_port: int
    data: bytes


@dataclass(frozen=True, slots=True)
class PingReply(Event):
    """Answer to our Control ping (protocol 0x03, port 0)."""

    src: Addr
    seq: int
    payload: bytes
    rtt: float


@dataclass(frozen=True, slots=True)
class PingRequestAnswered(Event):
    """We answered a peer's ping (informational)."""

    src: Addr
    seq: int


@dataclass(frozen=True, slots=True)
class ControlReceived(Event):
    """A Control packet to a port other than 0 (e.g. Go gossip on 1005), left to upper layers."""

    src: Addr
    src_port: int
    dst_port: int
    flags: int
    seq: int
    ack: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Writable(Event):
    """After a short ``send()``, the connection's send buffer has room again: ``free`` bytes (draft 8.10)."""

    conn_id: int
    free: int


#: Every event a :class:`~pilot_proto.stream.endpoint.StreamEndpoint` emits.
StreamEvent = (
    ConnectionRequested
    | Connected
    | DataReceived
    | StreamEnded
    | Closed
    | Reset
    | Writable
    | DatagramReceived
    | PingReply
    | PingRequestAnswered
    | ControlReceived
    | InputRejected
)
