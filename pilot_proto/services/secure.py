"""The port-443 secure channel as a service (draft 10.5, 11.4): X25519 + HKDF + AES-GCM records per connection.

Each connection gets a server-side :class:`~pilot_proto.tunnel.secure_channel.SecureChannel`.  Every
decrypted message goes to ``handler(conn_id, plaintext)``; whatever it returns is sealed and sent
back (the default handler echoes, which makes port 443 a secure echo for tests and tools).  A record
that fails to verify resets the connection.
"""

from __future__ import annotations

from collections.abc import Callable

from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.services.base import ServiceConn, StreamService
from pilot_proto.tunnel.secure_channel import SecureChannel
from pilot_proto.wire.ports import WellKnownPort
from pilot_proto.wire.secure import Role

__all__ = ["SecureService"]

Handler = Callable[[int, bytes], bytes | None]


def _echo(conn_id: int, data: bytes) -> bytes:
    return data


class SecureService(StreamService):
    name = "secure"

    def __init__(
        self,
        rng: Callable[[int], bytes],
        port: int = WellKnownPort.SECURE,
        *,
        profile: Profile = DEFAULT_PROFILE,
        handler: Handler = _echo,
        max_pending: int = 1 << 20,
    ) -> None:
        super().__init__(port, max_pending=max_pending)
        self._rng = rng
        self.profile = profile
        self.handler = handler
        self.channels: dict[int, SecureChannel] = {}
        self.messages = 0

    def on_open(self, conn_id: int, now: float) -> None:
        self.channels[conn_id] = SecureChannel(Role.SERVER, self._rng, self.profile)

    def on_data(self, conn_id: int, conn: ServiceConn, data: bytes, now: float) -> None:
        channel = self.channels[conn_id]
        plaintexts = channel.receive_data(data)
        conn.out += channel.data_to_send()  # our X25519 key right after the client's
        for plain in plaintexts:
            self.messages += 1
            reply = self.handler(conn_id, plain)
            if reply:
                channel.send(reply)
        conn.out += channel.data_to_send()

    def on_closed(self, conn_id: int) -> None:
        self.channels.pop(conn_id, None)
