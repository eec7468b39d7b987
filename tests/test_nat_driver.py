"""The beacon for real: BeaconDriver on 127.0.0.1 with two real UDP sockets running the path manager.

Discovery, a punch and direct traffic, then a dial to a dead endpoint that falls back to relay
through the real beacon.  Loopback only, bounded by ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import cast

import pytest

from pilot_proto.drivers.beacon import BeaconDriver
from pilot_proto.nat import BeaconConfig, EndpointDiscovered, NatConfig, PathState
from pilot_proto.profile import Profile
from pilot_proto.sansio import Event
from pilot_proto.testing.nat import SimHost
from pilot_proto.wire.beacon import Endpoint


class HostDriver(asyncio.DatagramProtocol):
    """Runs a SimHost (path manager + toy tunnel) on a real UDP socket."""

    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.log: list[Event] = []
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.host.receive_datagram(data, Endpoint(str(addr[0]), int(addr[1])), self.now())
        self.pump()

    def pump(self) -> None:
        assert self.transport is not None
        for d in self.host.datagrams_to_send():
            self.transport.sendto(d.data, d.addr)
        while (ev := self.host.next_event()) is not None:
            self.log.append(ev)
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.host.get_timer()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.host.handle_timer(self.now())
        self.pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()


async def until(pred: object, timeout: float = 5.0) -> None:
    assert callable(pred)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)


async def scenario(profile: Profile) -> None:
    loop = asyncio.get_running_loop()
    beacon = await BeaconDriver.start(("127.0.0.1", 0), BeaconConfig.for_profile(profile))
    cfg = NatConfig.for_profile(profile, attempt_timeout=0.1, keepalive_interval=None, rediscover_interval=None)
    drivers: list[HostDriver] = []
    try:
        for node in (1, 2):
            _, drv = await loop.create_datagram_endpoint(
                lambda n=node: HostDriver(SimHost(n, Endpoint("127.0.0.1", 0), beacon.address, cfg)),  # type: ignore[misc]
                local_addr=("127.0.0.1", 0),
            )
            drivers.append(drv)
        a, b = drivers
        for drv in drivers:
            drv.host.start(drv.now())
            drv.pump()
        await until(lambda: all(d.host.paths.beacon.endpoint is not None for d in drivers))
        b_ep = b.host.paths.beacon.endpoint
        assert b_ep is not None and b_ep.port == b.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
        assert any(isinstance(e, EndpointDiscovered) for e in a.log)

        # punch + direct
        a.host.connect(2, b_ep, a.now())
        a.pump()
        await until(lambda: a.host.paths.state(2) is PathState.DIRECT and b.host.paths.state(1) is PathState.DIRECT)
        assert beacon.server.stats["punch"] == 1
        a.host.send_data(2, b"direct", a.now())
        a.pump()
        await until(lambda: any(body == b"direct" for _, body, _ in b.host.inbox))

        # relay: A is told a dead endpoint for node 2 again (a fresh dial), without punching
        a.host.paths.peers.pop(2)
        a.host.paths.config = replace(a.host.paths.config, use_punch=False)  # else the punch finds B again
        a.host.connect(2, Endpoint("127.0.0.1", 9), a.now())
        a.pump()
        await until(lambda: a.host.paths.state(2) is PathState.RELAY)
        a.host.send_data(2, b"relayed", a.now())
        a.pump()
        await until(lambda: any(body == b"relayed" and via for _, body, via in b.host.inbox))
        assert beacon.server.stats["relay"] >= 2
    finally:
        for drv in drivers:
            drv.close()
        beacon.close()


@pytest.mark.req("NAT-001", "NAT-002", "NAT-013", "NAT-016", "NAT-021", "NAT-022", "NAT-031", "NAT-034")
@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
def test_real_beacon_on_loopback(profile: Profile) -> None:
    asyncio.run(asyncio.wait_for(scenario(profile), timeout=15.0))
