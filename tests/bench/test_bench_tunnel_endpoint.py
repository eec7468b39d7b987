"""Whole tunnel endpoint path per packet -- ``send`` on one endpoint, ``receive_datagram`` + ``next_event`` on
the other -- against raw AES-256-GCM encrypt+decrypt of the same packet, in the same run (no timed assertions).

Run with ``python -m pytest tests/bench/test_bench_tunnel_endpoint.py --benchmark-enable -s``.  The ratio is
``raw time / endpoint time``; it shows what framing, routing by sender, the replay window, the freshness and
admission rules and the event cost on top of the AEAD.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from test_bench_pils import _interleaved_best

from pilot_proto.testing.keys import InsecureDeterministicRng
from pilot_proto.tunnel import PacketReceived, TunnelConfig, TunnelEndpoint
from pilot_proto.wire.address import Addr
from pilot_proto.wire.header import Packet, PacketProtocol, encode_packet

A, B = 0x0001F291, 9
ADDR = {A: ("127.0.0.1", 1), B: ("127.0.0.1", 2)}


def _pair() -> tuple[TunnelEndpoint, TunnelEndpoint]:
    cfg = TunnelConfig.for_profile("draft")
    a = TunnelEndpoint(A, InsecureDeterministicRng("bench/a"), config=cfg)
    b = TunnelEndpoint(B, InsecureDeterministicRng("bench/b"), config=cfg)
    a.add_peer(B, ADDR[B])
    b.add_peer(A, ADDR[A])
    a.send(B, Packet(0x2, PacketProtocol.DATAGRAM, Addr(0, A), Addr(0, B), 1, 2, payload=b"k"), 0.0)
    for _ in range(3):
        for d in a.datagrams_to_send():
            b.receive_datagram(d.data, ADDR[A], 0.0)
        for d in b.datagrams_to_send():
            a.receive_datagram(d.data, ADDR[B], 0.0)
    while b.next_event() is not None:
        pass
    while a.next_event() is not None:
        pass
    return a, b


@pytest.mark.req("TUN-012", "SEC-006")
@pytest.mark.parametrize("size", [1024, 4096])
def test_bench_tunnel_endpoint_send_receive(benchmark, size: int) -> None:  # type: ignore[no-untyped-def]
    a, b = _pair()
    pkt = encode_packet(Packet(0x2, PacketProtocol.STREAM, Addr(0, A), Addr(0, B), 1, 2, payload=bytes(size - 34)))
    addr_a = ADDR[A]

    def endpoint() -> object:
        a.send(B, pkt, 1.0)
        (d,) = a.datagrams_to_send()
        b.receive_datagram(d.data, addr_a, 1.0)
        return b.next_event()

    raw = AESGCM(bytes(32))
    nonce, aad = bytes(12), A.to_bytes(4, "big")

    def baseline() -> bytes:
        return raw.decrypt(nonce, raw.encrypt(nonce, pkt, aad), aad)

    ev = endpoint()
    assert isinstance(ev, PacketReceived) and len(ev.packet.payload) == size - 34
    benchmark(endpoint)
    if benchmark.disabled:
        return
    t_raw, t_ep = _interleaved_best([baseline, endpoint])
    ratio = t_raw / t_ep
    benchmark.extra_info.update({"raw_us": t_raw * 1e6, "endpoint_us": t_ep * 1e6, "ratio_vs_raw": ratio})
    print(f"\ntunnel endpoint {size} B: {t_ep * 1e6:.2f} us vs raw AESGCM {t_raw * 1e6:.2f} us -> {ratio:.1%} of raw")
