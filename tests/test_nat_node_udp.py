"""NatNode for real: two nodes and our beacon on 127.0.0.1 UDP sockets (EndpointDriver, BeaconDriver).

Discovery through the beacon, a punched direct path, and a dial to a dead locator without punching
that falls back to the beacon relay after its 3 direct attempts; a stream carries exact bytes both
ways on each.  Loopback only, bounded by ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pilot_proto.drivers.beacon import BeaconDriver, EndpointDriver
from pilot_proto.nat import BeaconConfig, NatConfig, NatNode, PathState
from pilot_proto.node import Node
from pilot_proto.profile import Profile
from pilot_proto.sansio import Event
from pilot_proto.stream import events as sev
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.beacon import Endpoint

LOOPBACK = "127.0.0.1"
A, B = 0x0A, 0x0B
PORT = 7
DATA = bytes(range(256)) * 256  # 64 KiB


async def until(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise TimeoutError(what)
        await asyncio.sleep(0.005)


class Host:
    def __init__(self, drv: EndpointDriver[NatNode[Node]], events: list[Event]) -> None:
        self.drv, self.events = drv, events
        self.nn = drv.endpoint

    def received(self, cid: int) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, sev.DataReceived) and e.conn_id == cid)


async def hosts(profile: Profile, beacon: Endpoint, **nat: object) -> tuple[Host, Host]:
    ids = {n: insecure_test_identity(n) for n in (A, B)}
    keys = {n: i.public_bytes for n, i in ids.items()}
    cfg = NatConfig.for_profile(profile, attempt_timeout=0.05, rediscover_interval=None, **nat)
    out = []
    for n in (A, B):
        node = Node(n, InsecureDeterministicRng(f"udp-{n}-{profile.value}"), profile=profile, identity=ids[n],
                    peer_keys=keys)  # fmt: skip
        events: list[Event] = []
        drv = await EndpointDriver.serve(NatNode(node, beacon, cfg), (LOOPBACK, 0), events.append)
        drv.endpoint.start(drv.now())
        drv.poke()
        out.append(Host(drv, events))
    await until(lambda: all(h.nn.paths.beacon.endpoint is not None for h in out), "discovery")
    return out[0], out[1]


async def echo(a: Host, b: Host, locator: Endpoint) -> None:
    now = a.drv.now()
    a.nn.dial(B, locator, now)
    cid = a.nn.node.connect(SocketAddr(Addr(0, B), PORT), now)
    a.nn.node.send(cid, DATA, now)
    a.drv.poke()
    await until(lambda: any(isinstance(e, sev.ConnectionRequested) for e in b.events), "B accepting")
    [req] = [e for e in b.events if isinstance(e, sev.ConnectionRequested)]
    await until(lambda: b.received(req.conn_id) == DATA, "A's bytes at B")
    b.nn.node.send(req.conn_id, DATA[::-1], b.drv.now())
    b.drv.poke()
    await until(lambda: a.received(cid) == DATA[::-1], "B's bytes at A")


async def scenario(profile: Profile) -> None:
    beacon = await BeaconDriver.start((LOOPBACK, 0), BeaconConfig.for_profile(profile))
    made: list[Host] = []
    try:
        a, b = await hosts(profile, beacon.address)
        made += [a, b]
        assert b.nn.paths.beacon.endpoint == b.drv.address  # loopback: the beacon sees the socket itself
        b.nn.node.stream.listen(PORT)
        await echo(a, b, b.drv.address)
        assert a.nn.state(B) is PathState.DIRECT and b.nn.state(A) is PathState.DIRECT
        assert beacon.server.stats["punch"] == 1 and beacon.server.stats["relay"] == 0

        # a second pair dials a dead locator without punching: 3 direct attempts, then the relay
        c, d = await hosts(profile, beacon.address, use_punch=False)
        made += [c, d]
        d.nn.node.stream.listen(PORT)
        await echo(c, d, Endpoint(LOOPBACK, 9))
        assert c.nn.state(B) is PathState.RELAY and d.nn.state(A) is PathState.RELAY
        assert beacon.server.stats["relay"] >= 2 * len(DATA) // 4096  # every data segment (MSS 4096) was relayed
    finally:
        for h in made:
            h.drv.close()
        beacon.close()


@pytest.mark.req("NAT-001", "NAT-011", "NAT-013", "NAT-021", "NAT-022", "NAT-024", "NAT-031", "NAT-034")
@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
def test_nat_nodes_over_loopback(profile: Profile) -> None:
    asyncio.run(asyncio.wait_for(scenario(profile), timeout=30.0))
