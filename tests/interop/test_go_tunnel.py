"""Interop: our tunnel endpoint against the Go reference daemon (jerryfane/pilotprotocol) on 127.0.0.1.

Runs only when ``PILOT_GO_BIN`` names a directory holding locally built ``registry``, ``beacon`` and
``daemon`` binaries of 64c2780 (GoB) or the fork's head (GoC; nothing of Go's is part of this repository).
Every process binds 127.0.0.1 only, runs under ``timeout`` and is stopped when the module ends.

Against GoC, whose PILA carries a trailer after byte 136 (E-TNL-3), ``go-interop`` reads the trailer and forms
the session, and ``draft`` refuses that PILA (``trailing_data``), so no packet gets through.

What is proved, in both profiles:

* PILA with a registered identity: Go accepts our PILA, answers with its PILA, our endpoint verifies it
  against the key the Go registry returns, and decrypts Go's PILS reply to an encrypted Control ping.
* The first Go counter is 1 (erratum E-NONCE-1) and the PILS frame is 20 + packet + 16 bytes.
* Replaying Go's frame is rejected (REPLAY); a tampered copy fails (AUTH_FAILED) and the next real
  frame still decrypts.
* Anonymous PILK from an unregistered node: Go answers with PILA and the tunnel works.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from _go import (  # tests/interop is on sys.path (no __init__.py)
    LOOPBACK,
    GoNet,
    go_head,
    go_network,
    go_pila_length_ok,
    register,
)

from pilot_proto.errors import ErrorCode
from pilot_proto.profile import Profile
from pilot_proto.sansio import drain
from pilot_proto.tunnel import (
    Event,
    Identity,
    InputRejected,
    KeyEstablished,
    PacketReceived,
    Rekeyed,
    TunnelConfig,
    TunnelEndpoint,
)
from pilot_proto.tunnel.endpoint import KEX_FLAG_RESPONSE, parse_pila_trailer
from pilot_proto.wire.address import Addr
from pilot_proto.wire.header import Flags, Packet, PacketProtocol


def feed(ep: TunnelEndpoint, data: bytes, addr: object, now: float) -> list[Event]:
    """Push one datagram, pull every event it caused."""
    ep.receive_datagram(data, addr, now)
    return drain(ep)


def tick(ep: TunnelEndpoint, now: float) -> list[Event]:
    """Fire the timer, pull every event it caused."""
    ep.handle_timer(now)
    return drain(ep)


pytestmark = pytest.mark.interop
STEP_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def go_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoNet]:
    with go_network(tmp_path_factory.mktemp("go")) as net:
        yield net


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))


@dataclass
class Run:
    events: list[Event] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)  # raw datagrams from the Go daemon
    sent: list[bytes] = field(default_factory=list)


class Driver:
    """One UDP socket on 127.0.0.1 feeding one endpoint (the Go daemon keys our address per node)."""

    def __init__(self, ep: TunnelEndpoint, go: GoNet) -> None:
        self.ep, self.go = ep, go

    async def __aenter__(self) -> Driver:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.t0 = loop.time()
        self.transport, self.proto = await loop.create_datagram_endpoint(_Udp, local_addr=(LOOPBACK, 0))
        self.ep.add_peer(self.go.node_id, self.go.daemon)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.transport.close()

    def now(self) -> float:
        return self.loop.time() - self.t0

    def _flush(self, run: Run) -> None:
        for data, addr in self.ep.datagrams_to_send():
            assert addr[0] == LOOPBACK  # type: ignore[index]
            run.sent.append(data)
            self.transport.sendto(data, addr)  # type: ignore[arg-type]

    async def exchange(self, pings: list[Packet], extra: list[bytes] | None = None) -> Run:
        """Send each ping and wait (bounded) for one decrypted answer; then inject ``extra`` datagrams."""
        run = Run()
        ep = self.ep
        for ping in pings:
            want = len([e for e in run.events if isinstance(e, PacketReceived)]) + 1
            ep.send(self.go.node_id, ping, self.now())
            self._flush(run)
            deadline = self.now() + STEP_TIMEOUT
            while len([e for e in run.events if isinstance(e, PacketReceived)]) < want:
                timer = ep.get_timer()
                wait = max(0.01, min(deadline, timer if timer is not None else deadline) - self.now())
                try:
                    data, addr = await asyncio.wait_for(self.proto.queue.get(), timeout=wait)
                except TimeoutError:
                    if self.now() >= deadline:
                        raise AssertionError(f"no answer from the Go daemon; events so far: {run.events}") from None
                    run.events += tick(ep, self.now())
                    self._flush(run)
                    continue
                run.received.append(data)
                run.events += feed(ep, data, addr, self.now())
                self._flush(run)
        for data in extra or []:
            run.events += feed(ep, data, self.go.daemon, self.now())
        return run


def _ping(src: int, dst: int, seq: int, payload: bytes) -> Packet:
    return Packet(0, PacketProtocol.CONTROL, Addr(0, src), Addr(0, dst), 49152 + seq, 0, seq=seq, payload=payload)


@pytest.mark.req("TUN-018", "TUN-019", "SEC-008", "SEC-011", "NONCE-003", "SEC-006", "CONS-016", "CONS-019")
@pytest.mark.parametrize("profile", [Profile.GO_INTEROP, Profile.DRAFT])
def test_pila_session_with_go_daemon(go_net: GoNet, profile: Profile) -> None:
    ident = Identity.from_seed(os.urandom(32))
    me = register(go_net, ident)
    ep = TunnelEndpoint(me, os.urandom, identity=ident, config=TunnelConfig.for_profile(profile),
                        peer_keys={go_net.node_id: go_net.ed25519})  # fmt: skip
    asyncio.run(_pila_session(ep, go_net, me, profile))


async def _pila_session(ep: TunnelEndpoint, go_net: GoNet, me: int, profile: Profile) -> None:
    async with Driver(ep, go_net) as drv:
        if profile is Profile.DRAFT and go_head():
            await _draft_refuses_go_head_pila(drv, ep, go_net, me)
        else:
            await _pila_checks(drv, ep, go_net, me, profile)


async def _draft_refuses_go_head_pila(drv: Driver, ep: TunnelEndpoint, go_net: GoNet, me: int) -> None:
    """E-TNL-3 under ``draft``: GoC's PILA (136 + trailer) is refused as ``trailing_data``; nothing is delivered."""
    run = Run()
    ep.send(go_net.node_id, _ping(me, go_net.node_id, 7, b"draft ping"), drv.now())
    drv._flush(run)
    deadline = drv.now() + 4.0
    while drv.now() < deadline:
        try:
            data, addr = await asyncio.wait_for(drv.proto.queue.get(), timeout=0.1)
        except TimeoutError:
            run.events += tick(ep, drv.now())
            drv._flush(run)
            continue
        run.received.append(data)
        run.events += feed(ep, data, addr, drv.now())
        drv._flush(run)
    pilas = [d for d in run.received if d[:4] == b"PILA"]
    assert pilas and all(go_pila_length_ok(len(d)) and len(d) > 136 for d in pilas), [len(d) for d in pilas]
    refused = [e for e in run.events if isinstance(e, InputRejected) and e.code is ErrorCode.TRAILING_DATA]
    assert len(refused) >= 1 and all(e.size == len(pilas[0]) for e in refused), run.events
    assert not [e for e in run.events if isinstance(e, (KeyEstablished, PacketReceived))], run.events


async def _pila_checks(drv: Driver, ep: TunnelEndpoint, go_net: GoNet, me: int, profile: Profile) -> None:
    run = await drv.exchange([_ping(me, go_net.node_id, 7, b"pilot-proto ping 1")])
    established = [e for e in run.events if isinstance(e, KeyEstablished)]
    assert established == [KeyEstablished(go_net.node_id, True, go_net.daemon)]
    assert run.sent[0][:4] == b"PILA" and len(run.sent[0]) == 136
    kex = [d for d in run.received if d[:4] in (b"PILA", b"PILK")]
    assert kex and kex[0][:4] == b"PILA" and go_pila_length_ok(len(kex[0])), [len(d) for d in kex]
    if go_head():  # GoC's trailer (E-TNL-3): its answer to our PILA is flagged as a response
        caps, flags = parse_pila_trailer(kex[0][136:])
        assert flags & KEX_FLAG_RESPONSE, (caps, flags, kex[0][136:])
    pils = [d for d in run.received if d[:4] == b"PILS"]
    assert int.from_bytes(pils[0][12:20], "big") == 1  # Go pre-increments (E-NONCE-1)
    (pong,) = [e for e in run.events if isinstance(e, PacketReceived)]
    assert isinstance(pong, PacketReceived) and pong.encrypted
    pkt = pong.packet
    assert pkt.protocol == PacketProtocol.CONTROL and pkt.flags == Flags.ACK
    assert (pkt.src, pkt.dst, pkt.src_port, pkt.dst_port) == (Addr(0, go_net.node_id), Addr(0, me), 0, 49159)
    assert (pkt.seq, pkt.ack, pkt.payload) == (7, 8, b"pilot-proto ping 1")
    assert len(pils[0]) == 20 + 34 + len(pkt.payload) + 16
    # our own first counter on the wire follows the profile
    ours = [d for d in run.sent if d[:4] == b"PILS"]
    assert int.from_bytes(ours[0][12:20], "big") == (1 if profile is Profile.GO_INTEROP else 0)

    # replay and forgery against our receiver, then real traffic again
    forged = bytearray(pils[0])
    forged[-1] ^= 1
    run2 = await drv.exchange([_ping(me, go_net.node_id, 9, b"ping 2")], extra=[pils[0], bytes(forged)])
    rejected = [e for e in run2.events if isinstance(e, InputRejected)]
    assert [e.code for e in rejected] == [ErrorCode.REPLAY, ErrorCode.REPLAY]
    pong2 = [e for e in run2.events if isinstance(e, PacketReceived)]
    assert [e.packet.payload for e in pong2] == [b"ping 2"]
    late = bytearray(run2.received[-1])
    late[-1] ^= 1
    (bad,) = feed(ep, bytes(late), go_net.daemon, 99.0)
    assert isinstance(bad, InputRejected) and bad.code is ErrorCode.REPLAY
    fresh_forgery = bytearray(run2.received[-1])
    fresh_forgery[12:20] = (int.from_bytes(fresh_forgery[12:20], "big") + 1000).to_bytes(8, "big")
    (bad2,) = feed(ep, bytes(fresh_forgery), go_net.daemon, 99.0)
    assert isinstance(bad2, InputRejected) and bad2.code is ErrorCode.AUTH_FAILED
    run3 = await drv.exchange([_ping(me, go_net.node_id, 11, b"ping 3")])
    assert [e.packet.payload for e in run3.events if isinstance(e, PacketReceived)] == [b"ping 3"]
    print(
        f"\nGo interop ({profile.value}): our node {me}, Go node {go_net.node_id}; "
        f"sent {[len(d) for d in run.sent]}, received {[len(d) for d in run.received]}; "
        f"Go first counter {int.from_bytes(pils[0][12:20], 'big')}, ours {int.from_bytes(ours[0][12:20], 'big')}"
    )


@pytest.mark.req("TUN-016", "TUN-017", "SEC-004")
def test_anonymous_pilk_from_unregistered_node(go_net: GoNet) -> None:
    me = 0x00ABCDEF  # not in the Go registry, so Go accepts an anonymous exchange
    ep = TunnelEndpoint(me, os.urandom, config=TunnelConfig.for_profile("go-interop"),
                        peer_keys={go_net.node_id: go_net.ed25519})  # fmt: skip
    run = asyncio.run(_anon(ep, go_net, me))
    assert run.sent[0][:4] == b"PILK" and len(run.sent[0]) == 40
    assert run.received[0][:4] == b"PILA"  # Go always answers with its identity
    assert [e for e in run.events if isinstance(e, KeyEstablished)] == [
        KeyEstablished(go_net.node_id, True, go_net.daemon)
    ]
    assert [e.packet.payload for e in run.events if isinstance(e, PacketReceived)] == [b"anon"]


async def _anon(ep: TunnelEndpoint, go_net: GoNet, me: int) -> Run:
    async with Driver(ep, go_net) as drv:
        return await drv.exchange([_ping(me, go_net.node_id, 3, b"anon")])


@pytest.mark.req("NONCE-006", "NONCE-005", "CONS-011")
def test_rekey_at_injected_counter_limit_with_go_daemon(go_net: GoNet) -> None:
    ident = Identity.from_seed(os.urandom(32))
    me = register(go_net, ident)
    cfg = TunnelConfig.for_profile("go-interop", counter_limit=4, rekey_margin=1)
    ep = TunnelEndpoint(me, os.urandom, identity=ident, config=cfg, peer_keys={go_net.node_id: go_net.ed25519})

    async def go() -> Run:
        async with Driver(ep, go_net) as drv:
            return await drv.exchange([_ping(me, go_net.node_id, i, f"r{i}".encode()) for i in range(8)])

    run = asyncio.run(go())
    assert [e.packet.payload for e in run.events if isinstance(e, PacketReceived)] == [
        f"r{i}".encode() for i in range(8)
    ]
    rekeys = [e for e in run.events if isinstance(e, Rekeyed)]
    assert len(rekeys) >= 2
    assert all(int.from_bytes(d[12:20], "big") < 4 for d in run.sent if d[:4] == b"PILS")
    print(
        f"\nGo re-key: {len(rekeys)} re-keys over 8 pings with counter_limit=4; kinds sent {[d[:4] for d in run.sent]}"
    )


@pytest.mark.req("CONS-019")
def test_go_reference_is_locked_out_by_one_forged_counter(go_net: GoNet) -> None:
    """Characterises GoB (erratum E-REPLAY-1): a forged PILS with a huge counter moves Go's window before the
    tag check, so Go then drops every real frame as too old.  Our receiver does not (tests/test_tunnel_pils.py)."""
    ident = Identity.from_seed(os.urandom(32))
    me = register(go_net, ident)
    ep = TunnelEndpoint(me, os.urandom, identity=ident, config=TunnelConfig.for_profile("go-interop"),
                        peer_keys={go_net.node_id: go_net.ed25519})  # fmt: skip

    async def go() -> tuple[Run, bool]:
        async with Driver(ep, go_net) as drv:
            first = await drv.exchange([_ping(me, go_net.node_id, 1, b"before")])
            forged = bytearray(next(d for d in first.sent if d[:4] == b"PILS"))
            forged[12:20] = ((1 << 64) - 2).to_bytes(8, "big")  # attacker-chosen counter, tag now invalid
            drv.transport.sendto(bytes(forged), go_net.daemon)
            await asyncio.sleep(0.2)
            try:
                await asyncio.wait_for(drv.exchange([_ping(me, go_net.node_id, 2, b"after")]), timeout=3)
            except (AssertionError, TimeoutError):
                return first, False
            return first, True

    global STEP_TIMEOUT
    saved, STEP_TIMEOUT = STEP_TIMEOUT, 2.0
    try:
        first, answered = asyncio.run(go())
    finally:
        STEP_TIMEOUT = saved
    assert [e.packet.payload for e in first.events if isinstance(e, PacketReceived)] == [b"before"]
    assert not answered, "GoB answered after the forged counter: erratum E-REPLAY-1 no longer reproduces"


@pytest.mark.req("SEC-011", "CONS-019")
@pytest.mark.parametrize("profile", [Profile.GO_INTEROP, Profile.DRAFT])
def test_replayed_go_pila_from_elsewhere_moves_nothing(go_net: GoNet, profile: Profile) -> None:
    """Erratum E-TNL-1 against a real GoB: its PILA (always its one per-process X25519 key) replayed from another
    address, and a PILK claiming its node ID, neither move nor replace our session; pings still go through."""
    if profile is Profile.DRAFT and go_head():
        pytest.skip("draft forms no session with GoC (its PILA has a trailer, E-TNL-3; see test_pila_session_...)")
    ident = Identity.from_seed(os.urandom(32))
    me = register(go_net, ident)
    ep = TunnelEndpoint(me, os.urandom, identity=ident, config=TunnelConfig.for_profile(profile),
                        peer_keys={go_net.node_id: go_net.ed25519})  # fmt: skip
    elsewhere = (LOOPBACK, 9)  # the discard port: nothing listens there

    async def go() -> tuple[Run, list[Event], Run]:
        async with Driver(ep, go_net) as drv:
            first = await drv.exchange([_ping(me, go_net.node_id, 1, b"before")])
            go_pila = next(d for d in first.received if d[:4] == b"PILA")
            live = ep.peers[go_net.node_id].active
            events = feed(ep, go_pila, elsewhere, drv.now()) + feed(
                ep, go_pila[:40].replace(b"PILA", b"PILK"), elsewhere, drv.now()
            )
            assert ep.peers[go_net.node_id].address == go_net.daemon and ep.peers[go_net.node_id].active is live
            assert all(d.addr == elsewhere for d in ep.datagrams_to_send())  # at most a re-answer, at its source
            after = await drv.exchange([_ping(me, go_net.node_id, 2, b"after")])
            return first, events, after

    first, events, after = asyncio.run(go())
    assert [e.packet.payload for e in first.events if isinstance(e, PacketReceived)] == [b"before"]
    assert [e.code for e in events if isinstance(e, InputRejected)] == [ErrorCode.AUTH_REQUIRED]  # the PILK
    assert [e.packet.payload for e in after.events if isinstance(e, PacketReceived)] == [b"after"]
