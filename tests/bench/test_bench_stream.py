"""Session-layer speed through the in-memory StreamPair (draft 8), each against a baseline from the same run.

Run with ``python -m pytest tests/bench/test_bench_stream.py --benchmark-enable -s``.  In the default
suite (benchmarks disabled) each test does a token-sized run so it stays fast and still checks results.

* goodput, lossless: a -> b bulk transfer (MSS 4096, nodelay, 1 ms one-way delay) through two full
  StreamEndpoints and the ImpairedLink, in wall-clock MB/s of application bytes delivered; baseline:
  a raw in-memory copy of the same bytes in MSS chunks (slice, append, join).  Goal: >= 200 MB/s.
* goodput with 1 % loss per direction, same transfer; ratio to lossless.  Goal: >= 0.5.
* goodput through the bounded send buffer (default 4 MiB): the application writes what ``send`` takes and
  writes again once half the buffer is free (what ``Writable`` signals); ratio to the one-write transfer of
  the same bytes, interleaved in the same run.  Goal: >= 0.9 (backpressure costs no throughput).
* per-packet cost with 1, 100 and 10 000 established connections on the same two endpoints (the
  others idle); ratio to 1 connection.  Goal: <= 1.5x.

Numbers are printed and stored in ``benchmark.extra_info``; no timed assertions.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from pilot_proto.stream import StreamConfig
from pilot_proto.testing.link import LinkConfig
from pilot_proto.testing.pair import StreamPair
from pilot_proto.wire import SocketAddr

MSS = 4096


def _size(benchmark: Any, full: int, token: int) -> int:
    return token if getattr(benchmark, "disabled", False) else full


def _transfer(nbytes: int, loss: float, seed: int = 1) -> tuple[float, StreamPair]:
    """Wall seconds to move ``nbytes`` a -> b (handshake excluded) and the pair afterwards."""
    # the whole transfer is one write, as before the send buffer was bounded: the measured path is unchanged
    cfg = StreamConfig.for_profile("draft", mss=MSS, nodelay=True, send_buffer_bytes=max(nbytes, 1))
    pair = StreamPair(cfg, link=LinkConfig(delay=0.001), seed=seed, keep_events=False)
    ca, cb = pair.connect()
    pair.link.configure(LinkConfig(delay=0.001, loss=loss))
    data = bytes(nbytes)
    got = pair.sides["b"]
    t0 = time.perf_counter()
    pair.send("a", ca, data)
    ok = pair.run_until(lambda: len(got.received.get(cb, b"")) >= nbytes, max_time=3600.0)
    elapsed = time.perf_counter() - t0
    assert ok and got.data(cb) == data
    return elapsed, pair


def _transfer_backpressured(nbytes: int) -> float:
    """Wall seconds to move ``nbytes`` a -> b through the default send-buffer bound, refilled as it drains."""
    cfg = StreamConfig.for_profile("draft", mss=MSS, nodelay=True)
    pair = StreamPair(cfg, link=LinkConfig(delay=0.001), seed=1, keep_events=False)
    ca, cb = pair.connect()
    data = memoryview(bytes(nbytes))
    got = pair.sides["b"]
    conn = pair.a.connection(ca)
    low_water = cfg.send_buffer_bytes // 2  # Writable's threshold
    t0 = time.perf_counter()
    off = 0
    while off < nbytes:
        off += pair.a.send(ca, data[off:], pair.now)
        pair.flush()
        assert pair.run_until(lambda: conn.send_buffer_free >= low_water, max_time=3600.0)
    ok = pair.run_until(lambda: len(got.received.get(cb, b"")) >= nbytes, max_time=3600.0)
    elapsed = time.perf_counter() - t0
    assert ok and got.data(cb) == bytes(nbytes)
    return elapsed


def _copy_baseline(nbytes: int) -> float:
    """Raw in-memory copy in MSS chunks: the floor any in-process transport pays."""
    data = bytes(nbytes)
    t0 = time.perf_counter()
    mv = memoryview(data)
    chunks = [bytes(mv[i : i + MSS]) for i in range(0, nbytes, MSS)]
    out = b"".join(chunks)
    elapsed = time.perf_counter() - t0
    assert len(out) == nbytes
    return elapsed


def _best(fn: Any, repeat: int) -> Any:
    results = [fn() for _ in range(repeat)]
    return min(results, key=lambda r: r[0] if isinstance(r, tuple) else r)


@pytest.mark.req("SES-040", "SES-093")
def test_goodput_lossless(benchmark: Any) -> None:
    nbytes = _size(benchmark, 32 << 20, 1 << 20)
    repeat = 1 if getattr(benchmark, "disabled", False) else 3
    elapsed, pair = benchmark.pedantic(lambda: _best(lambda: _transfer(nbytes, 0.0), repeat), rounds=1, iterations=1)
    base = _best(lambda: _copy_baseline(nbytes), 5)
    mbps = nbytes / elapsed / 1e6
    base_mbps = nbytes / base / 1e6
    packets = pair.link.stats.delivered
    benchmark.extra_info.update(goodput_MBps=round(mbps, 1), copy_baseline_MBps=round(base_mbps, 1),
                                ratio_to_copy=round(mbps / base_mbps, 4), packets=packets,
                                us_per_packet=round(elapsed / packets * 1e6, 2))  # fmt: skip
    print(f"\nlossless goodput {mbps:.1f} MB/s ({nbytes >> 20} MiB, {packets} packets, "
          f"{elapsed / packets * 1e6:.2f} us/packet); raw copy {base_mbps:.0f} MB/s; "
          f"ratio {mbps / base_mbps:.4f}")  # fmt: skip


@pytest.mark.req("SES-040", "SES-093")
def test_goodput_through_the_bounded_send_buffer(benchmark: Any) -> None:
    nbytes = _size(benchmark, 32 << 20, 9 << 20)  # more than the 4 MiB buffer even in the token run
    repeat = 1 if getattr(benchmark, "disabled", False) else 3

    def measure() -> tuple[float, float]:
        bounded = unbounded = float("inf")
        for _ in range(repeat):  # interleaved so machine load hits both alike
            bounded = min(bounded, _transfer_backpressured(nbytes))
            unbounded = min(unbounded, _transfer(nbytes, 0.0)[0])
        return bounded, unbounded

    bounded, unbounded = benchmark.pedantic(measure, rounds=1, iterations=1)
    ratio = unbounded / bounded
    benchmark.extra_info.update(bounded_MBps=round(nbytes / bounded / 1e6, 1),
                                one_write_MBps=round(nbytes / unbounded / 1e6, 1), ratio=round(ratio, 3))  # fmt: skip
    print(f"\nbackpressured goodput {nbytes / bounded / 1e6:.1f} MB/s vs one write {nbytes / unbounded / 1e6:.1f} "
          f"MB/s: ratio {ratio:.3f}")  # fmt: skip


@pytest.mark.req("SES-040", "SES-063", "SES-073")
def test_goodput_one_percent_loss(benchmark: Any) -> None:
    nbytes = _size(benchmark, 32 << 20, 1 << 20)
    repeat = 1 if getattr(benchmark, "disabled", False) else 3

    def measure() -> tuple[float, float, StreamPair]:
        lossy: tuple[float, StreamPair] = (float("inf"), StreamPair())
        clean = float("inf")
        for _ in range(repeat):  # interleaved so machine load hits both alike
            run = _transfer(nbytes, 0.01)
            lossy = min(lossy, run, key=lambda r: r[0])
            clean = min(clean, _transfer(nbytes, 0.0)[0])
        return lossy[0], clean, lossy[1]

    lossy, clean, pair = benchmark.pedantic(measure, rounds=1, iterations=1)
    ratio = clean / lossy
    st = pair.link.stats
    # how the sender recovered: data packets lost a -> b vs segments sent again, and how often it had to time out
    data_lost = pair.link.direction_stats(pair.addrs["a"], pair.addrs["b"]).lost
    sender = next(pair.a.connections())
    benchmark.extra_info.update(lossy_MBps=round(nbytes / lossy / 1e6, 1), lossless_MBps=round(nbytes / clean / 1e6, 1),
                                ratio=round(ratio, 3), lost=st.lost, sim_seconds=round(pair.now, 3),
                                data_lost=data_lost, retransmits=sender.retransmits, rto=sender.rto_count,
                                fast_recoveries=sender.fast_recoveries)  # fmt: skip
    print(f"\n1% loss goodput {nbytes / lossy / 1e6:.1f} MB/s vs lossless {nbytes / clean / 1e6:.1f} MB/s: "
          f"ratio {ratio:.3f} (lost {st.lost} of {st.sent} packets, {data_lost} of them data; "
          f"{sender.retransmits} retransmissions, {sender.fast_recoveries} fast recoveries, "
          f"{sender.rto_count} RTOs; {pair.now:.2f} s simulated)")  # fmt: skip


def _pair_with_connections(n: int) -> tuple[StreamPair, int, int]:
    cfg = StreamConfig.for_profile("draft", mss=MSS, nodelay=True, max_connections=n + 10,
                                   max_connections_per_port=n + 10, max_connections_per_peer=n + 10,
                                   syn_rate_per_source=None, syn_rate_global=None,
                                   send_buffer_bytes=16 << 20)  # one write per round, never a short one  # fmt: skip
    pair = StreamPair(cfg, link=LinkConfig(delay=0.001), seed=3, keep_events=False)
    pair.b.listen(1000)
    first = pair.a.connect(SocketAddr(pair.addrs["b"], 1000), pair.now)
    for _ in range(n - 1):
        pair.a.connect(SocketAddr(pair.addrs["b"], 1000), pair.now)
    sa, sb = pair.sides["a"], pair.sides["b"]
    assert pair.run_until(lambda: len(sa.connected) == n and len(sb.connected) == n, max_time=30.0)
    conn_b = pair.b.find(SocketAddr(pair.addrs["a"], pair.a.connection(first).local_port), 1000)
    assert conn_b is not None
    return pair, first, conn_b.id


def _per_packet(pair: StreamPair, ca: int, cb: int, nbytes: int) -> float:
    got = pair.sides["b"]
    start_bytes = len(got.received.get(cb, b""))
    start_pkts = pair.link.stats.delivered
    t0 = time.perf_counter()
    pair.send("a", ca, bytes(nbytes))
    assert pair.run_until(lambda: len(got.received.get(cb, b"")) >= start_bytes + nbytes, max_time=pair.now + 60)
    elapsed = time.perf_counter() - t0
    return elapsed / (pair.link.stats.delivered - start_pkts)


@pytest.mark.req("SES-040")
def test_per_packet_cost_vs_connection_count(benchmark: Any) -> None:
    disabled = getattr(benchmark, "disabled", False)
    counts = [1, 100, 1000] if disabled else [1, 100, 10_000]
    nbytes = (256 << 10) if disabled else (4 << 20)
    results: dict[int, float] = {}

    def measure() -> dict[int, float]:
        pairs = {n: _pair_with_connections(n) for n in counts}
        for pair, ca, cb in pairs.values():
            _per_packet(pair, ca, cb, nbytes)  # warm up (cwnd growth, caches)
        best = {n: float("inf") for n in counts}
        for _ in range(1 if disabled else 5):  # interleaved rounds: machine load hits every size alike
            for n, (pair, ca, cb) in pairs.items():
                best[n] = min(best[n], _per_packet(pair, ca, cb, nbytes))
        results.update(best)
        return results

    benchmark.pedantic(measure, rounds=1, iterations=1)
    base = results[1]
    for n in counts:
        benchmark.extra_info[f"us_per_packet_{n}"] = round(results[n] * 1e6, 3)
        benchmark.extra_info[f"ratio_{n}"] = round(results[n] / base, 3)
    print("\nper-packet cost: " + ", ".join(f"{n} conns {results[n] * 1e6:.2f} us ({results[n] / base:.2f}x)"
                                             for n in counts))  # fmt: skip
