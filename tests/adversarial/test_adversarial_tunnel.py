"""Issue 9, tunnel and node defects, probed with an independent raw-frame peer (``rawpeer``: plain
``cryptography`` + ``struct``, no ``pilot_proto`` codec) against our node -- in-process (sans-IO ``Node``) and
over real UDP on 127.0.0.1 (``NodeDriver``).  Every wait is bounded; "no answer" means none within 0.3 s.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from adv_wires import Port, SansIOWire, UdpWire, wire_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rawpeer import ACK, RST, SYN, RawPeer, packet

from pilot_proto.node import Node
from pilot_proto.testing.keys import insecure_test_identity

US, PEER, THIRD = 2, 1, 9
QUIET = 0.3


def _node(profile: str = "draft", *, known: dict[int, bytes] | None = None, identity: bool = True) -> Node:
    return Node(
        US,
        os.urandom,
        profile=profile,
        identity=insecure_test_identity(US) if identity else None,
        peer_keys=known or {},
    )


def _on_node(wire: SansIOWire | UdpWire, fn: Callable[[Node], Any]) -> Any:
    return fn(wire.node) if isinstance(wire, SansIOWire) else wire.call(fn, wire.node)


@pytest.fixture(params=["sansio", "udp"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _handshake(peer: RawPeer, port: Port) -> None:
    port.send(peer.kex())
    answer = port.recv()
    assert answer is not None and answer[:4] in (b"PILA", b"PILK"), answer
    assert peer.take_answer(answer) == US


_sports: Iterator[int] = iter(range(40_000, 60_000))


def _syn(peer: RawPeer, *, version: int = 1, src_net: int = 0, dport: int = 7) -> tuple[bytes, int]:
    sport = next(_sports)
    inner = packet(
        src=(src_net, peer.node), dst=(0, US), sport=sport, dport=dport, flags=SYN, seq=1000, version=version
    )
    return inner, sport


def _probe(peer: RawPeer, port: Port, **kw: Any) -> Any:
    """A SYN under our newest session; returns the parsed answer (or None if nothing came back)."""
    inner, sport = _syn(peer, **kw)
    port.send(peer.seal(inner))
    while (frame := port.recv(QUIET if kw else 1.0)) is not None:
        if frame[:4] == b"PILS":
            hdr = peer.open(frame)
            if hdr.dst_port == sport:
                return hdr
    return None


def _alive(peer: RawPeer, port: Port) -> None:
    hdr = _probe(peer, port)
    assert hdr is not None and hdr.flags == SYN | ACK and hdr.ack == 1001, hdr


# -- freshness and binding --------------------------------------------------------------------------------


@pytest.mark.req("SEC-011", "CONS-019")
def test_replayed_older_pila_from_elsewhere_does_not_lock_the_peer_out(kind: str) -> None:
    ident = Ed25519PrivateKey.generate()
    peer = RawPeer(PEER, identity=ident)
    with wire_for(kind, _node(known={PEER: peer_pub(ident)})) as wire:
        home, evil = wire.port(), wire.port()
        _handshake(peer, home)
        _alive(peer, home)
        first_pila = peer.sent_kex[0]
        peer.new_key()  # the peer re-keys
        _handshake(peer, home)
        _alive(peer, home)  # our node took the new key (its first PILS proved it)
        evil.send(first_pila)  # replay of the older PILA from another address
        assert evil.recv(QUIET) is None  # refused as stale: not even answered
        _alive(peer, home)  # the real peer still talks, at its own address
        evil.send(peer.sent_kex[-1])  # replay of the live PILA: at most re-answered at its source (rate-limited)
        answer = evil.recv(QUIET)
        assert answer is None or answer[:4] == b"PILA"
        _alive(peer, home)  # and nothing moved


@pytest.mark.req("TUN-016")
def test_anonymous_pilk_claiming_a_live_session_from_elsewhere_does_not_take_it_over(kind: str) -> None:
    peer, rogue = RawPeer(PEER), RawPeer(PEER)
    with wire_for(kind, _node(identity=False)) as wire:
        home, evil = wire.port(), wire.port()
        _handshake(peer, home)
        _alive(peer, home)
        evil.send(rogue.kex())
        assert evil.recv(QUIET) is None  # refused (spoofed): no answer, no session for the rogue
        _alive(peer, home)


@pytest.mark.req("SEC-005", "SEC-007")
def test_spoofed_plaintext_never_makes_us_send_to_the_claimed_node(kind: str) -> None:
    """Issue 9: a spoofed PILT 'from node 9' made our node start a key exchange with the real node 9."""
    with wire_for(kind, _node()) as wire:
        evil, real_nine = wire.port(), wire.port()
        _on_node(wire, lambda n: n.add_peer(THIRD, real_nine.address))
        syn = packet(src=(0, THIRD), dst=(0, US), sport=40_000, dport=7, flags=SYN, seq=5)
        evil.send(b"PILT" + syn)
        assert real_nine.recv(QUIET) is None and evil.recv(QUIET) is None
        if isinstance(wire, SansIOWire):
            assert not wire.elsewhere


@pytest.mark.req("SEC-005")
def test_plaintext_is_accepted_only_under_a_fallback_in_force(kind: str) -> None:
    with wire_for(kind, _node()) as wire:
        home = wire.port()
        syn = packet(src=(0, PEER), dst=(0, US), sport=40_001, dport=7, flags=SYN, seq=5)
        home.send(b"PILT" + syn)
        assert home.recv(QUIET) is None  # encryption on, no fallback: refused
        _on_node(wire, lambda n: (n.add_peer(PEER, home.address), n.tunnel.allow_plaintext(PEER)))
        home.send(b"PILT" + syn)
        answer = home.recv()
        assert answer is not None and answer[:4] == b"PILT"


# -- version RST through the whole node (draft 12.2) -----------------------------------------------------


@pytest.mark.req("VER-005")
@pytest.mark.parametrize("version", [0, 2, 15])
def test_syn_with_an_unsupported_version_gets_rst_through_pils(kind: str, version: int) -> None:
    peer = RawPeer(PEER)
    with wire_for(kind, _node(identity=False)) as wire:
        home = wire.port()
        _handshake(peer, home)
        hdr = _probe(peer, home, version=version)
        assert hdr is not None and hdr.flags & RST, hdr
        _alive(peer, home)


@pytest.mark.req("VER-005")
def test_syn_with_an_unsupported_version_gets_rst_through_pilt(kind: str) -> None:
    with wire_for(kind, _node()) as wire:
        home = wire.port()
        _on_node(wire, lambda n: (n.add_peer(PEER, home.address), n.tunnel.allow_plaintext(PEER)))
        syn = packet(src=(0, PEER), dst=(0, US), sport=40_002, dport=7, flags=SYN, seq=5, version=2)
        home.send(b"PILT" + syn)
        answer = home.recv()
        assert answer is not None and answer[:4] == b"PILT"
        from rawpeer import parse

        assert parse(answer[4:]).flags & RST


# -- binding of the inner source -------------------------------------------------------------------------


def test_inner_source_network_must_be_the_tunnel_peers(kind: str) -> None:
    peer = RawPeer(PEER)
    with wire_for(kind, _node(identity=False)) as wire:
        home = wire.port()
        _handshake(peer, home)
        assert _probe(peer, home, src_net=5) is None  # the node ID matches, the network does not
        _alive(peer, home)


@pytest.mark.req("SEC-027")
def test_inner_source_node_must_be_the_pils_sender(kind: str) -> None:
    peer = RawPeer(PEER)
    with wire_for(kind, _node(identity=False)) as wire:
        home = wire.port()
        _handshake(peer, home)
        forged = packet(src=(0, THIRD), dst=(0, US), sport=40_003, dport=7, flags=SYN, seq=1)
        home.send(peer.seal(forged))
        assert home.recv(QUIET) is None
        _alive(peer, home)


# -- the Go head's 138-byte PILA (E-TNL-3) -----------------------------------------------------------------


@pytest.mark.req("TUN-005")
@pytest.mark.parametrize("profile", ["draft", "go-interop"])
def test_a_138_byte_pila_is_accepted_under_go_interop_only(kind: str, profile: str) -> None:
    ident = Ed25519PrivateKey.generate()
    peer = RawPeer(PEER, identity=ident, counter_start=1 if profile == "go-interop" else 0)
    with wire_for(kind, _node(profile, known={PEER: peer_pub(ident)})) as wire:
        home = wire.port()
        frame = peer.kex(trailer=b"\x01\x01")  # uvarint caps=1 (gossip), uvarint flags=1 (request)
        assert len(frame) == 138
        home.send(frame)
        answer = home.recv(QUIET)
        if profile == "draft":
            assert answer is None
            return
        assert answer is not None and len(answer) == 136
        peer.take_answer(answer)
        _alive(peer, home)


def peer_pub(ident: Ed25519PrivateKey) -> bytes:
    return ident.public_key().public_bytes_raw()


def test_rawpeer_is_independent_of_our_codecs() -> None:
    """The raw peer imports nothing of ours (so a codec bug we share with it cannot hide)."""
    import ast
    from pathlib import Path

    import rawpeer

    tree = ast.parse(Path(rawpeer.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported and not [m for m in imported if m.startswith("pilot_proto")]
    assert struct.calcsize(">BBHHIHIHHIIHI") == 34


# -- admission: a flood from one source never denies another --------------------------------------------


@pytest.mark.req("SEC-025")
def test_a_pilk_flood_from_one_source_does_not_deny_another_peer(kind: str) -> None:
    with wire_for(kind, _node(identity=False)) as wire:
        evil, home = wire.port(), wire.port()
        answered = 0
        frames = [RawPeer(1000 + i).kex() for i in range(300)]  # distinct node IDs, one source
        t0, w0 = time.monotonic(), getattr(wire, "now", 0.0)
        for frame in frames:
            evil.send(frame)
        while evil.recv(QUIET) is not None:
            answered += 1
        elapsed = getattr(wire, "now", 0.0) - w0 if isinstance(wire, SansIOWire) else time.monotonic() - t0
        # the per-source burst (2 s of 10/s) plus the refill while it ran; the rest cost no X25519, no answer
        assert answered <= 20 + 10 * elapsed + 1, (answered, elapsed)
        peer = RawPeer(PEER)
        _handshake(peer, home)  # another source keys at once
        _alive(peer, home)
