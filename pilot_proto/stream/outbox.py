"""The narrow channel from connections to their endpoint's outputs (draft 8).

A :class:`~pilot_proto.stream.connection.Connection` never sees its endpoint: it appends packets
and events to an :class:`Outbox` the endpoint owns and drains, and calls back the few
lifecycle hooks of :class:`~pilot_proto.stream.connection.ConnectionHost`.  The outbox also
carries what connections share: the tracer and the endpoint-wide out-of-order byte budget.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from pilot_proto.sansio import Event
from pilot_proto.wire.address import Addr
from pilot_proto.wire.header import Packet

__all__ = ["Outbox", "Tracer"]

Tracer = Callable[[dict[str, Any]], None]


class Outbox:
    """Outgoing packets and events of one endpoint, plus state its connections share."""

    __slots__ = ("coalesce", "events", "local_addr", "ooo_limit", "ooo_used", "packets", "rx_event", "rx_held",
                 "rx_parts", "tracer")  # fmt: skip

    def __init__(self, local_addr: Addr, tracer: Tracer | None, ooo_limit: int | None, coalesce: bool = False) -> None:
        self.local_addr = local_addr
        self.packets: list[Packet] = []  # drained in place by StreamEndpoint.packets_to_send
        self.events: deque[Event] = deque()
        self.tracer = tracer
        self.ooo_limit = ooo_limit  # bytes held out of order across all connections (None: unbounded)
        self.ooo_used = 0
        #: ``StreamConfig.coalesce_received``: the newest ``DataReceived`` not yet popped (``rx_event``) takes the
        #: next in-order bytes of its connection while it is the last event queued; ``rx_parts`` (when not None)
        #: are then all its bytes, joined once, when it is popped.  A newer ``DataReceived`` that takes over (another
        #: connection's bytes, or this one's after another event) moves the old one and its parts to ``rx_held``
        #: (queue order), so each is still joined and its parts still free the window one by one when popped.
        self.coalesce = coalesce
        self.rx_event: Event | None = None
        self.rx_parts: list[bytes] | None = None
        self.rx_held: deque[tuple[Event, list[bytes]]] = deque()
