"""Registry speed on 127.0.0.1, each figure against a baseline measured in the same run.

Run with ``python -m pytest tests/bench/test_bench_registry.py --benchmark-enable -s``.  With benchmarks
disabled (the default suite) each test makes a token number of requests and still checks every reply.

* lookups: request/response round trips of ``lookup`` through :class:`RegistryServer` (sans-IO core, framing,
  asyncio) with the blocking client; baseline: a bare asyncio server that sends every framed request straight
  back, with the same client socket code, in the same process.
* registrations: new keys registered (Ed25519 verify under ``draft``) with an fsynced store; baseline: the same
  server with no store, so the ratio is what durability (fsync before the reply) costs.

Numbers are printed and stored in ``benchmark.extra_info``; no timed assertions.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pilot_proto.registry import Registry, RegistryClient, RegistryConfig, RegistryServer, Store
from pilot_proto.tunnel import Identity

LOOPBACK = "127.0.0.1"


def _disabled(benchmark: Any) -> bool:
    return bool(getattr(benchmark, "disabled", False))


@contextmanager
def _in_thread(start: Callable[[], Any]) -> Iterator[tuple[str, int]]:
    """Run an asyncio server (``start`` returns (server-like, addr)) on its own loop in a thread."""
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        ready["server"], ready["addr"] = loop.run_until_complete(start())
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    while "addr" not in ready:
        time.sleep(0.01)
    try:
        yield ready["addr"]
    finally:
        closer = getattr(ready["server"], "close", None)
        if closer is not None:

            async def close() -> None:  # on the loop's own thread: asyncio.Server.close is not thread-safe
                res = closer()
                if asyncio.iscoroutine(res):
                    await res

            asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)


async def _echo_server() -> tuple[asyncio.Server, tuple[str, int]]:
    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await r.readexactly(4)
                w.write(head + await r.readexactly(struct.unpack(">I", head)[0]))
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()

    server = await asyncio.start_server(serve, LOOPBACK, 0)
    return server, server.sockets[0].getsockname()[:2]


def _registry(store: Path | None) -> Callable[[], Any]:
    async def start() -> tuple[RegistryServer, tuple[str, int]]:
        reg = Registry(RegistryConfig(rate=0), now=time.time())
        st = None
        if store is not None:
            st = Store(store)
            st.load()
        server = RegistryServer(reg, st)
        return server, await server.start(LOOPBACK, 0)

    return start


def _rate(n: int, fn: Callable[[int], None]) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def test_bench_lookup_round_trips(benchmark: Any) -> None:
    n = 20 if _disabled(benchmark) else 3000
    with _in_thread(_registry(None)) as addr, RegistryClient(addr) as c:
        nid = c.register(Identity.from_seed(b"\x01" * 32), "127.0.0.1:1")

        def lookup(_: int) -> None:
            assert c.lookup(nid)["node_id"] == nid

        ours = benchmark.pedantic(lambda: _rate(n, lookup), rounds=1, iterations=1)
    with _in_thread(_echo_server) as addr, RegistryClient(addr) as e:

        def echo(_: int) -> None:
            assert e.call({"type": "lookup", "node_id": 4})["node_id"] == 4

        base = _rate(n, echo)
    benchmark.extra_info.update(lookups_per_s=round(ours), echo_per_s=round(base), ratio=round(ours / base, 3))
    print(f"\nregistry lookups: {ours:.0f}/s; bare framed echo: {base:.0f}/s; ratio {ours / base:.2f}")


def test_bench_durable_registrations(benchmark: Any, tmp_path: Path) -> None:
    n = 10 if _disabled(benchmark) else 800
    ids = [Identity.from_seed(i.to_bytes(4, "big") * 8) for i in range(2 * n)]
    with _in_thread(_registry(tmp_path / "s.store")) as addr, RegistryClient(addr) as c:
        durable = benchmark.pedantic(lambda: _rate(n, lambda i: c.register(ids[i], "127.0.0.1:1") and None),
                                     rounds=1, iterations=1)  # fmt: skip
    with _in_thread(_registry(None)) as addr, RegistryClient(addr) as c:
        volatile = _rate(n, lambda i: c.register(ids[n + i], "127.0.0.1:1") and None)
    restored = Registry(RegistryConfig(), now=time.time())
    restored.restore(Store(tmp_path / "s.store").load(), time.time())
    assert len(restored.nodes()) == n  # every acknowledged registration is on disk
    benchmark.extra_info.update(durable_per_s=round(durable), volatile_per_s=round(volatile),
                                ratio=round(durable / volatile, 3))  # fmt: skip
    print(f"\nregistrations with fsync: {durable:.0f}/s; without a store: {volatile:.0f}/s; "
          f"ratio {durable / volatile:.2f}")  # fmt: skip


async def _concurrent(store: Path | None, clients: int, each: int, base: int) -> tuple[float, int]:
    from pilot_proto.registry import AsyncRegistryClient

    reg = Registry(RegistryConfig(rate=0), now=time.time())
    st = None
    if store is not None:
        st = Store(store)
        st.load()
    server = RegistryServer(reg, st)
    addr = await server.start(LOOPBACK, 0)
    ids = [Identity.from_seed((base + i).to_bytes(4, "big") * 8) for i in range(clients * each)]
    conns = [await AsyncRegistryClient.connect(addr) for _ in range(clients)]

    async def burst(i: int, c: AsyncRegistryClient) -> None:
        for k in range(each):
            await c.register(ids[i * each + k], "127.0.0.1:1")

    t0 = time.perf_counter()
    await asyncio.gather(*(burst(i, c) for i, c in enumerate(conns)))
    rate = clients * each / (time.perf_counter() - t0)
    for c in conns:
        await c.close()
    await server.close()
    return rate, server.commits


def test_bench_group_commit(benchmark: Any, tmp_path: Path) -> None:
    clients, each = (4, 3) if _disabled(benchmark) else (16, 60)
    durable, commits = benchmark.pedantic(
        lambda: asyncio.run(_concurrent(tmp_path / "g.store", clients, each, 10_000)), rounds=1, iterations=1
    )
    volatile, _ = asyncio.run(_concurrent(None, clients, each, 20_000))
    restored = Registry(RegistryConfig(), now=time.time())
    restored.restore(Store(tmp_path / "g.store").load(), time.time())
    assert len(restored.nodes()) == clients * each
    benchmark.extra_info.update(durable_per_s=round(durable), volatile_per_s=round(volatile), fsyncs=commits,
                                ratio=round(durable / volatile, 3))  # fmt: skip
    print(f"\n{clients} clients: registrations with fsync {durable:.0f}/s ({commits} commits for "
          f"{clients * each}); without a store {volatile:.0f}/s; ratio {durable / volatile:.2f}")  # fmt: skip
