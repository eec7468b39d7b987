"""The daemon behind a beacon: peers reached by the draft 9.4 strategy (issue 11: the NAT path manager wired in).

Three sans-IO machines on an in-memory network -- two daemons and a :class:`~pilot_proto.nat.BeaconServer` --
where a datagram to an address nobody owns is lost.  Daemon A is told B lives at a dead locator: the direct
attempts there fail, the beacon's punch names B's real endpoint and the path ends direct there.  With a
firewall that lets only the beacon reach either daemon (both behind symmetric NATs), punching fails too
and the strategy falls back to the beacon's relay.  Every way, echo on port 7 returns every byte.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from pilot_proto.daemon.core import AppConnected, AppData, Daemon
from pilot_proto.nat import BeaconConfig, BeaconServer
from pilot_proto.nat.events import PathDirect, PathRelayed
from pilot_proto.nat.path import PathState
from pilot_proto.profile import Profile
from pilot_proto.services import EchoService
from pilot_proto.tunnel import Identity
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.beacon import Endpoint

BEACON = ("127.0.0.1", 9001)
A_AT, B_AT, DEAD = Endpoint("127.0.0.1", 4001), Endpoint("127.0.0.1", 4002), Endpoint("127.0.0.1", 4999)


class Net:
    """Daemons A (node 1) and B (node 2) and a beacon; ``run`` moves datagrams and time until quiet."""

    def __init__(self, profile: Profile, *, firewalled: bool = False) -> None:
        self.firewalled = firewalled
        self.now = 100.0
        ia, ib = Identity.from_seed(b"\x0a" * 32), Identity.from_seed(b"\x0b" * 32)
        keys = {1: ia.public_bytes, 2: ib.public_bytes}
        self.keys = keys
        self.a = Daemon(1, os.urandom, identity=ia, profile=profile, services=[EchoService()], peer_keys=keys.get,
                        beacon=BEACON)  # fmt: skip
        self.b = Daemon(2, os.urandom, identity=ib, profile=profile, services=[EchoService()], peer_keys=keys.get,
                        beacon=BEACON)  # fmt: skip
        self.beacon = BeaconServer(BeaconConfig.for_profile(profile))  # matching profiles (E-NAT-2)
        self.at = {A_AT: self.a, B_AT: self.b, Endpoint(*BEACON): self.beacon}
        self.events: dict[int, list[object]] = {1: [], 2: []}
        self.lost = 0
        for d in (self.a, self.b):
            d.start(self.now)

    def _owner_of(self, machine: object) -> Endpoint:
        return next(ep for ep, m in self.at.items() if m is machine)

    def run(self, until: float = 60.0) -> None:
        deadline = self.now + until
        while self.now <= deadline:
            moved = False
            for src_ep, machine in list(self.at.items()):
                for data, dst in machine.datagrams_to_send():
                    dest = Endpoint(str(dst[0]), int(dst[1]))
                    target = self.at.get(dest)
                    blocked = self.firewalled and target is not self.beacon and machine is not self.beacon
                    if target is None or blocked:
                        self.lost += 1
                        continue
                    target.receive_datagram(data, src_ep, self.now)
                    moved = True
            for d in (self.a, self.b):
                while (ev := d.next_event()) is not None:
                    self.events[d.node_id].append(ev)
            if moved:
                continue
            timers = [t for t in (m.get_timer() for m in self.at.values()) if t is not None]
            if not timers or min(timers) > deadline:
                return
            self.now = max(self.now, min(timers))
            for m in self.at.values():
                m.handle_timer(self.now)

    def of(self, node: int, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events[node] if isinstance(e, kind)]


def _echo(net: Net) -> bytes:
    cid = net.a.dial("app", SocketAddr(Addr(0, 2), 7), net.now)
    net.run(30.0)
    assert [e.conn_id for e in net.of(1, AppConnected)] == [cid]
    payload = os.urandom(40_000)
    net.a.send(cid, payload, net.now)
    net.run(30.0)
    return b"".join(e.data for e in net.of(1, AppData) if e.conn_id == cid)


@pytest.mark.req("NAT-030", "NAT-031")
@pytest.mark.parametrize("profile", list(Profile), ids=[p.value for p in Profile])
def test_dead_locator_is_punched_through_to_the_real_endpoint(profile: Profile) -> None:
    net = Net(profile)
    net.run(2.0)  # both daemons discover their endpoint through the beacon (9.1)
    net.a.add_peer(2, DEAD, net.keys[2])  # the registry's locator for B is stale
    assert len(_echo(net)) == 40_000
    assert net.a.nat is not None and net.a.nat.state(2) is PathState.DIRECT
    assert [e.endpoint for e in net.of(1, PathDirect)][:1] == [B_AT]
    assert net.lost >= 1  # something went to the dead locator first


@pytest.mark.req("NAT-030", "NAT-031", "NAT-034")
@pytest.mark.parametrize("profile", list(Profile), ids=[p.value for p in Profile])
def test_firewalled_peers_fall_back_to_the_beacon_relay(profile: Profile) -> None:
    net = Net(profile, firewalled=True)
    net.run(2.0)
    net.a.add_peer(2, B_AT, net.keys[2])
    assert len(_echo(net)) == 40_000
    assert net.a.nat is not None and net.a.nat.state(2) is PathState.RELAY
    assert net.of(1, PathRelayed) and not net.of(1, PathDirect)
    assert net.lost >= 3  # three direct attempts (and the punches) died at the firewall


@pytest.mark.req("NAT-030")
@pytest.mark.parametrize("profile", list(Profile), ids=[p.value for p in Profile])
def test_live_locator_ends_direct(profile: Profile) -> None:
    net = Net(profile)
    net.run(2.0)
    net.a.add_peer(2, B_AT, net.keys[2])
    assert len(_echo(net)) == 40_000
    assert net.a.nat is not None and net.a.nat.state(2) is PathState.DIRECT
    assert [e.endpoint for e in net.of(1, PathDirect)][:1] == [B_AT]


def test_cli_nodes_with_a_beacon_discover_and_echo(tmp_path: Path) -> None:
    """Real processes on 127.0.0.1: ``pilot-proto beacon`` and two ``pilot-proto node --beacon`` daemons.

    Both register with the beacon (its summary counts them), and echo on port 7 works through the NAT layer.
    """
    from test_daemon_cli import CLI, free_udp_port, start_node, stop

    beacon = subprocess.Popen([*CLI, "beacon", "--listen", "127.0.0.1:0", "--duration", "40"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    nodes = []
    try:
        assert beacon.stdout is not None
        banner = beacon.stdout.readline()
        assert banner.startswith("beacon listening on udp 127.0.0.1:"), banner
        bport = banner.split()[4].rsplit(":", 1)[1]
        pa, pb = free_udp_port(), free_udp_port()
        nodes = [start_node(tmp_path, 31, pa, {32: pb}, "--beacon", f"127.0.0.1:{bport}"),
                 start_node(tmp_path, 32, pb, {31: pa}, "--beacon", f"127.0.0.1:{bport}")]  # fmt: skip
        res = nodes[0].cli("connect", "32", "7", "--message", "through the NAT layer")
        assert res.returncode == 0 and res.stdout.strip() == "through the NAT layer", res
    finally:
        for n in nodes:
            stop(n)
        beacon.send_signal(signal.SIGINT)
        out, err = beacon.communicate(timeout=15)
    assert "2 nodes registered" in out + err, (out, err)
