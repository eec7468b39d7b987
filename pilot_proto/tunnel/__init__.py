"""Tunnel security (draft sections 7, 10, 11, 19): identities, key exchange, PILS sessions, replay protection.

Sans-IO in the one idiom of :mod:`pilot_proto.sansio`: :class:`TunnelEndpoint` takes datagrams and
``now`` and returns nothing; datagrams to send and events are pulled; randomness and keys are injected.
"""

from pilot_proto.tunnel.aead import PilsOpener, PilsSealer, SessionCipher
from pilot_proto.tunnel.config import TunnelConfig
from pilot_proto.tunnel.endpoint import TunnelEndpoint
from pilot_proto.tunnel.events import (
    Event,
    InputRejected,
    KeyEstablished,
    KeyExchangeFailed,
    PacketReceived,
    Rekeyed,
    TunnelEvent,
)
from pilot_proto.tunnel.identity import Identity, NodeIdentity, verify_auth_kex
from pilot_proto.tunnel.replay import ReplayWindow
from pilot_proto.tunnel.secure_channel import SecureChannel

__all__ = [
    "Event",
    "Identity",
    "InputRejected",
    "KeyEstablished",
    "KeyExchangeFailed",
    "NodeIdentity",
    "PacketReceived",
    "PilsOpener",
    "PilsSealer",
    "Rekeyed",
    "ReplayWindow",
    "SecureChannel",
    "SessionCipher",
    "TunnelConfig",
    "TunnelEndpoint",
    "TunnelEvent",
    "verify_auth_kex",
]
