"""NatNode's cost: goodput of a stream through NatNode (path manager in the way) against a bare Node, same run.

Run with ``python -m pytest tests/bench/test_bench_nat.py --benchmark-enable -s``.  Both sides move the
same 2 MiB between two nodes with PILA keys over the in-memory simulator on public endpoints (no NAT
boxes, so the simulator's own work is the same); the ratio is ``bare time / NatNode time`` (1.0: the
wiring is free), best of interleaved rounds on the thread CPU clock, printed and stored in
``benchmark.extra_info``.  No timed assertions.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pilot_proto.nat import BeaconServer, NatConfig, NatNode
from pilot_proto.node import Node
from pilot_proto.sansio import DatagramEndpoint
from pilot_proto.stream import events as sev
from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
from pilot_proto.testing.nat import BEACON_ENDPOINT, SimNetwork
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.beacon import Endpoint

SIZE = 2 << 20
A, B = 10, 11
EPS = {A: Endpoint("192.0.2.10", 1), B: Endpoint("192.0.2.11", 1)}


def transfer(through_nat: bool) -> int:
    """Move SIZE bytes A -> B; returns the bytes B received."""
    net = SimNetwork(latency=0.001)
    ids = {n: insecure_test_identity(n) for n in (A, B)}
    keys = {n: i.public_bytes for n, i in ids.items()}
    nodes = {n: Node(n, InsecureDeterministicRng(str(n)), identity=ids[n], peer_keys=keys) for n in (A, B)}
    eps: dict[int, DatagramEndpoint] = {}
    if through_nat:
        net.add(BeaconServer(), BEACON_ENDPOINT)
        for n, node in nodes.items():
            nn: NatNode[Node] = NatNode(node, BEACON_ENDPOINT, NatConfig(use_punch=False))
            nn.dial(B if n == A else A, EPS[B if n == A else A], 0.0)
            eps[n] = nn
    else:
        nodes[A].add_peer(B, EPS[B])
        nodes[B].add_peer(A, EPS[A])
        eps = dict(nodes)
    for n, ep in eps.items():
        net.add(ep, EPS[n])
    nodes[B].listen(7)
    cid = nodes[A].connect(SocketAddr(Addr(0, B), 7), 0.0)
    nodes[A].send(cid, bytes(SIZE), 0.0)
    net.run_for(60.0)
    return sum(len(e.data) for _, e in net.events_of(eps[B]) if isinstance(e, sev.DataReceived))


def _cpu_seconds(fn: Callable[[], object]) -> float:
    t0 = time.thread_time_ns()
    fn()
    return (time.thread_time_ns() - t0) / 1e9


@pytest.mark.req("NAT-024", "NAT-034")
def test_bench_nat_node_goodput(benchmark) -> None:  # type: ignore[no-untyped-def]
    assert transfer(False) == SIZE
    result = benchmark.pedantic(transfer, args=(True,), rounds=1, iterations=1)
    assert result == SIZE
    if benchmark.disabled:
        return
    bare, nat = float("inf"), float("inf")
    for _ in range(5):  # interleaved, best of each
        bare = min(bare, _cpu_seconds(lambda: transfer(False)))
        nat = min(nat, _cpu_seconds(lambda: transfer(True)))
    ratio = bare / nat
    benchmark.extra_info.update({"bare_s": bare, "nat_s": nat, "ratio": ratio})
    mb = SIZE / 1e6
    print(f"\n2 MiB stream: bare Node {mb / bare:.1f} MB/s, NatNode {mb / nat:.1f} MB/s (CPU), ratio {ratio:.2f}")
