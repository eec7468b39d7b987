"""Daemon speed over real UDP on 127.0.0.1, each figure against a baseline measured in the same run.

Run with ``python -m pytest tests/bench/test_bench_daemon.py --benchmark-enable -s``.  With benchmarks disabled
(the default suite) each test moves a token amount and still checks every byte.

* encrypted goodput: application bytes per second from one :class:`~pilot_proto.daemon.core.Daemon` to another
  (PILA/PILS tunnel, session layer, port table, both driven by :class:`~pilot_proto.daemon.driver.DaemonDriver`
  in one event loop); baseline: a bare Python loop sending and receiving UDP datagrams of the same size the
  daemons put on the wire, on 127.0.0.1 in the same process.  Goal (issue 11): ratio >= 0.25.  Every byte is
  compared with what was sent (a patterned payload) as it arrives, inside the timed transfer, the way an
  application consumes it (the bare loop keeps nothing either).  Next to it, labelled, the deployment: the
  receiving daemon in its own OS process (a spawned child with its own DaemonDriver, 127.0.0.1, bounded waits),
  against the same bare loop; the child checks every byte against its own copy of the pattern as it arrives,
  stamps the last one with the system-wide monotonic clock and reports the count of bytes and of wrong events.
  The header CRC-32 implementation in use (ISA-L or zlib) is printed beside the figures.
* control ping (draft 6.4, port 0) round trip between the two daemons; baseline: a bare UDP ping-pong of the
  same datagram size.  Goal: <= 1 ms.

Numbers are printed and stored in ``benchmark.extra_info``; no timed assertions.
"""

from __future__ import annotations

import array
import asyncio
import multiprocessing
import os
import socket
import sys
import time
from typing import Any

import pytest

from pilot_proto.daemon.core import AppConnected, AppData, Daemon
from pilot_proto.daemon.driver import DaemonDriver
from pilot_proto.sansio import Event
from pilot_proto.stream.events import PingReply
from pilot_proto.tunnel import Identity
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.header import CRC32_IMPLEMENTATION

LOOPBACK = "127.0.0.1"


def _disabled(benchmark: Any) -> bool:
    return bool(getattr(benchmark, "disabled", False))


async def _pair() -> tuple[DaemonDriver, DaemonDriver, dict[str, Any]]:
    ia, ib = Identity.from_seed(os.urandom(32)), Identity.from_seed(os.urandom(32))
    keys = {1: ia.public_bytes, 2: ib.public_bytes}
    a = await DaemonDriver.start(Daemon(1, os.urandom, identity=ia, peer_keys=keys.get, trust=False))
    b = await DaemonDriver.start(Daemon(2, os.urandom, identity=ib, peer_keys=keys.get, trust=False))
    a.daemon.add_peer(2, b.address, ib.public_bytes)
    b.daemon.add_peer(1, a.address, ia.public_bytes)
    state: dict[str, Any] = {"received": 0, "connected": asyncio.Event(), "done": asyncio.Event(), "target": 0,
                             "pings": {}, "expected": b"", "wrong": 0}  # fmt: skip

    def on_a(ev: Event) -> None:
        if isinstance(ev, AppConnected):
            state["connected"].set()
        elif isinstance(ev, PingReply):
            state["pings"][ev.seq] = ev

    def on_b(ev: Event) -> None:
        if isinstance(ev, AppData):
            data = ev.data
            if not state["expected"].startswith(data, state["received"]):  # each byte checked as it arrives
                state["wrong"] += 1
            state["received"] += len(data)
            if state["received"] >= state["target"]:
                state["done"].set()

    a.on_event, b.on_event = on_a, on_b
    return a, b, state


def _pattern(nbytes: int) -> bytes:
    """A payload no lost, repeated or reordered segment leaves intact: each 4-byte word is its own offset."""
    words = array.array("I", range(0, nbytes + 3, 4))
    if sys.byteorder == "little":
        words.byteswap()
    return words.tobytes()[:nbytes]


async def _goodput(nbytes: int) -> tuple[float, int, int]:
    """Seconds to move ``nbytes`` a -> b (connection set up first), datagrams a sent, their mean size."""
    a, b, state = await _pair()
    try:
        b.daemon.bind("sink", 5000)
        cid = a.daemon.dial("app", SocketAddr(Addr(0, 2), 5000), a.now())
        a._after_input()
        await asyncio.wait_for(state["connected"].wait(), 10)
        state["target"] = nbytes
        payload = _pattern(nbytes)
        state["expected"] = _pattern(nbytes)  # a second copy, made independently of the one sent
        d0, b0 = a.datagrams_out, a.bytes_out
        t0 = time.perf_counter()
        a.daemon.send(cid, payload, a.now())
        a._after_input()
        await asyncio.wait_for(state["done"].wait(), 120)
        elapsed = time.perf_counter() - t0
        sent, size = a.datagrams_out - d0, (a.bytes_out - b0) // max(1, a.datagrams_out - d0)
        assert state["received"] == nbytes
        assert state["wrong"] == 0  # every byte, in order, compared with what was sent
        return elapsed, sent, size
    finally:
        await a.shutdown()
        await b.shutdown()


def _sink_process(pipe: Any, seed: bytes, peer_key: bytes, peer_addr: tuple[str, int], nbytes: int) -> None:
    """Child process of the two-process figure: daemon 2 on 127.0.0.1 (its own DaemonDriver and event loop)."""
    asyncio.run(_sink_main(pipe, seed, peer_key, peer_addr, nbytes))


async def _sink_main(pipe: Any, seed: bytes, peer_key: bytes, peer_addr: tuple[str, int], nbytes: int) -> None:
    ib = Identity.from_seed(seed)
    keys = {1: peer_key, 2: ib.public_bytes}
    b = await DaemonDriver.start(Daemon(2, os.urandom, identity=ib, peer_keys=keys.get, trust=False))
    expected = _pattern(nbytes)  # what the parent sends, made here independently, before the transfer
    state = {"got": 0, "t_done": 0.0, "cpu0": -1.0, "cpu": 0.0, "wrong": 0}
    done = asyncio.Event()

    def on_b(ev: Event) -> None:
        if isinstance(ev, AppData):
            if state["cpu0"] < 0:
                state["cpu0"] = time.process_time()
            data = ev.data
            if not expected.startswith(data, state["got"]):  # each byte checked as it arrives
                state["wrong"] += 1
            state["got"] += len(data)
            if state["got"] >= nbytes:
                state["t_done"] = time.perf_counter()  # CLOCK_MONOTONIC: one clock for both processes (Linux)
                state["cpu"] = time.process_time() - state["cpu0"]
                done.set()

    b.on_event = on_b
    try:
        b.daemon.add_peer(1, peer_addr, peer_key)
        b.daemon.bind("sink", 5000)
        pipe.send(b.address)
        await asyncio.wait_for(done.wait(), 60)
        pipe.send((state["t_done"], state["got"], state["wrong"], state["cpu"]))
    finally:
        await b.shutdown()


async def _from_pipe(pipe: Any, proc: Any, timeout: float) -> Any:
    """The next message on ``pipe``, without blocking the event loop (the daemon keeps running meanwhile);
    RuntimeError at once if the child process ``proc`` ends without sending one."""
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(pipe.fileno(), ready.set)
    loop.add_reader(proc.sentinel, ready.set)
    try:
        deadline = loop.time() + timeout
        while not pipe.poll():
            if not proc.is_alive():
                raise RuntimeError(f"the receiver process exited ({proc.exitcode}) without an answer")
            ready.clear()
            await asyncio.wait_for(ready.wait(), max(0.0, deadline - loop.time()))
        return pipe.recv()
    finally:
        loop.remove_reader(pipe.fileno())
        loop.remove_reader(proc.sentinel)


async def _goodput_two_processes(nbytes: int) -> tuple[float, int, int, float, float]:
    """As :func:`_goodput`, but daemon 2 runs in its own OS process (the deployment: one daemon per host/process).

    The receiver stamps the arrival of the last byte with ``time.perf_counter`` (CLOCK_MONOTONIC, shared by
    all processes on Linux) and then reports the byte count and how many events did not match its own copy of the
    pattern at their offset.  Also
    returned: the CPU seconds each process spent on the transfer (sender, receiver), which show how much of
    the wall time was work and how much was waiting for a core.
    """
    ctx = multiprocessing.get_context("spawn")
    ia, seed_b = Identity.from_seed(os.urandom(32)), os.urandom(32)
    pub_b = Identity.from_seed(seed_b).public_bytes
    keys = {1: ia.public_bytes, 2: pub_b}
    a = await DaemonDriver.start(Daemon(1, os.urandom, identity=ia, peer_keys=keys.get, trust=False))
    connected = asyncio.Event()
    a.on_event = lambda ev: connected.set() if isinstance(ev, AppConnected) else None
    parent_end, child_end = ctx.Pipe()
    proc = ctx.Process(target=_sink_process, args=(child_end, seed_b, ia.public_bytes, a.address, nbytes),
                       daemon=True)  # fmt: skip
    proc.start()
    try:
        b_addr = await _from_pipe(parent_end, proc, 60)
        a.daemon.add_peer(2, tuple(b_addr), pub_b)
        cid = a.daemon.dial("app", SocketAddr(Addr(0, 2), 5000), a.now())
        a._after_input()
        await asyncio.wait_for(connected.wait(), 10)
        payload = _pattern(nbytes)
        d0, b0 = a.datagrams_out, a.bytes_out
        t0, cpu0 = time.perf_counter(), time.process_time()
        a.daemon.send(cid, payload, a.now())
        a._after_input()
        t_done, received, wrong, rx_cpu = await _from_pipe(parent_end, proc, 90)
        tx_cpu = time.process_time() - cpu0
        sent, size = a.datagrams_out - d0, (a.bytes_out - b0) // max(1, a.datagrams_out - d0)
        assert received == nbytes
        assert wrong == 0  # every byte, in order, compared in the child with its own copy of the pattern
        return t_done - t0, sent, size, tx_cpu, rx_cpu
    finally:
        await a.shutdown()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _bare_udp(nbytes: int, size: int, batch: int = 32) -> float:
    """Seconds for a bare Python loop to send and receive ``nbytes`` of payload in ``size``-byte datagrams."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind((LOOPBACK, 0))
    dst = rx.getsockname()
    payload = bytes(size)
    count = max(1, nbytes // size)
    got = 0
    t0 = time.perf_counter()
    try:
        sent = 0
        while sent < count:
            n = min(batch, count - sent)
            for _ in range(n):
                tx.sendto(payload, dst)
            for _ in range(n):
                got += len(rx.recv(65536))
            sent += n
    finally:
        rx.close()
        tx.close()
    elapsed = time.perf_counter() - t0
    assert got == count * size
    return elapsed * nbytes / (count * size)


@pytest.mark.req("SES-040")
def test_encrypted_goodput_against_bare_udp(benchmark: Any) -> None:
    """Issue 11's figure (both daemons in one process and one event loop, as the baseline is one process), and
    next to it the deployment: the two daemons in two OS processes.  Both against the same bare UDP loop."""
    disabled = _disabled(benchmark)
    nbytes = (1 << 20) if disabled else (32 << 20)
    rounds = 1 if disabled else 5
    pairs: list[tuple[float, float]] = []  # (daemon, bare loop) seconds of one round, measured back to back

    def run() -> tuple[float, int, int]:
        """Rounds of one daemon transfer and one bare loop each, back to back, so both see the same machine
        (this is a shared VM whose speed drifts); each figure is the best of its rounds, as timeit takes."""
        best: tuple[float, int, int] | None = None
        for _ in range(rounds):
            result = asyncio.run(_goodput(nbytes))
            pairs.append((result[0], _bare_udp(nbytes, result[2])))
            if best is None or result[0] < best[0]:
                best = result
        assert best is not None
        return best

    elapsed, datagrams, size = benchmark.pedantic(run, rounds=1, iterations=1)
    two = min((asyncio.run(_goodput_two_processes(nbytes)) for _ in range(min(rounds, 3))), key=lambda r: r[0])
    base = min(b for _, b in pairs)
    round_ratios = sorted(b / d for d, b in pairs)
    mbps, two_mbps, base_mbps = nbytes / elapsed / 1e6, nbytes / two[0] / 1e6, nbytes / base / 1e6
    benchmark.extra_info.update(goodput_MBps=round(mbps, 1), bare_udp_MBps=round(base_mbps, 1),
                                ratio=round(mbps / base_mbps, 3), datagram_bytes=size, datagrams=datagrams,
                                two_process_MBps=round(two_mbps, 1), two_process_ratio=round(two_mbps / base_mbps, 3),
                                two_process_datagrams=two[1], crc32=CRC32_IMPLEMENTATION,
                                two_process_cpu_ms=(round(two[3] * 1e3), round(two[4] * 1e3)),
                                round_ratios=[round(r, 3) for r in round_ratios])  # fmt: skip
    print(f"\nencrypted daemon goodput, one process: {mbps:.1f} MB/s vs bare UDP loop {base_mbps:.1f} MB/s "
          f"(ratio {mbps / base_mbps:.3f}; {nbytes >> 20} MiB in {datagrams} datagrams of {size} B; "
          f"each round's own ratio: {' '.join(f'{r:.3f}' for r in round_ratios)})"
          f"\nencrypted daemon goodput, two processes: {two_mbps:.1f} MB/s vs the same bare UDP loop "
          f"(ratio {two_mbps / base_mbps:.3f}; {two[1]} datagrams of {two[2]} B; {two[0] * 1e3:.0f} ms wall, CPU "
          f"{two[3] * 1e3:.0f} ms sender / {two[4] * 1e3:.0f} ms receiver)"
          f"\nheader CRC-32 by {CRC32_IMPLEMENTATION}")  # fmt: skip
    assert datagrams > 0 and size > 1000 and two[2] == size


async def _ping_rtts(count: int, size: int) -> list[float]:
    a, b, state = await _pair()
    try:
        rtts = []
        payload = bytes(size)
        for _ in range(count):
            t0 = time.perf_counter()
            seq = a.daemon.ping(Addr(0, 2), a.now(), payload)
            a._after_input()
            while seq not in state["pings"]:
                await asyncio.sleep(0)
            rtts.append(time.perf_counter() - t0)
        return rtts
    finally:
        await a.shutdown()
        await b.shutdown()


def _bare_ping(count: int, size: int) -> list[float]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind((LOOPBACK, 0))
    b.bind((LOOPBACK, 0))
    rtts = []
    payload = bytes(size)
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            a.sendto(payload, b.getsockname())
            data, addr = b.recvfrom(65536)
            b.sendto(data, addr)
            a.recv(65536)
            rtts.append(time.perf_counter() - t0)
    finally:
        a.close()
        b.close()
    return rtts


def test_control_ping_rtt(benchmark: Any) -> None:
    count = 20 if _disabled(benchmark) else 500
    rtts = benchmark.pedantic(lambda: asyncio.run(_ping_rtts(count, 16)), rounds=1, iterations=1)
    steady = sorted(rtts[1:])  # the first includes the key exchange
    base = sorted(_bare_ping(count, 16 + 34 + 36))  # header + PILS overhead around the payload
    med, base_med = steady[len(steady) // 2], base[len(base) // 2]
    benchmark.extra_info.update(ping_median_ms=round(med * 1000, 4), bare_udp_median_ms=round(base_med * 1000, 4),
                                ratio=round(med / base_med, 2))  # fmt: skip
    print(f"\ncontrol ping median {med * 1000:.3f} ms vs bare UDP ping-pong {base_med * 1000:.3f} ms "
          f"(x{med / base_med:.1f}, {count} pings)")  # fmt: skip
    assert len(rtts) == count
