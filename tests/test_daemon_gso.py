"""The daemon driver's UDP segmentation offload (Linux GSO/GRO): fewer system calls, the same datagrams.

Runs of equal-size datagrams to one address leave in one ``sendmsg``; a GRO read holding several datagrams is
cut back into them.  A refused GSO send falls back to one datagram per call for that address.  Every byte of a
transfer still arrives exactly (draft 8: the stream checks it; the tap sees each datagram on its own).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
from typing import Any

import pytest

from pilot_proto.daemon.core import AppConnected, AppData, Daemon
from pilot_proto.daemon.driver import DaemonDriver
from pilot_proto.drivers._socket import GSO_MAX_BYTES, GSO_MAX_SEGMENTS, gso_control
from pilot_proto.sansio import Event, InputRejected
from pilot_proto.tunnel import Identity
from pilot_proto.wire.address import Addr, SocketAddr

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="UDP GSO/GRO are Linux options")
A, B = ("127.0.0.1", 1), ("127.0.0.1", 2)


def _run(out: list[tuple[bytes, Any]], i: int = 0) -> int:
    return DaemonDriver._gso_run(out, i, len(out[i][0]), out[i][1])[0]


def test_gso_runs_are_equal_size_datagrams_to_one_address() -> None:
    d = [(bytes(100), A)] * 5
    assert _run(d) == 5
    assert _run([*d[:3], (bytes(60), A), (bytes(100), A)]) == 4  # a shorter datagram ends its run
    assert _run([*d[:2], (bytes(101), A), *d[:2]]) == 2  # a longer one starts a new run
    assert _run([*d[:2], (bytes(100), B), *d[:2]]) == 2  # so does another address
    assert _run([(bytes(100), A)] * (GSO_MAX_SEGMENTS + 5)) == GSO_MAX_SEGMENTS
    big = GSO_MAX_BYTES // 3
    assert _run([(bytes(big), A)] * 5) == 3  # at most GSO_MAX_BYTES of payload in one send
    assert _run([(bytes(GSO_MAX_BYTES), A)] * 2) == 1  # too large to pair: sent on its own


async def _transfer(nbytes: int, refuse_gso: bool) -> tuple[DaemonDriver, DaemonDriver, bytes]:
    ia, ib = Identity.from_seed(os.urandom(32)), Identity.from_seed(os.urandom(32))
    keys = {1: ia.public_bytes, 2: ib.public_bytes}
    a = await DaemonDriver.start(Daemon(1, os.urandom, identity=ia, peer_keys=keys.get, trust=False))
    b = await DaemonDriver.start(Daemon(2, os.urandom, identity=ib, peer_keys=keys.get, trust=False))
    if refuse_gso:  # as a path with an MTU below the datagram size does (EINVAL)
        real = a.sock

        class NoGso:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def sendmsg(self, *args: Any) -> int:
                raise OSError(errno.EINVAL, "segment larger than the path MTU")

        a.sock = NoGso()  # type: ignore[assignment]
    got: list[bytes] = []
    connected, done = asyncio.Event(), asyncio.Event()

    def on_a(ev: Event) -> None:
        if isinstance(ev, AppConnected):
            connected.set()

    def on_b(ev: Event) -> None:
        if isinstance(ev, AppData):
            got.append(ev.data)
            if sum(map(len, got)) >= nbytes:
                done.set()

    a.on_event, b.on_event = on_a, on_b
    a.daemon.add_peer(2, b.address, ib.public_bytes)
    b.daemon.add_peer(1, a.address, ia.public_bytes)
    b.daemon.bind("sink", 5000)
    cid = a.daemon.dial("app", SocketAddr(Addr(0, 2), 5000), a.now())
    a._after_input()
    await asyncio.wait_for(connected.wait(), 10)
    payload = os.urandom(nbytes)
    a.daemon.send(cid, payload, a.now())
    a._after_input()
    await asyncio.wait_for(done.wait(), 30)
    assert b"".join(got) == payload
    return a, b, payload


@linux_only
@pytest.mark.req("SES-040")
@pytest.mark.parametrize("refuse_gso", [False, True], ids=["gso", "gso-refused"])
def test_transfer_is_exact_with_gso_and_after_gso_is_refused(refuse_gso: bool) -> None:
    async def main() -> None:
        a, b, payload = await _transfer(1 << 20, refuse_gso)
        try:
            assert a._gso and b._gro  # the kernel here offers both
            assert (b.address in a._no_gso) is refuse_gso  # refused: one datagram per call to that address
            assert a.datagrams_out >= len(payload) // 4096 and b.datagrams_in >= len(payload) // 4096
        finally:
            await a.shutdown()
            await b.shutdown()

    asyncio.run(main())


@linux_only
def test_a_gro_read_is_cut_back_into_its_datagrams() -> None:
    """Three equal-size garbage datagrams sent in one GSO call: three refusals, three datagrams counted."""

    async def main() -> None:
        drv = await DaemonDriver.start(Daemon(1, os.urandom, trust=False))
        seen: list[InputRejected] = []
        drv.on_event = lambda ev: seen.append(ev) if isinstance(ev, InputRejected) else None
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            raw.sendmsg([b"JUNK" + bytes(60)] * 3, gso_control(64), 0, drv.address)
            for _ in range(200):
                if len(seen) >= 3:
                    break
                await asyncio.sleep(0.01)
            assert drv.datagrams_in == 3 and drv.bytes_in == 3 * 64
            assert len(seen) == 3 and all(ev.size == 64 for ev in seen)
        finally:
            raw.close()
            await drv.shutdown()

    asyncio.run(main())


async def _one_read_with_a_failure() -> tuple[list[bytes], int, int]:
    drv = await DaemonDriver.start(Daemon(1, os.urandom, trust=False))
    seen: list[bytes] = []

    def receive(datagrams: Any, addr: Any, now: float) -> None:  # the core, with a bug on one datagram
        for data in datagrams:
            seen.append(data)
            if data == b"boom":
                raise RuntimeError("a core bug")

    drv.daemon.receive_datagrams = receive  # type: ignore[method-assign]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # one GSO send of four equal datagrams: on loopback the receiving GRO socket reads them in one go
        tx.sendmsg([b"aaaa", b"boom", b"cccc", b"dddd"], gso_control(4), 0, drv.address)
        for _ in range(200):
            if len(seen) >= 4:
                break
            await asyncio.sleep(0.005)
        return seen, drv.errors, drv.datagrams_in
    finally:
        tx.close()
        await drv.shutdown()


@linux_only
def test_a_datagram_that_fails_in_the_core_costs_only_itself() -> None:
    """Issue 9: nothing a peer sends kills the daemon; a core failure drops that datagram, not the rest of its read."""
    seen, errors, count = asyncio.run(_one_read_with_a_failure())
    assert seen == [b"aaaa", b"boom", b"cccc", b"dddd"]
    assert errors == 1 and count == 4
