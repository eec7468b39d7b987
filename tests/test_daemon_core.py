"""The sans-IO Daemon: port table, RST for closed ports, trust gate, services and the application API."""

from __future__ import annotations

import os

import pytest

from pilot_proto.daemon.core import (
    AppAccepted,
    AppClosed,
    AppConnected,
    AppData,
    AppDatagram,
    AppDialFailed,
    AppEnded,
    Daemon,
)
from pilot_proto.errors import LocalProtocolError
from pilot_proto.profile import Profile
from pilot_proto.services import EchoService
from pilot_proto.tunnel import Identity
from pilot_proto.wire.address import Addr, SocketAddr

A_ADDR, B_ADDR = ("10.0.0.1", 1), ("10.0.0.2", 2)


class Pair:
    """Two daemons joined by a perfect in-memory link; time moves only through ``run``."""

    def __init__(self, *, a_public: bool = True, b_public: bool = True, profile: Profile = Profile.DRAFT) -> None:
        self.now = 1000.0
        ia, ib = Identity.from_seed(b"\x01" * 32), Identity.from_seed(b"\x02" * 32)
        keys = {1: ia.public_bytes, 2: ib.public_bytes}
        self.a = Daemon(1, os.urandom, identity=ia, public=a_public, profile=profile, services=[EchoService()],
                        peer_keys=keys.get)  # fmt: skip
        self.b = Daemon(2, os.urandom, identity=ib, public=b_public, profile=profile, services=[EchoService()],
                        peer_keys=keys.get)  # fmt: skip
        for d in (self.a, self.b):
            d.start(self.now)
            d.clock_offset = 1_700_000_000 - self.now
        self.a.add_peer(2, B_ADDR, ib.public_bytes)
        self.b.add_peer(1, A_ADDR, ia.public_bytes)
        self.events: dict[int, list[object]] = {1: [], 2: []}

    def run(self, rounds: int = 400, max_gap: float = 5.0) -> None:
        for _ in range(rounds):
            moved = False
            for src, dst, addr in ((self.a, self.b, A_ADDR), (self.b, self.a, B_ADDR)):
                for data, _ in src.datagrams_to_send():
                    dst.receive_datagram(data, addr, self.now)
                    moved = True
            for d in (self.a, self.b):
                while (ev := d.next_event()) is not None:
                    self.events[d.node_id].append(ev)
            if not moved:
                timers = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
                if not timers or min(timers) - self.now > max_gap:
                    return
                self.now = max(self.now, min(timers))
                for d in (self.a, self.b):
                    d.handle_timer(self.now)

    def of(self, node: int, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events[node] if isinstance(e, kind)]


@pytest.mark.req("SVC-001")
def test_echo_service_through_two_daemons() -> None:
    """Data and FIN leave together; the peer's FIN arrives in the same batch as the last data, and every byte is
    still echoed before the echo side closes (issue 9: a FIN must not close the echo before it wrote)."""
    p = Pair()
    cid = p.a.dial("app", SocketAddr(Addr(0, 2), 7), p.now)
    p.run()
    assert [e.conn_id for e in p.of(1, AppConnected)] == [cid]
    payload = os.urandom(50_000)
    p.a.send(cid, payload, p.now)
    p.a.close(cid, p.now)
    p.run()
    assert b"".join(e.data for e in p.of(1, AppData)) == payload
    assert p.of(1, AppEnded) and p.of(1, AppClosed)
    assert p.b.services["echo"].conns == {}  # the echo connection is gone on B


@pytest.mark.req("SES-004")
def test_closed_port_is_refused_with_rst() -> None:
    p = Pair()
    p.a.dial("app", SocketAddr(Addr(0, 2), 4242), p.now)
    p.run()
    (failed,) = p.of(1, AppDialFailed)
    assert failed.reason == "reset"


def test_bind_accept_and_ephemeral_ports() -> None:
    p = Pair()
    assert p.b.bind(77, 5000) == 5000
    with pytest.raises(LocalProtocolError):
        p.b.bind(78, 5000)
    eph = p.b.bind(78, 0)
    assert 49152 <= eph <= 65535 and p.b.ports[eph] == 78
    cid = p.a.dial("app", SocketAddr(Addr(0, 2), 5000), p.now)
    p.run()
    (acc,) = p.of(2, AppAccepted)
    assert acc.owner == 77 and acc.local_port == 5000 and acc.remote.addr == Addr(0, 1)
    p.a.send(cid, b"to the app", p.now)
    p.run()
    assert [e.data for e in p.of(2, AppData)] == [b"to the app"]
    p.b.release(77, p.now)  # the application disconnects: its connection closes, its port is free again
    p.run()
    assert 5000 not in p.b.ports and p.of(1, AppEnded)


@pytest.mark.req("SEC-015", "SEC-018", "SEC-022")
def test_private_daemon_drops_untrusted_syn_until_trust_is_approved() -> None:
    p = Pair(b_public=False)
    p.a.dial("app", SocketAddr(Addr(0, 2), 7), p.now)
    p.run(max_gap=120.0)  # through every SYN retry
    assert p.b.stats["gate_dropped"] >= 1 and not p.of(1, AppConnected)  # silently dropped: no RST, no SYN-ACK
    assert p.of(1, AppDialFailed)[0].reason == "connect_timeout"
    p.a.send_to(Addr(0, 2), 9000, b"dgram", p.now)
    p.run()
    assert not p.of(2, AppDatagram)
    # the trust handshake on port 444 passes the gate; B's operator approves
    assert p.a.handshake(2, "let me in", p.now) == "sent"
    p.run()
    assert 1 in p.b.trust.pending  # type: ignore[union-attr]
    p.b.approve(1, p.now)
    p.run()
    assert p.a.is_trusted(2) and p.b.is_trusted(1)
    cid = p.a.dial("app", SocketAddr(Addr(0, 2), 7), p.now)
    p.run()
    assert cid in [e.conn_id for e in p.of(1, AppConnected)]
    p.a.send_to(Addr(0, 2), 9000, b"dgram", p.now)
    p.run()
    assert [e.data for e in p.of(2, AppDatagram)] == [b"dgram"]


def test_info_reports_go_field_names() -> None:
    p = Pair()
    p.a.dial("app", SocketAddr(Addr(0, 2), 7), p.now)
    p.run()
    info = p.a.info(p.now + 5)
    for key in ("node_id", "address", "uptime_secs", "connections", "ports", "peers", "bytes_sent", "bytes_recv",
                "pkts_sent", "pkts_recv", "peer_list", "conn_list", "encrypt", "identity"):  # fmt: skip
        assert key in info, key
    assert info["node_id"] == 1 and info["peers"] == 1 and info["peer_list"][0]["encrypted"] is True
    assert info["conn_list"][0]["remote_port"] == 7 and info["uptime_secs"] >= 5


def test_writes_larger_than_the_send_buffer_arrive_exactly_in_order() -> None:
    """Daemon.send queues what the stream cannot take yet and hands it over piece by piece as the send buffer
    drains (Writable, draft 8.10): several writes, bytes and bytearray, one larger than the whole buffer."""
    from pilot_proto.stream import StreamConfig

    p = Pair()
    cfg = StreamConfig.for_profile("draft", auto_close_on_peer_fin=False, send_buffer_bytes=64 * 1024)
    for d in (p.a, p.b):
        d.node.stream.config = cfg
    p.b.bind(77, 5000)
    cid = p.a.dial("app", SocketAddr(Addr(0, 2), 5000), p.now)
    p.run()
    assert p.a.node.stream.connection(cid)._sbuf_cap == 64 * 1024
    mutable = bytearray(os.urandom(3000))
    writes: list[bytes | bytearray] = [os.urandom(200_000), mutable, os.urandom(70_000), b"tail"]
    expected = b"".join(writes)
    for w in writes:
        p.a.send(cid, w, p.now)
    assert 0 < p.a.unsent(cid) < len(expected)  # the stream took only what fits
    mutable[:] = bytes(3000)  # the daemon copied the mutable write: changing it now changes nothing sent
    p.run(rounds=4000)
    assert p.a.unsent(cid) == 0
    assert b"".join(e.data for e in p.of(2, AppData)) == expected
