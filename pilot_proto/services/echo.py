"""Echo, port 7 (draft 14.1): every byte received is written back; the peer's FIN is answered with ours."""

from __future__ import annotations

from pilot_proto.services.base import ServiceConn, StreamService
from pilot_proto.wire.ports import WellKnownPort

__all__ = ["EchoService"]


class EchoService(StreamService):
    """Reflects data; closes after the peer's FIN once everything received has been echoed."""

    name = "echo"

    def __init__(self, port: int = WellKnownPort.ECHO, **kwargs: int) -> None:
        super().__init__(port, **kwargs)
        self.echoed = 0

    def on_data(self, conn_id: int, conn: ServiceConn, data: bytes, now: float) -> None:
        conn.out += data
        self.echoed += len(data)
