"""The one sans-IO idiom every Pilot state machine speaks (aioquic and h11 are the models).

Every state machine in the core -- stream endpoint, tunnel endpoint, beacon client and server,
path manager, node -- has the same shape:

* **input** is pushed and returns nothing: ``receive_datagram(data, addr, now)`` (or
  ``receive_packet(packet, now)`` where the input is an already decoded inner packet);
* **output** is pulled: ``datagrams_to_send()`` returns :class:`Datagram` values (or
  ``packets_to_send()`` returns packets), ``next_event()`` returns the next :class:`Event` or
  ``None``;
* **time** is injected: ``get_timer()`` gives the one earliest deadline (``None`` when idle; it may
  be early, never late) and ``handle_timer(now)`` fires whatever is due.

Bad input never raises out of a receive call: it becomes one :class:`InputRejected` event that
carries the whole :class:`~pilot_proto.errors.PilotError` (code, field, rule, draft section,
requirement ID and action hint), and the state machine stays exactly as it was.  Only the
caller's own misuse raises (:class:`~pilot_proto.errors.LocalProtocolError`).

:class:`DatagramEndpoint` and :class:`PacketEndpoint` write the idiom down as
``typing.Protocol`` classes; ``tests/test_sansio_idiom.py`` checks every class against them.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from pilot_proto.errors import Action, ErrorCode, PilotError
from pilot_proto.wire.header import Packet  # at run time too, so the Protocols' hints resolve for the idiom test

__all__ = [
    "Address",
    "Datagram",
    "DatagramEndpoint",
    "Event",
    "InputRejected",
    "PacketEndpoint",
    "drain",
]

#: Underlay address of a datagram as the driver gives it (e.g. ``("127.0.0.1", 9000)``); opaque to the core.
Address = Hashable


class Datagram(NamedTuple):
    """One UDP datagram for the driver to send: ``data`` to underlay address ``addr``."""

    data: bytes
    addr: Address


class Event:
    """Base class of every event any state machine of this package emits (pulled with ``next_event()``)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class InputRejected(Event):
    """An input was refused; nothing changed because of it.

    Attributes:
        error: the full typed error (``error.code``, ``.field``, ``.rule``, ``.section``,
            ``.requirement``, ``.action``).
        layer: which state machine refused it (``"stream"``, ``"tunnel"``, ``"beacon-client"``,
            ``"beacon-server"``, ``"path"``, ``"node"``).
        source: underlay address it came from (``None`` for a decoded packet handed in directly).
        size: its length in bytes.
        peer: the node ID it claimed to come from, when that could be read (unauthenticated).
    """

    error: PilotError
    layer: str
    source: Address | None = None
    size: int = 0
    peer: int | None = None

    @property
    def code(self) -> ErrorCode:
        return self.error.code

    @property
    def action(self) -> Action:
        return self.error.action


@runtime_checkable
class DatagramEndpoint(Protocol):
    """A state machine fed UDP datagrams: tunnel endpoint, beacon client and server, path manager, node."""

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None: ...

    def datagrams_to_send(self) -> list[Datagram]: ...

    def next_event(self) -> Event | None: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


@runtime_checkable
class PacketEndpoint(Protocol):
    """A state machine fed decoded inner packets: the stream endpoint (draft 6, 8)."""

    def receive_packet(self, packet: Packet, now: float) -> None: ...

    def packets_to_send(self) -> list[Packet]: ...

    def next_event(self) -> Event | None: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class _EventSource(Protocol):
    def next_event(self) -> Event | None: ...


def drain(machine: _EventSource) -> list[Event]:
    """Pull every pending event of ``machine`` (a convenience for tests and simple drivers)."""
    out: list[Event] = []
    while (ev := machine.next_event()) is not None:
        out.append(ev)
    return out
