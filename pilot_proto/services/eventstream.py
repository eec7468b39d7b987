"""Event stream, port 1002 (draft 14.3): a pub/sub broker over :class:`~pilot_proto.wire.eventstream.EventBroker`.

The wire format follows the profile (text lines under ``draft``, Go's binary records under
``go-interop``, erratum E-SVC-1).  A publish reaches every other subscriber of its topic or of ``*``.
"""

from __future__ import annotations

from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.services.base import ServiceConn, StreamService
from pilot_proto.wire.eventstream import EventBroker
from pilot_proto.wire.ports import WellKnownPort

__all__ = ["EventStreamService"]


class EventStreamService(StreamService):
    name = "eventstream"

    def __init__(
        self, port: int = WellKnownPort.EVENT_STREAM, *, profile: Profile = DEFAULT_PROFILE, max_pending: int = 1 << 20
    ) -> None:
        super().__init__(port, max_pending=max_pending)
        self.broker: EventBroker[int] = EventBroker(profile)
        self.delivered = 0

    def on_open(self, conn_id: int, now: float) -> None:
        self.broker.open(conn_id)

    def on_data(self, conn_id: int, conn: ServiceConn, data: bytes, now: float) -> None:
        for target, wire in self.broker.receive(conn_id, data):
            self.write(target, wire)
            self.delivered += 1

    def on_end(self, conn_id: int, conn: ServiceConn, now: float) -> None:
        self.broker.close(conn_id)  # no more publishes or subscriptions from it
        self.finish(conn_id)

    def on_closed(self, conn_id: int) -> None:
        self.broker.close(conn_id)
