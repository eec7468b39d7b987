"""A thin asyncio UDP driver for the sans-IO :class:`~pilot_proto.nat.BeaconServer`.

The only I/O around the state machine: a datagram endpoint, the loop's
monotonic clock for ``now`` and one timer for reaping.  Usage::

    beacon = await BeaconDriver.start(("127.0.0.1", 0))
    ...  # beacon.address is the bound (host, port)
    beacon.close()
"""

from __future__ import annotations

import asyncio
from typing import cast

from pilot_proto.drivers._socket import allow_fragmentation
from pilot_proto.nat.beacon_server import BeaconServer
from pilot_proto.nat.config import BeaconConfig
from pilot_proto.wire.beacon import Endpoint

__all__ = ["BeaconDriver"]


class BeaconDriver(asyncio.DatagramProtocol):
    """Runs one :class:`BeaconServer` on a UDP socket."""

    def __init__(self, server: BeaconServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    async def start(cls, local: tuple[str, int], config: BeaconConfig | None = None) -> BeaconDriver:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(lambda: cls(BeaconServer(config, loop.time())), local_addr=local)
        return proto

    @property
    def address(self) -> Endpoint:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return Endpoint(host, port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            allow_fragmentation(sock)  # draft 13.3 (MTU-008): relayed full-MSS frames may need fragmenting
        self._arm()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        loop = asyncio.get_running_loop()
        self.server.receive_datagram(data, Endpoint(str(addr[0]), int(addr[1])), loop.time())
        self._flush()

    def _flush(self) -> None:
        if self.transport is None:
            return
        for dgram in self.server.datagrams_to_send():
            self.transport.sendto(dgram.data, (dgram.dest.host, dgram.dest.port))

    def _arm(self) -> None:
        deadline = self.server.get_timer()
        if deadline is not None and self.transport is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.server.handle_timer(asyncio.get_running_loop().time())
        self._flush()
        self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()
            self.transport = None
