"""Passive mode with a key log over a capture of our tunnel endpoint talking to the Go reference daemon.

Our endpoint writes the key log (``TunnelEndpoint(key_log=...)``); the Go daemon's frames open under the same
key (one key per session, both directions), and the suite's passive run (``--pcap`` + ``--keylog``,
go-interop) judges the Go side's inner packets, nonces and counters too.  Skipped without PILOT_GO_BIN.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from _go import go_network, register  # tests/interop is on sys.path (no __init__.py)
from test_go_tunnel import Driver, _ping

from pilot_proto.conformance.passive import open_capture, read_capture
from pilot_proto.conformance.wirelog import WireLog
from pilot_proto.profile import Profile
from pilot_proto.tunnel import Identity, TunnelConfig, TunnelEndpoint
from pilot_proto.tunnel.dangerous import KeyLog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_conformance_builtin import run_suite
from test_conformance_passive import ABSENT, INNER, PASSIVE


@pytest.mark.req("SEC-027", "NONCE-004", "NONCE-003", "PKT-010")
def test_go_capture_decrypts_and_passes_the_inner_checks(tmp_path: Path) -> None:
    keys, pcap = tmp_path / "keys.log", tmp_path / "go.pcap"
    log = WireLog()
    with go_network(tmp_path, lifetime=60) as go:
        ident = Identity.from_seed(os.urandom(32))
        me = register(go, ident)
        ep = TunnelEndpoint(me, os.urandom, identity=ident, config=TunnelConfig.for_profile(Profile.GO_INTEROP),
                            peer_keys={go.node_id: go.ed25519}, key_log=KeyLog(str(keys)).write)  # fmt: skip

        async def talk() -> None:
            async with Driver(ep, go) as drv:
                local = drv.transport.get_extra_info("sockname")[:2]
                for i in range(6):
                    run = await drv.exchange([_ping(me, go.node_id, 7 + 2 * i, b"keylog ping %d" % i)])
                    for d in run.sent:
                        log.add("out", local, go.daemon, d)
                    for d in run.received:
                        log.add("in", local, go.daemon, d)

        asyncio.run(talk())
        node = go.node_id
    log.to_pcap(pcap)
    frames, unopened = open_capture(read_capture(pcap), KeyLog.load(str(keys)))
    assert unopened == 0 and {f.sender for f in frames} == {me, node} and len(frames) == 12
    code, report, out, _ = run_suite(tmp_path, f"--pcap={pcap}", f"--keylog={keys}", "--profile=go-interop")
    assert code == 0, out[-2000:]
    # a PILA-keyed exchange has no PILT or PILP frame, so the checks of those are unsupported (never passed)
    want = {**dict.fromkeys(PASSIVE + INNER, "pass"), **dict.fromkeys(ABSENT, "unsupported")}
    assert {t["id"]: t["verdict"] for t in report["tests"]} == want
