"""Pilot registry: sans-IO state machine, store journal, asyncio server and clients (draft 3.2, 10, 17, 19.3).

* :mod:`~pilot_proto.registry.state` -- :class:`Registry`, the sans-IO core (its rules in ``rules`` and
  ``networks``);
* :mod:`~pilot_proto.registry.store` -- :class:`Store`, the fsynced journal file;
* :mod:`~pilot_proto.registry.server` -- :class:`RegistryServer` and ``pilot-proto registry``;
* :mod:`~pilot_proto.registry.client` -- :class:`RegistryCodec`, :class:`RegistryClient`,
  :class:`AsyncRegistryClient`;
* :mod:`~pilot_proto.registry.challenges` -- the strings signed requests sign.
"""

from pilot_proto.registry.client import AsyncRegistryClient, RegistryClient, RegistryCodec, RegistryError
from pilot_proto.registry.server import RegistryServer
from pilot_proto.registry.state import (
    NodeDeregistered,
    NodeInfo,
    NodeReaped,
    NodeRegistered,
    Registry,
    RegistryConfig,
    Reply,
    TrustChanged,
)
from pilot_proto.registry.store import Store, StoreError

__all__ = [
    "AsyncRegistryClient",
    "NodeDeregistered",
    "NodeInfo",
    "NodeReaped",
    "NodeRegistered",
    "Registry",
    "RegistryClient",
    "RegistryCodec",
    "RegistryConfig",
    "RegistryError",
    "RegistryServer",
    "Reply",
    "Store",
    "StoreError",
    "TrustChanged",
]
