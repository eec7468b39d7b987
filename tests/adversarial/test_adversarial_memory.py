"""Issue 9: memory and work under floods stay bounded (``tracemalloc``; figures printed with ``-s``).

* 10^5 garbage datagrams (noise, bad magic, truncated frames, PILS with forged tags from a keyed peer,
  PILS from unknown senders, PILT) into a sans-IO ``Node`` that has a live session;
* 10^4 PILKs from distinct node IDs -- from one source, and from 10^4 distinct sources with the clock
  running -- counting the X25519 operations the node spends and the peers it keeps.
"""

from __future__ import annotations

import gc
import os
import random
import struct
import tracemalloc
from collections.abc import Callable

import pytest
from rawpeer import SYN, RawPeer, packet

from pilot_proto.node import Node
from pilot_proto.sansio import InputRejected
from pilot_proto.tunnel import KeyEstablished, TunnelConfig

US, PEER = 2, 1
HOME = ("127.0.0.1", 4001)


def _measure(run: Callable[[], None]) -> tuple[int, int]:
    """(bytes still allocated after ``run`` minus before, peak during ``run`` minus before)."""
    gc.collect()
    tracemalloc.start()
    base = _measure.base = tracemalloc.get_traced_memory()[0]  # type: ignore[attr-defined]
    try:
        run()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return current - base, peak - base


def _keyed_node(**tunnel: object) -> tuple[Node, RawPeer]:
    node = Node(US, os.urandom, tunnel_config=TunnelConfig.for_profile("draft", **tunnel))
    node.listen(7)
    peer = RawPeer(PEER)
    node.receive_datagram(peer.kex(), HOME, 0.0)
    (answer,) = node.datagrams_to_send()
    peer.take_answer(answer.data)
    node.receive_datagram(peer.seal(packet(src=(0, PEER), dst=(0, US), sport=1, dport=7, flags=SYN)), HOME, 0.0)
    node.datagrams_to_send()
    while node.next_event() is not None:
        pass
    return node, peer


def _garbage(peer: RawPeer, n: int) -> list[bytes]:
    rnd = random.Random(9)
    good = peer.seal(packet(src=(0, PEER), dst=(0, US), sport=2, dport=7, flags=SYN))
    kinds = [
        lambda: rnd.randbytes(rnd.randrange(0, 80)),
        lambda: b"XXXX" + rnd.randbytes(40),
        lambda: b"PILS" + rnd.randbytes(rnd.randrange(0, 35)),
        lambda: good[:20] + rnd.randbytes(len(good) - 20),  # keyed sender, forged ciphertext/tag
        lambda: b"PILS" + struct.pack(">I", rnd.randrange(3, 1 << 32)) + rnd.randbytes(60),  # unknown sender
        lambda: b"PILT" + packet(src=(0, PEER), dst=(0, US), sport=3, dport=7, flags=SYN),
        lambda: b"PILA" + rnd.randbytes(132),
    ]
    return [kinds[i % len(kinds)]() for i in range(n)]


@pytest.mark.slow
def test_1e5_garbage_datagrams_leave_memory_bounded() -> None:
    """A driver that pulls events: every datagram is refused once, and the second half of the flood adds nothing.

    The one table garbage can fill is the key-exchange source table (a PILA-looking frame pays before its
    signature is checked); it is made small here so it is full by half-time (its bound is ``kex_sources``).
    """
    node, peer = _keyed_node(kex_sources=64)
    datagrams = _garbage(peer, 100_000)
    rejected = 0
    half: list[int] = []

    def flood() -> None:
        nonlocal rejected
        for i, d in enumerate(datagrams):
            node.receive_datagram(d, ("10.9.9.9", 1000 + i % 50_000), 1.0 + i * 1e-5)
            node.datagrams_to_send()
            while (ev := node.next_event()) is not None:
                rejected += isinstance(ev, InputRejected)
            if i == 49_999:
                gc.collect()
                half.append(tracemalloc.get_traced_memory()[0])

    retained, peak = _measure(flood)
    growth = tracemalloc_base_free(retained, half[0])
    print(f"\n10^5 garbage: retained {retained} B (second 5*10^4 added {growth} B), peak {peak} B")
    assert rejected == 100_000  # every datagram refused, each exactly once
    assert growth < 4 * 1024  # bounded: the tables it touches (rate buckets, counters) are full by half-time
    assert len(node.tunnel._admission) == 64
    assert len(node.tunnel.peers) == 1 and node.tunnel.peers[PEER].address == HOME


def tracemalloc_base_free(retained: int, at_half: int) -> int:
    """Bytes added by the second half (``at_half`` was read with the base still included)."""
    return retained - (at_half - _measure.base)  # type: ignore[attr-defined]


def test_rejections_nobody_pulls_stay_bounded() -> None:
    node, peer = _keyed_node()
    datagrams = _garbage(peer, 10_000)

    def flood() -> None:
        for i, d in enumerate(datagrams):
            node.receive_datagram(d, ("10.9.9.9", 1000 + i), 1.0)
            node.datagrams_to_send()

    retained, peak = _measure(flood)
    cap = node.tunnel.config.max_queued_rejections
    pending = 0
    while (ev := node.next_event()) is not None:
        pending += isinstance(ev, InputRejected)
    print(f"\n10^4 garbage, events never pulled: {pending} queued (cap {cap}), retained {retained} B, peak {peak} B")
    assert pending == cap and node.dropped["rejections_unreported"] == 10_000 - cap
    assert retained < cap * 1024 + 256 * 1024


def _pilk(node_id: int) -> bytes:
    return b"PILK" + struct.pack(">I", node_id) + os.urandom(32)


def test_1e4_pilks_from_one_source_cost_a_burst_of_x25519_and_no_memory() -> None:
    node, _ = _keyed_node()
    cfg = node.tunnel.config
    answers = established = 0

    def flood() -> None:
        nonlocal answers, established
        for i in range(10_000):
            node.receive_datagram(_pilk(10_000 + i), ("10.1.1.1", 999), 1.0)
            answers += len(node.datagrams_to_send())
            while (ev := node.next_event()) is not None:
                established += isinstance(ev, KeyEstablished)

    retained, peak = _measure(flood)
    print(f"\n10^4 PILK, one source: {established} X25519 ops, {answers} answers, retained {retained} B, peak {peak} B")
    assert established == answers == int(2 * cfg.kex_rate_per_source)
    assert retained < 200 * 1024


@pytest.mark.slow
def test_1e4_pilks_from_distinct_sources_are_capped_in_work_and_peers() -> None:
    node, _ = _keyed_node()
    cfg = node.tunnel.config
    answers = established = 0
    step = 1e-3
    n = 10_000

    def flood() -> None:
        nonlocal answers, established
        for i in range(n):
            node.receive_datagram(_pilk(10_000 + i), (f"10.2.{i // 250}.{i % 250}", 7000 + i), 1.0 + i * step)
            answers += len(node.datagrams_to_send())
            while (ev := node.next_event()) is not None:
                established += isinstance(ev, KeyEstablished)

    retained, peak = _measure(flood)
    budget = cfg.kex_rate_unknown + cfg.kex_rate_unknown * n * step  # burst + rate x elapsed
    peers = len(node.tunnel.peers)
    print(
        f"\n10^4 PILK, distinct sources over {n * step:.0f} s: {established} X25519 ops (budget {budget:.0f}), "
        f"{peers} peers kept (cap {cfg.max_inbound_peers} + 1), retained {retained} B, peak {peak} B"
    )
    assert established == answers <= budget + 1
    assert peers <= cfg.max_inbound_peers + 1 and PEER in node.tunnel.peers  # the talking peer survives
    assert retained < (cfg.max_inbound_peers + 1) * 4096 + cfg.kex_sources * 512
