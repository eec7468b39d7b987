"""Network fuzzing against a live node on 127.0.0.1 (issue 12): bounded, and its liveness check can fail."""

from __future__ import annotations

import os
from pathlib import Path

from pilot_proto.drivers.udp import BackgroundNode
from pilot_proto.fuzzing.network import fuzz_target
from pilot_proto.node import Node


def test_our_node_survives_a_short_campaign(tmp_path: Path) -> None:
    with BackgroundNode(Node(0x51, os.urandom), echo_ports=[7]) as bg:
        res = fuzz_target(bg.address, batches=8, batch_size=64, seed=5, save_dir=tmp_path)
    assert res.findings == []
    assert res.batches == 8 and res.outside + res.inside == 8 * 64
    assert res.inside > 100 and res.outside > 100  # both sides of the tunnel were exercised
    assert res.alive_checks == 8 and len(res.ping_rtts) >= 8


def test_no_beacon_message_ever_leaves_the_network_fuzzer() -> None:
    """A fuzzed PunchCommand could make a target punch any address: none is ever sent (E-OBS-4)."""
    import random

    from pilot_proto.fuzzing.engine import Mutator
    from pilot_proto.fuzzing.network import _frame_corpus, outside_datagram

    frames = Mutator(random.Random(9), _frame_corpus())
    for _ in range(20_000):
        data = outside_datagram(frames)
        assert data and data[0] >= 0x10


def test_everything_a_campaign_sends_is_a_tunnel_frame(monkeypatch: object) -> None:
    """Every datagram a real campaign sends, through every branch, starts with a byte >= 0x10 (E-OBS-4)."""
    from pilot_proto.testing.scripted_peer import ScriptedPeer

    sent: list[bytes] = []
    real = ScriptedPeer.send_raw

    def spy(self: ScriptedPeer, datagram: bytes) -> object:
        sent.append(bytes(datagram))
        return real(self, datagram)

    monkeypatch.setattr(ScriptedPeer, "send_raw", spy)  # type: ignore[attr-defined]
    with BackgroundNode(Node(0x53, os.urandom), echo_ports=[7]) as bg:
        res = fuzz_target(bg.address, batches=12, batch_size=64, seed=11)
    assert len(sent) >= 12 * 64 and res.findings == []
    assert min(d[0] for d in sent if d) >= 0x10 and all(sent)


def test_a_target_that_dies_is_a_saved_finding(tmp_path: Path) -> None:
    """Stop the node after the tunnel is up: the next liveness check fails and the batch is saved."""
    bg = BackgroundNode(Node(0x52, os.urandom), echo_ports=[7])
    try:
        from pilot_proto.fuzzing import network

        calls = {"n": 0}
        real = network._alive

        def alive_then_kill(session: object, result: object, timeout: float) -> bool:
            calls["n"] += 1
            if calls["n"] == 2:
                bg.stop()
            return real(session, result, timeout)  # type: ignore[arg-type]

        network._alive = alive_then_kill  # type: ignore[assignment]
        try:
            res = fuzz_target(bg.address, batches=5, batch_size=16, seed=1, save_dir=tmp_path, timeout=0.6)
        finally:
            network._alive = real  # type: ignore[assignment]
    finally:
        bg.stop()
    assert len(res.findings) == 1 and res.findings[0].batch == 2
    saved = res.findings[0].path
    assert saved is not None and saved.exists() and '"inputs"' in saved.read_text()
