"""Interop: our NAT layer against the Go reference beacon and daemon (jerryfane/pilotprotocol 64c2780), 127.0.0.1.

Runs only when ``PILOT_GO_BIN`` names a directory holding locally built ``beacon`` (and, for the last
test, ``registry`` and ``daemon``) binaries of that version; nothing of Go's is part of this repository.
Every process binds 127.0.0.1, runs under ``timeout`` and is stopped when its fixture ends; every
datagram we send is asserted to go to 127.0.0.1.

Direction 1 -- our sans-IO :class:`PathManager` / :class:`BeaconClient` (``go-interop``) on real UDP
sockets against the Go beacon: discovery, punch coordination, relay in Go's 0x06 delivery form, and the
Go beacon's trust behaviour that errata E-NAT-2/E-NAT-3 describe (checked on the wire here).

Direction 2 -- our :class:`BeaconDriver` serving a real Go daemon: the daemon's temp-socket discovery and
tunnel-socket registration, a punch it acts on, and (``go-interop``) an anonymous key exchange relayed both
ways through our beacon (the Go daemon answers with a PILA that verifies against the key the Go registry
holds); a ``draft`` beacon's bare delivery is shown not to work with Go (E-NAT-2, E-OBS-2).
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _go import (  # tests/interop is on sys.path (no __init__.py)
    GoNet,
    connectable,
    free_port,
    go_head,
    go_network,
    go_pila_length_ok,
    register,
    registry_call,
    stop_processes,
    wait_for,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pilot_proto.drivers.beacon import BeaconDriver, EndpointDriver
from pilot_proto.nat import (
    BeaconConfig,
    EndpointDiscovered,
    FrameReceived,
    NatConfig,
    NatNode,
    PathManager,
    PathState,
    strategy_duration,
)
from pilot_proto.node import Node as PilotNode
from pilot_proto.profile import Profile
from pilot_proto.sansio import Datagram, Event, InputRejected
from pilot_proto.stream import events as sev
from pilot_proto.tunnel import Identity, TunnelConfig
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.beacon import (
    BeaconMessage,
    DiscoverReply,
    Endpoint,
    PunchCommand,
    Relay,
    RelayDeliver,
    Sync,
    decode_beacon,
    encode_beacon,
)
from pilot_proto.wire.frames import (
    AuthKeyExchangeFrame,
    KeyExchangeFrame,
    auth_kex_signed_message,
    decode_frame,
    encode_frame,
)

pytestmark = pytest.mark.interop
GO_BIN = os.environ.get("PILOT_GO_BIN")
LOOPBACK = "127.0.0.1"
GO = Profile.GO_INTEROP
STEP = 5.0  # seconds any one expected datagram may take on loopback
QUIET = 0.5  # how long we listen to conclude "nothing came"
PROC_LIFETIME = "120"  # `timeout` bound on every Go process
#: Go's log line; GoC's also says whether the exchange was authenticated, GoB's does not
_ESTABLISHED = r'msg="encrypted tunnel established"(?: auth=\w+)?'


def _go_bin(*names: str) -> Path:
    if not GO_BIN:
        pytest.skip("set PILOT_GO_BIN to a directory with the locally built Go reference binaries (beacon, ...)")
    bindir = Path(GO_BIN)
    missing = [n for n in names if not (bindir / n).is_file()]
    if missing:
        pytest.skip(f"PILOT_GO_BIN={bindir} lacks {', '.join(missing)}")
    return bindir


@contextmanager
def _go_processes() -> Iterator[Callable[[list[str], Path, dict[str, str]], subprocess.Popen[bytes]]]:
    """Start Go binaries under ``timeout``; all are terminated (then killed) on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    bound = [shutil.which("timeout") or "timeout", "-s", "TERM", "-k", "5", PROC_LIFETIME]

    def start(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen([*bound, *cmd], stdout=out, stderr=subprocess.STDOUT, env=env)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        stop_processes(procs)


# -- our side: a PathManager on a blocking UDP socket --------------------------------------------------------


@dataclass
class Node:
    """One of our daemons' NAT layer (go-interop) on a real socket bound to 127.0.0.1."""

    node: int
    beacon: Endpoint
    sock: socket.socket = field(init=False)
    paths: PathManager = field(init=False)
    raw: list[tuple[bytes, Endpoint]] = field(default_factory=list)  # every datagram received
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        cfg = NatConfig.for_profile(
            GO, discover_timeout=0.5, discover_retries=8, rediscover_interval=None, keepalive_interval=None
        )
        self.paths = PathManager(self.node, self.beacon, cfg)

    @property
    def endpoint(self) -> Endpoint:
        host, port = self.sock.getsockname()[:2]
        return Endpoint(str(host), int(port))

    def send_raw(self, data: bytes, dest: Endpoint) -> None:
        assert dest.host == LOOPBACK, dest  # never anything but loopback
        self.sock.sendto(data, (dest.host, dest.port))

    def flush(self) -> None:
        for d in self.paths.datagrams_to_send():
            self.send_raw(d.data, d.addr)

    def pump(self, until: Callable[[], bool], timeout: float = STEP) -> bool:
        """Run the state machine on this socket until ``until()`` holds or ``timeout`` passes."""
        end = time.monotonic() + timeout
        while True:
            self.flush()
            if until():
                return True
            now = time.monotonic()
            if now >= end:
                return False
            wait = end - now
            timer = self.paths.get_timer()
            if timer is not None:
                wait = max(0.0, min(wait, timer - now))
            self.sock.settimeout(max(wait, 0.001))
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                self.paths.handle_timer(time.monotonic())
            else:
                src = Endpoint(str(addr[0]), int(addr[1]))
                self.raw.append((data, src))
                self.paths.receive_datagram(data, src, time.monotonic())
            self.events.extend(self.paths.events())

    def discover(self) -> Endpoint:
        self.paths.start(time.monotonic())
        assert self.pump(lambda: self.paths.beacon.endpoint is not None), "no DiscoverReply"
        assert self.paths.beacon.endpoint is not None
        return self.paths.beacon.endpoint

    def beacon_messages(self) -> list[BeaconMessage]:
        return [decode_beacon(d, GO) for d, src in self.raw if src == self.beacon and d[:1] < b"\x10"]

    def relayed(self) -> list[FrameReceived]:
        return [e for e in self.events if isinstance(e, FrameReceived) and e.via_relay]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def nodes() -> Iterator[Callable[[int, Endpoint], Node]]:
    made: list[Node] = []

    def make(node: int, beacon: Endpoint) -> Node:
        made.append(Node(node, beacon))
        return made[-1]

    yield make
    for n in made:
        n.close()


def relay_rejections(n: Node) -> list[InputRejected]:
    """Relay deliveries our beacon client refused (one InputRejected each, NAT-042)."""
    return [
        e for e in n.events
        if isinstance(e, InputRejected) and e.layer == "beacon-client" and e.error.field == "relay.payload"
    ]  # fmt: skip


def _pilk(sender: int) -> bytes:
    pub = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return encode_frame(KeyExchangeFrame(sender, pub))


# -- direction 1: the Go beacon --------------------------------------------------------------------------------


@dataclass
class GoBeacon:
    endpoint: Endpoint
    log: Path


@pytest.fixture(scope="module")
def go_beacon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoBeacon]:
    bindir = _go_bin("beacon")
    tmp = tmp_path_factory.mktemp("gobeacon")
    port = free_port(socket.SOCK_DGRAM)
    log = tmp / "beacon.log"
    env = {**os.environ, "HOME": str(tmp)}
    with _go_processes() as start:
        start([str(bindir / "beacon"), "-addr", f"{LOOPBACK}:{port}", "-log-level", "debug"], log, env)
        wait_for(lambda: b'msg="beacon listening"' in log.read_bytes(), "the Go beacon")
        yield GoBeacon(Endpoint(LOOPBACK, port), log)


@pytest.mark.req("NAT-001", "NAT-002", "NAT-003", "NAT-005", "NAT-006", "NAT-010")
def test_discover_reply_is_our_observed_endpoint(go_beacon: GoBeacon, nodes: Callable[[int, Endpoint], Node]) -> None:
    a = nodes(1001, go_beacon.endpoint)
    found = a.discover()
    assert found == a.endpoint  # the Go beacon saw exactly our socket's 127.0.0.1:port
    assert EndpointDiscovered(a.endpoint) in a.events
    replies = [(d, src) for d, src in a.raw if d[:1] == b"\x02"]
    port = a.endpoint.port
    assert replies[0] == (b"\x02\x04\x7f\x00\x00\x01" + struct.pack(">H", port), go_beacon.endpoint)  # 8 bytes
    assert a.paths.beacon.stats == {"spoofed": 0, "malformed": 0, "unsolicited_reply": 0, "unexpected": 0}
    assert not [e for e in a.events if isinstance(e, InputRejected)]


@pytest.mark.req("NAT-011", "NAT-012", "NAT-013", "NAT-014", "NAT-015", "NAT-040")
def test_punch_request_reaches_both_sides(go_beacon: GoBeacon, nodes: Callable[[int, Endpoint], Node]) -> None:
    a, b = nodes(2001, go_beacon.endpoint), nodes(2002, go_beacon.endpoint)
    a.discover()
    b.discover()
    a.paths.beacon.punch_request(b.node)
    request = a.paths.datagrams_to_send()
    assert request == [Datagram(b"\x03" + struct.pack(">II", 2001, 2002), go_beacon.endpoint)]  # 9 bytes
    a.send_raw(request[0].data, request[0].addr)

    def got_command(n: Node) -> Callable[[], bool]:
        return lambda: any(isinstance(m, PunchCommand) for m in n.beacon_messages())

    assert a.pump(got_command(a)) and b.pump(got_command(b))
    assert [m for m in a.beacon_messages() if isinstance(m, PunchCommand)] == [PunchCommand(b.endpoint)]
    assert [m for m in b.beacon_messages() if isinstance(m, PunchCommand)] == [PunchCommand(a.endpoint)]
    assert all(len(d) == 8 for d, src in a.raw + b.raw if d[:1] == b"\x04")
    # each side acted on its command with Go's three 4-byte PILPs (NAT-015), and each saw the other's
    assert a.pump(lambda: sum(d == b"PILP" and s == b.endpoint for d, s in a.raw) == 3)
    assert b.pump(lambda: sum(d == b"PILP" and s == a.endpoint for d, s in b.raw) == 3)


@pytest.mark.req("NAT-021", "NAT-022", "NAT-023", "NAT-024", "NAT-042")
@pytest.mark.parametrize("size", [40, 1400, 8000, 65498], ids=lambda n: f"{n}B")
def test_relay_delivers_go_form_and_we_unwrap(
    go_beacon: GoBeacon, nodes: Callable[[int, Endpoint], Node], size: int
) -> None:
    base = 3000 + size
    a, b = nodes(base + 1, go_beacon.endpoint), nodes(base + 2, go_beacon.endpoint)
    a.discover()
    b.discover()
    frame = _pilk(a.node) if size == 40 else b"PILS" + struct.pack(">I", a.node) + os.urandom(size - 8)
    assert len(frame) == size
    a.paths.beacon.relay(b.node, frame)
    [out] = a.paths.datagrams_to_send()
    assert out.data == b"\x05" + struct.pack(">II", a.node, b.node) + frame and out.addr == go_beacon.endpoint
    a.send_raw(out.data, out.addr)
    assert b.pump(lambda: bool(b.relayed()))
    [(wire, src)] = [(d, s) for d, s in b.raw if d[:1] == b"\x06"]
    assert src == go_beacon.endpoint
    assert wire == b"\x06" + struct.pack(">I", a.node) + frame  # Go's delivery form (E-NAT-2), 5 + size bytes
    assert decode_beacon(wire, GO) == RelayDeliver(a.node, frame)  # our codec reads Go's bytes
    assert b.relayed() == [FrameReceived(frame, go_beacon.endpoint, True, a.node)]  # byte-identical (NAT-024)


@pytest.mark.req("NAT-018", "NAT-025", "NAT-027")
def test_go_beacon_drops_unknown_targets_and_malformed(
    go_beacon: GoBeacon, nodes: Callable[[int, Endpoint], Node]
) -> None:
    a = nodes(4001, go_beacon.endpoint)
    a.discover()
    before = len(a.raw)
    a.send_raw(encode_beacon(Relay(a.node, 4999, _pilk(a.node))), go_beacon.endpoint)  # unknown destination
    a.send_raw(b"\x03" + struct.pack(">II", a.node, 4998), go_beacon.endpoint)  # unknown punch target
    a.send_raw(b"\x01\x00\x00\x0f", go_beacon.endpoint)  # Discover one byte short
    a.send_raw(b"\x09hello", go_beacon.endpoint)  # unknown type
    a.send_raw(b"\x02\x04\x7f\x00\x00\x01\x00\x07", go_beacon.endpoint)  # a reply sent *to* the beacon
    a.pump(lambda: False, timeout=QUIET)
    assert a.raw[before:] == []
    # ...and it is still serving; trailing bytes after a Discover are ignored, as our go-interop decoder does
    a.send_raw(b"\x01" + struct.pack(">I", a.node) + b"extra", go_beacon.endpoint)
    a.pump(lambda: len(a.raw) > before)
    assert decode_beacon(a.raw[-1][0], GO) == DiscoverReply(a.endpoint)


@pytest.mark.req("NAT-018", "NAT-023")
def test_go_beacon_edge_cases(go_beacon: GoBeacon, nodes: Callable[[int, Endpoint], Node]) -> None:
    """Go answers a self-punch and relays frames too short to be tunnel frames; we drop both (E-OBS-2)."""
    a = nodes(8001, go_beacon.endpoint)
    a.discover()
    a.send_raw(b"\x03" + struct.pack(">II", a.node, a.node), go_beacon.endpoint)  # requester == target
    assert a.pump(lambda: len([m for m in a.beacon_messages() if isinstance(m, PunchCommand)]) == 2)
    assert {m for m in a.beacon_messages() if isinstance(m, PunchCommand)} == {PunchCommand(a.endpoint)}
    for tail in (b"", b"PI"):  # 0x05 with a 0- and a 2-byte payload, to ourselves
        a.send_raw(encode_beacon(Relay(a.node, a.node, tail)), go_beacon.endpoint)
    assert a.pump(lambda: len(relay_rejections(a)) == 2)
    # sorted: Go relays through one worker goroutine per CPU, so back-to-back relays may arrive reordered
    got = sorted(d for d, _ in a.raw if d[:1] == b"\x06")
    assert got == [b"\x06" + struct.pack(">I", a.node) + t for t in (b"", b"PI")]
    assert a.relayed() == []


@pytest.mark.req("NAT-045", "NAT-042")
def test_go_beacon_trusts_claimed_ids(go_beacon: GoBeacon, nodes: Callable[[int, Endpoint], Node]) -> None:
    """What E-NAT-3 says of Go, on the wire: claimed sender IDs are relayed and a PunchRequest rebinds.

    Our beacon refuses both (NAT-045, tests/test_nat_security.py); these are Go findings, not our behaviour.
    """
    a, b, mallory = (nodes(n, go_beacon.endpoint) for n in (5001, 5002, 5003))
    a.discover()
    b.discover()
    # 1. a relay from mallory's socket claiming to come from node 5001 is delivered under that claim
    frame = _pilk(a.node)
    mallory.send_raw(encode_beacon(Relay(a.node, b.node, frame)), go_beacon.endpoint)
    assert b.pump(lambda: bool(b.relayed()))
    assert b.relayed()[0].sender_hint == a.node and b.relayed()[0].frame == frame
    # 2. a PunchRequest naming b as requester, sent from mallory's socket, moves b's registration to mallory
    mallory.send_raw(b"\x03" + struct.pack(">II", b.node, a.node), go_beacon.endpoint)
    assert mallory.pump(lambda: any(isinstance(m, PunchCommand) for m in mallory.beacon_messages()))
    assert a.pump(lambda: PunchCommand(mallory.endpoint) in a.beacon_messages())
    a.send_raw(encode_beacon(Relay(a.node, b.node, frame)), go_beacon.endpoint)
    assert mallory.pump(lambda: any(d[:1] == b"\x06" for d, _ in mallory.raw))  # b's relay traffic now goes to mallory


@pytest.mark.req("NAT-026")
def test_go_beacon_accepts_sync_from_anyone(go_beacon: GoBeacon, nodes: Callable[[int, Endpoint], Node]) -> None:
    """E-NAT-3: after an unauthenticated Sync, relays for the listed nodes are forwarded (as 0x05) to its source."""
    a, fake_peer = nodes(6001, go_beacon.endpoint), nodes(6002, go_beacon.endpoint)
    a.discover()
    sync = encode_beacon(Sync(77, (6999,)))
    assert len(sync) == 11
    fake_peer.send_raw(sync, go_beacon.endpoint)
    time.sleep(0.2)  # the beacon handles datagrams in order, but Sync and relay come from two sockets
    relay = encode_beacon(Relay(a.node, 6999, _pilk(a.node)))
    a.send_raw(relay, go_beacon.endpoint)
    assert fake_peer.pump(lambda: any(d == relay for d, _ in fake_peer.raw))  # the original 0x05, unchanged


# -- direction 2: our beacon serving a Go daemon ----------------------------------------------------------------


class OurBeacon:
    """Our asyncio BeaconDriver on its own loop thread, bounded by ``close``."""

    def __init__(self, profile: Profile) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        config = BeaconConfig.for_profile(profile)
        self.driver = asyncio.run_coroutine_threadsafe(BeaconDriver.start((LOOPBACK, 0), config), self.loop).result(5)

    def call(self, fn: Callable[[], object]) -> object:
        async def run() -> object:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    def nodes(self) -> dict[int, Endpoint]:
        got = self.call(lambda: {n: r.endpoint for n, r in self.driver.server.nodes.items()})
        assert isinstance(got, dict)
        return got

    def stats(self) -> dict[str, int]:
        got = self.call(lambda: dict(self.driver.server.stats))
        assert isinstance(got, dict)
        return got

    def close(self) -> None:
        self.call(self.driver.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.mark.req("NAT-001", "NAT-002", "NAT-005", "NAT-006", "NAT-013", "NAT-015", "NAT-021", "NAT-022", "NAT-045")
@pytest.mark.parametrize("profile", [GO, Profile.DRAFT], ids=lambda p: f"our-beacon-{p.value}")
def test_go_daemon_through_our_beacon(tmp_path: Path, nodes: Callable[[int, Endpoint], Node], profile: Profile) -> None:
    """Discovery and punching work whatever our beacon's profile; relay only in go-interop (E-NAT-2, E-OBS-2)."""
    bindir = _go_bin("beacon", "registry", "daemon")
    (tmp_path / "home").mkdir()
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    reg_port, go_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    beacon = OurBeacon(profile)
    try:
        ours = beacon.driver.address
        assert ours.host == LOOPBACK
        with _go_processes() as start:
            start([str(bindir / "registry"), "-addr", f"{LOOPBACK}:{reg_port}", "-beacon", str(ours),
                   "-log-level", "debug"], tmp_path / "registry.log", env)  # fmt: skip
            wait_for(lambda: connectable(reg_port), "the Go registry")
            log = tmp_path / "daemon.log"
            # no -endpoint: the daemon runs its beacon discovery (temp socket, node 0) against our beacon
            start([str(bindir / "daemon"), "-registry", f"{LOOPBACK}:{reg_port}", "-beacon", str(ours),
                   "-listen", f"{LOOPBACK}:{go_port}", "-socket", str(tmp_path / "d.sock"), "-encrypt=true",
                   "-public", "-email", "interop@example.com", "-webhook", "", "-no-dataexchange",
                   "-no-eventstream", "-no-tasksubmit", "-log-level", "debug"], log, env)  # fmt: skip
            go_ep = Endpoint(LOOPBACK, go_port)
            # Go parsed our DiscoverReply to its own endpoint (then discards it as a loopback address)
            stun = wait_for(lambda: re.search(rb'msg="STUN returned private/unusable IP, discarding" stun_addr=(\S+)',
                                           log.read_bytes()), "Go's discovery through our beacon")  # fmt: skip
            assert isinstance(stun, re.Match) and stun.group(1).decode() == str(go_ep)
            found = wait_for(lambda: re.search(rb'msg="daemon registered" node_id=(\d+)', log.read_bytes()), "registry")
            assert isinstance(found, re.Match)
            go_node = int(found.group(1))
            wait_for(lambda: beacon.nodes().get(go_node) == go_ep, "Go's registration at our beacon (tunnel socket)")
            wait_for(lambda: b'msg="beacon discover reply on tunnel socket"' in log.read_bytes(), "our reply to Go")
            assert beacon.nodes().get(0) == go_ep  # the temp-socket Discover carried node 0

            # our node (an ID the registry does not know, so Go takes its PILK) punches towards Go
            c = nodes(3_000_000_001, ours)
            c.discover()
            c.paths.beacon.punch_request(go_node)
            c.flush()
            assert c.pump(lambda: PunchCommand(go_ep) in c.beacon_messages())
            if go_head():  # GoC punches no loopback target (E-NAT-5): it says so and sends nothing
                skip = rf'msg="skipping NAT punch to non-routable target" target={re.escape(str(c.endpoint))}'
                wait_for(lambda: re.search(skip.encode(), log.read_bytes()), "GoC's log of the punch it skips")
                assert not c.pump(lambda: any(d == b"PILP" and s == go_ep for d, s in c.raw), timeout=QUIET)
            else:
                assert c.pump(lambda: sum(d == b"PILP" and s == go_ep for d, s in c.raw) == 3)  # Go acted on ours
                sent = rf'msg="NAT punch sent" target={re.escape(str(c.endpoint))}'.encode()
                wait_for(lambda: re.search(sent, log.read_bytes()), "Go's log of its punch (written after the PILPs)")

            # an anonymous key exchange relayed through our beacon
            c.paths.beacon.relay(go_node, _pilk(c.node))
            c.flush()
            if profile is Profile.DRAFT:
                # the bare delivery reads to Go as a direct PILK *from the beacon*: it binds our node to the
                # beacon's address and sends its PILA there, where it is no beacon message (E-OBS-2)
                established = rf"{_ESTABLISHED} peer_node_id={c.node} endpoint={ours} relay=false"
                wait_for(lambda: re.search(established.encode(), log.read_bytes()), "Go taking the bare PILK")
                wait_for(lambda: beacon.stats()["malformed"] >= 1, "Go's PILA sent to the beacon itself")
                assert not c.pump(lambda: bool(c.relayed()), timeout=QUIET)
                stats = beacon.stats()
                assert stats["punch"] == 1 and stats["relay"] == 1 and stats["spoofed"] == 0, stats
                return
            # go-interop: Go answers by relay with its PILA
            assert c.pump(lambda: bool(c.relayed()), timeout=2 * STEP)
            [got] = c.relayed()
            assert got.sender_hint == go_node and got.source == ours and go_pila_length_ok(len(got.frame))
            pila = decode_frame(got.frame, GO)
            assert isinstance(pila, AuthKeyExchangeFrame) and pila.sender == go_node
            lookup = registry_call((LOOPBACK, reg_port), {"type": "lookup", "node_id": go_node})
            key = base64.b64decode(str(lookup["public_key"]))
            assert pila.ed25519_public == key
            Ed25519PublicKey.from_public_bytes(key).verify(
                pila.signature, auth_kex_signed_message(go_node, pila.x25519_public)
            )  # raises if Go's PILA does not verify
            shown = "0.0.0.0:0" if go_head() else str(ours)  # GoC logs no endpoint for a relayed peer
            established = rf"{_ESTABLISHED} peer_node_id={c.node} endpoint={shown} relay=true"
            assert re.search(established.encode(), log.read_bytes())
            stats = beacon.stats()
            assert stats["punch"] == 1 and stats["relay"] == 2 and stats["spoofed"] == 0, stats
            assert stats["malformed"] == 0 and stats["discover"] >= 3, stats
    finally:
        beacon.close()


# -- direction 3: our whole node (NatNode) reaching a Go daemon by the 9.4 strategy ----------------------------


def _go_beacon_of(go: GoNet) -> Endpoint:
    """The Go beacon's endpoint, as go_network() started it (``beacon -addr HOST:PORT``)."""
    for p in go.procs:
        args = [str(a) for a in p.args]  # type: ignore[union-attr]
        if any(a.endswith("/beacon") for a in args):
            host, _, port = args[args.index("-addr") + 1].rpartition(":")
            return Endpoint(host, int(port))
    raise AssertionError("no beacon in the Go network")


async def _nat_node_to_go(go: GoNet, dead_locator: bool) -> tuple[PathState | None, bytes, float, dict[str, int]]:
    """Our Node behind a NatNode dials the Go daemon's echo port, at its real locator (punch, direct) or at a
    dead one without punching (3 direct attempts, then the Go beacon's relay); 64 KiB echoed, then a ping."""
    beacon = _go_beacon_of(go)
    ident = Identity.from_seed(os.urandom(32))
    events: list[Event] = []
    cfg = NatConfig.for_profile(GO, attempt_timeout=0.2, rediscover_interval=None, use_punch=not dead_locator)
    kex = TunnelConfig.for_profile(GO, kex_retries=math.ceil(strategy_duration(cfg) / 1.0) + 2)
    loop = asyncio.get_running_loop()
    sock_port = free_port(socket.SOCK_DGRAM)
    me = register(go, ident, sock_port)
    node = PilotNode(me, os.urandom, profile=GO, identity=ident, tunnel_config=kex)
    drv = await EndpointDriver.serve(NatNode(node, beacon, cfg), (LOOPBACK, sock_port), events.append)
    nn = drv.endpoint
    try:
        nn.start(drv.now())
        drv.poke()
        await _until(lambda: nn.paths.beacon.endpoint is not None, "discovery at the Go beacon")
        locator = Endpoint(LOOPBACK, 9) if dead_locator else Endpoint(*go.daemon)
        now = drv.now()
        nn.dial(go.node_id, locator, now, go.ed25519)
        cid = node.connect(SocketAddr(Addr(0, go.node_id), 7), now)
        data = os.urandom(64 * 1024)
        node.send(cid, data, now)
        drv.poke()
        t0 = loop.time()

        def echoed() -> bytes:
            return b"".join(e.data for e in events if isinstance(e, sev.DataReceived) and e.conn_id == cid)

        await _until(lambda: len(echoed()) >= len(data), "the echo", timeout=30.0)
        assert echoed() == data
        seq = node.ping(Addr(0, go.node_id), drv.now(), b"nat")
        drv.poke()
        await _until(lambda: any(isinstance(e, sev.PingReply) and e.seq == seq for e in events), "the ping reply")
        return nn.state(go.node_id), echoed(), loop.time() - t0, dict(nn.paths.stats)
    finally:
        drv.close()


async def _until(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def go_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoNet]:
    with go_network(tmp_path_factory.mktemp("go-nat-node")) as net:
        yield net


@pytest.mark.req("NAT-011", "NAT-013", "NAT-016", "NAT-024", "NAT-034")
def test_nat_node_reaches_go_daemon_directly(go_net: GoNet) -> None:
    state, _, _, _ = asyncio.run(asyncio.wait_for(_nat_node_to_go(go_net, dead_locator=False), timeout=45.0))
    assert state is PathState.DIRECT


@pytest.mark.req("NAT-021", "NAT-022", "NAT-023", "NAT-030", "NAT-031", "NAT-034")
def test_nat_node_falls_back_to_go_beacon_relay(go_net: GoNet) -> None:
    """Go marks a peer whose frames arrive by relay as relay-only and answers through the beacon, so the
    whole session -- PILA, PILS, the stream, the ping -- runs over 0x05/0x06 (go-interop)."""
    state, _, elapsed, _ = asyncio.run(asyncio.wait_for(_nat_node_to_go(go_net, dead_locator=True), timeout=60.0))
    assert state is PathState.RELAY
    log = go_net.daemon_log()
    assert b'msg="encrypted tunnel established"' in log and b"relay=true" in log
    print(f"64 KiB echoed through the Go beacon in {elapsed:.2f} s")


# -- direction 4: the `pilot-proto beacon` process serving a Go daemon ----------------------------------------


@pytest.mark.req("NAT-001", "NAT-002", "NAT-005", "NAT-006")
def test_go_daemon_registers_through_the_beacon_command(tmp_path: Path) -> None:
    """A Go daemon discovers through `pilot-proto beacon` (a real process); Ctrl-C ends it with its summary."""
    bindir = _go_bin("registry", "daemon")
    (tmp_path / "home").mkdir()
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    port, reg_port, go_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    ours = subprocess.Popen(
        [sys.executable, "-m", "pilot_proto.cli", "beacon", "--listen", f"{LOOPBACK}:{port}", "--profile", "go-interop",
         "--duration", "60", "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert ours.stdout is not None
        assert ours.stdout.readline().startswith(f"beacon listening on udp {LOOPBACK}:{port}")
        with _go_processes() as start:
            start([str(bindir / "registry"), "-addr", f"{LOOPBACK}:{reg_port}", "-beacon", f"{LOOPBACK}:{port}"],
                  tmp_path / "registry.log", env)  # fmt: skip
            wait_for(lambda: connectable(reg_port), "the Go registry")
            log = tmp_path / "daemon.log"
            start([str(bindir / "daemon"), "-registry", f"{LOOPBACK}:{reg_port}", "-beacon", f"{LOOPBACK}:{port}",
                   "-listen", f"{LOOPBACK}:{go_port}", "-socket", str(tmp_path / "d.sock"), "-encrypt=true",
                   "-email", "interop@example.com", "-webhook", "", "-no-dataexchange", "-no-eventstream",
                   "-no-tasksubmit", "-log-level", "debug"], log, env)  # fmt: skip
            wait_for(lambda: b'msg="beacon discover reply on tunnel socket"' in log.read_bytes(), "Go's discovery")
            found = re.search(rb'msg="daemon registered" node_id=(\d+)', log.read_bytes())
            assert found is not None
            go_node = int(found.group(1))
    finally:
        ours.send_signal(signal.SIGINT)
        out, err = ours.communicate(timeout=15)
    assert ours.returncode == 0 and "Traceback" not in err, err
    assert f"beacon: registered node {go_node} at {LOOPBACK}:{go_port}" in err.splitlines(), err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("beacon stopped after ") and " 0 rejected" in summary, out
