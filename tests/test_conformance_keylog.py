"""Key logs: our node writes one (``TunnelEndpoint.key_log``, ``pilot-proto node --keylog``), and the
conformance suite's passive mode (``--pcap`` + ``--keylog``) decrypts a capture of two of our nodes talking
over real UDP on 127.0.0.1 and runs the inner-packet checks: all pass on the clean capture, and each
planted violation fails exactly the check for its rule."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_conformance_builtin import run_suite
from test_conformance_passive import ABSENT, INNER, PASSIVE

from pilot_proto.conformance.passive import Datagram, Opened, open_capture, read_capture, stream_violations
from pilot_proto.conformance.wirelog import WireLog
from pilot_proto.drivers.udp import BackgroundNode
from pilot_proto.node import Node
from pilot_proto.profile import Profile
from pilot_proto.testing.tap import Tap, TapEntry
from pilot_proto.tunnel.dangerous import KEYLOG_HEADER, KeyLog, open_pils, seal_pils
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.header import Flags, Packet, PacketProtocol, decode_packet, encode_packet

A, B = 0xA11, 0xB0B
CLI = [sys.executable, "-m", "pilot_proto.cli"]
ROOT = Path(__file__).resolve().parents[1]


def test_key_log_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    k1, k2 = bytes(range(32)), bytes(range(32, 64))
    log = KeyLog(path=str(path))
    log.write(7, 9, k1)
    log.write(9, 7, k1)  # the same session seen from the other side: not written twice
    log.write(7, 9, k2)  # a re-key adds a line
    lines = path.read_text().splitlines()
    assert lines == [KEYLOG_HEADER, f"PILS 7 9 {k1.hex()}", f"PILS 7 9 {k2.hex()}"]
    loaded = KeyLog.load(str(path))
    assert loaded.keys == {frozenset((7, 9)): [k1, k2]}
    # one key opens both directions of a session
    for sender in (7, 9):
        frame = seal_pils(k2, b"inner", sender=sender, counter=3)
        assert loaded.open_pils_keyed(frame) == (k2, b"inner")
    assert loaded.open_pils(seal_pils(bytes(32), b"x", sender=7)) is None
    path.write_text("PILS 7 9 abcd\n")
    with pytest.raises(ValueError, match="line 1"):
        KeyLog.load(str(path))


def _exchange(tmp: Path) -> tuple[Path, Path, list[TapEntry]]:
    """Node A (tap + key log) dials node B's echo port over UDP, echoes data, pings; returns pcap, key log, entries."""
    pcap, keys = tmp / "clean.pcap", tmp / "keys.log"
    tap = Tap(pcap=pcap)
    a = Node(A, os.urandom)
    a.tunnel.key_log = KeyLog(path=str(keys)).write
    with BackgroundNode(Node(B, os.urandom), echo_ports=[7]) as nb, BackgroundNode(a, tap=tap) as na:
        na.call(a.add_peer, B, nb.address)
        cid = na.run(na.driver.connect(SocketAddr(Addr(0, B), 7)))
        for i in range(3):
            data = bytes([65 + i]) * (3000 + i)  # three writes, some spanning two segments
            na.call(na.driver.send, cid, data)
            assert na.run(na.driver.recv_exactly(cid, len(data))) == data
        na.run(na.driver.ping(Addr(0, B), b"keylog"))
        na.call(na.driver.close, cid)
        na.run(na.driver.wait_ended(cid))
        time.sleep(0.1)  # the last ACKs
        na.call(tap.close)
    return pcap, keys, list(tap.ring)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[TapEntry]]:
    return _exchange(tmp_path_factory.mktemp("keylog"))


def _verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {str(t["id"]): str(t["verdict"]) for t in report["tests"]}


def _messages(report: dict[str, Any]) -> dict[str, str]:
    return {str(t["id"]): str(t.get("message") or "") for t in report["tests"]}


def test_our_node_logs_keys_that_open_every_frame(clean: tuple[Path, Path, list[TapEntry]]) -> None:
    pcap, keys, entries = clean
    log = KeyLog.load(str(keys))
    assert list(log.keys) == [frozenset((A, B))]
    frames, unopened = open_capture(read_capture(pcap), log)
    pils = [e for e in entries if e.data[:4] == b"PILS"]
    assert unopened == 0 and len(frames) == len(pils) > 10
    assert {f.sender for f in frames} == {A, B}  # both directions, one key line
    kinds = {decode_packet(f.inner, Profile.DRAFT).protocol for f in frames}
    assert PacketProtocol.STREAM in kinds and PacketProtocol.CONTROL in kinds


@pytest.mark.req("PKT-010", "SEC-027", "NONCE-004", "NONCE-003", "SES-031", "SES-080")
def test_passive_inner_checks_pass_on_a_clean_capture(tmp_path: Path, clean: tuple[Path, Path, list[TapEntry]]) -> None:
    pcap, keys, _ = clean
    code, report, out, _ = run_suite(tmp_path, f"--pcap={pcap}", f"--keylog={keys}", "--profile=draft", timeout=120)
    assert code == 0, out[-2000:]
    assert _verdicts(report) == {**dict.fromkeys(PASSIVE + INNER, "pass"), **dict.fromkeys(ABSENT, "unsupported")}
    assert report["target"]["keylog"] == str(keys)


def _planted(clean: tuple[Path, Path, list[TapEntry]], tmp: Path) -> Path:
    """The clean capture plus one frame per inner rule, each breaking only that rule."""
    _, keys, entries = clean
    key = KeyLog.load(str(keys)).keys[frozenset((A, B))][0]
    outs = [e for e in entries if e.direction == "out" and e.data[:4] == b"PILS"]
    ins = [e for e in entries if e.direction == "in" and e.data[:4] == b"PILS"]
    prefix = outs[0].data[8:12]
    top = max(int.from_bytes(e.data[12:20], "big") for e in outs)
    last_stream = [p for p in (decode_packet(open_pils(key, e.data), Profile.DRAFT) for e in outs)
                   if p.protocol == PacketProtocol.STREAM][-1]  # fmt: skip
    log = WireLog()
    for e in entries:
        log.add(e.direction, e.local, e.remote, e.data)

    def dgram(src: int, dst: int) -> bytes:
        return encode_packet(Packet(0, PacketProtocol.DATAGRAM, Addr(0, src), Addr(0, dst), 1000, 1000, payload=b"x"))

    def out(inner: bytes, counter: int) -> None:
        log.add("out", outs[0].local, outs[0].remote, seal_pils(key, inner, sender=A, prefix=prefix, counter=counter))

    bad_crc = bytearray(dgram(A, B))
    bad_crc[31] ^= 0x40
    out(bytes(bad_crc), top + 1000)  # inner CRC wrong
    out(dgram(B, A), top + 1001)  # inner source B inside a frame from sender A
    ack_beyond = last_stream._replace(flags=Flags.ACK, ack=(last_stream.ack + 100_000) & 0xFFFFFFFF, payload=b"")
    out(encode_packet(ack_beyond), top + 1002)  # acknowledges bytes B never sent
    # sealed by A with B's ID as AAD: opens only under the wrong AAD
    log.add(
        "out",
        outs[0].local,
        outs[0].remote,
        seal_pils(key, dgram(A, B), sender=A, prefix=prefix, counter=top + 1003, aad=B.to_bytes(4, "big")),
    )
    out(dgram(A, B), top + 500)  # counter goes back (fresh nonce)
    # B seals under A's first nonce: the key is shared by both directions, so this is nonce reuse
    log.add("in", ins[0].local, ins[0].remote, seal_pils(key, dgram(B, A), sender=B, nonce=outs[0].data[8:20]))
    bad = tmp / "planted.pcap"
    log.to_pcap(bad)
    return bad


@pytest.mark.req("PKT-010", "SEC-027", "NONCE-004", "NONCE-003", "SES-031")
def test_each_planted_inner_violation_is_caught(tmp_path: Path, clean: tuple[Path, Path, list[TapEntry]]) -> None:
    bad = _planted(clean, tmp_path)
    code, report, out, _ = run_suite(tmp_path, f"--pcap={bad}", f"--keylog={clean[1]}", "--profile=draft", timeout=120)
    assert code != 0
    verdicts, messages = _verdicts(report), _messages(report)
    expected = {
        **dict.fromkeys(PASSIVE, "pass"),
        **dict.fromkeys(INNER, "fail"),
        **dict.fromkeys(ABSENT, "unsupported"),
    }
    assert verdicts == expected, out[-3000:]
    for name in INNER:  # exactly the one planted frame each
        assert messages[name].startswith("1 "), (name, messages[name])
    assert "BAD_CHECKSUM" in messages["test_inner_header_crc_and_length"]


def test_keylog_without_pcap_or_unreadable_is_a_usage_error(tmp_path: Path) -> None:
    code, _, out, _ = run_suite(tmp_path, f"--keylog={tmp_path / 'none.log'}", timeout=60)
    assert code == 4 and "--keylog needs --pcap" in out
    pcap = tmp_path / "x.pcap"
    WireLog().to_pcap(pcap)
    junk = tmp_path / "junk.log"
    junk.write_text("CLIENT_RANDOM aa bb\n")
    code, _, out, _ = run_suite(tmp_path, f"--pcap={pcap}", f"--keylog={junk}", timeout=60)
    assert code == 4 and "--keylog:" in out and "line 1" in out


def _cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip


def test_node_keylog_unwritable_is_one_line_exit_2(tmp_path: Path) -> None:
    res = _cli("node", "--node-id", "5", "--socket", "none", "--duration", "1", "--keylog",
               str(tmp_path / "no" / "such" / "dir.log"))  # fmt: skip
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write key log" in lines[0] and "Traceback" not in res.stderr


def test_node_cli_writes_a_key_log_that_decrypts_its_pcap(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    b = subprocess.Popen([*CLI, "node", "--node-id", "2", "--listen", f"127.0.0.1:{port}", "--socket", "none",
                          "--duration", "6"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        time.sleep(1.0)
        keys, pcap = tmp_path / "a.keys", tmp_path / "a.pcap"
        res = _cli("node", "--node-id", "1", "--socket", "none", "--peer", f"2=127.0.0.1:{port}", "--ping", "2",
                   "--duration", "2", "--keylog", str(keys), "--pcap", str(pcap))  # fmt: skip
        assert res.returncode == 0, res.stderr
    finally:
        b.terminate()
        b.communicate(timeout=10)
    assert keys.read_text().splitlines()[0] == KEYLOG_HEADER
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    frames, unopened = open_capture(read_capture(pcap), KeyLog.load(str(keys)))
    assert unopened == 0 and {f.sender for f in frames} == {1, 2}


def _opened(pkts: list[Packet], key: bytes = bytes(32)) -> list[Opened]:
    out = []
    for i, p in enumerate(pkts):
        d = Datagram(float(i), ("127.0.0.1", 1), ("127.0.0.1", 2), seal_pils(key, encode_packet(p), sender=p.src.node))
        out.append(Opened(d, key, p.src.node, encode_packet(p)))
    return out


@pytest.mark.req("SES-031", "SES-080")
def test_window_and_ack_rules_across_the_sequence_wrap() -> None:
    isn_a, isn_b = 0xFFFFFF00, 500  # A's data crosses 2^32: serial arithmetic must hold (SES-031)

    def seg(src: int, flags: int, seq: int, ack: int = 0, window: int = 0, payload: bytes = b"") -> Packet:
        dst = B if src == A else A
        sp, dp = (49152, 7) if src == A else (7, 49152)
        return Packet(flags, PacketProtocol.STREAM, Addr(0, src), Addr(0, dst), sp, dp, seq & 0xFFFFFFFF,
                      ack & 0xFFFFFFFF, window, payload)  # fmt: skip

    good = [
        seg(A, Flags.SYN, isn_a, window=8),
        seg(B, Flags.SYN | Flags.ACK, isn_b, isn_a + 1, window=1),  # A may send 4096 bytes
        seg(A, Flags.ACK, isn_a + 1, isn_b + 1, 8, b"x" * 4096),  # exactly the window, across the wrap
        seg(B, Flags.ACK, isn_b + 1, isn_a + 4097, 0),  # window closes
        seg(A, Flags.ACK, isn_a + 4097, isn_b + 1, 8, b"p"),  # a one-byte zero-window probe is allowed
    ]
    assert stream_violations(_opened(good), Profile.DRAFT) == []
    over = [*good[:3], seg(A, Flags.ACK, isn_a + 4097, isn_b + 1, 8, b"yy")]  # 2 bytes past the edge
    assert [v.reason.split()[0] for v in stream_violations(_opened(over), Profile.DRAFT)] == ["data"]
    early_ack = [*good[:3], seg(B, Flags.ACK, isn_b + 1, isn_a + 4098, 1)]  # one byte more than A sent
    assert [v.reason.split()[0] for v in stream_violations(_opened(early_ack), Profile.DRAFT)] == ["ACK"]
    # a new SYN starts the direction afresh: the old edge does not judge the new sequence space
    fresh = [*good, seg(A, Flags.SYN, 7, window=8), seg(A, Flags.ACK, 8, 0, 8, b"z" * 9000)]
    assert stream_violations(_opened(fresh), Profile.DRAFT) == []


def test_key_log_hook_is_off_by_default_and_sees_both_ends_key() -> None:
    from pilot_proto.tunnel import TunnelEndpoint

    seen: list[tuple[int, int, bytes]] = []
    a = TunnelEndpoint(A, os.urandom, key_log=lambda *k: seen.append(k))
    b = TunnelEndpoint(B, os.urandom)
    assert b.key_log is None
    b.key_log = lambda *k: seen.append(k)
    a.add_peer(B, ("127.0.0.1", 2))
    b.add_peer(A, ("127.0.0.1", 1))
    a.send(B, dgram_packet(), 0.0)
    for _ in range(4):
        for d in a.datagrams_to_send():
            b.receive_datagram(d.data, ("127.0.0.1", 1), 0.0)
        for d in b.datagrams_to_send():
            a.receive_datagram(d.data, ("127.0.0.1", 2), 0.0)
    assert sorted((x, y) for x, y, _ in seen) == [(A, B), (B, A)]
    assert seen[0][2] == seen[1][2] and len(seen[0][2]) == 32  # one key, both directions


def dgram_packet() -> Packet:
    return Packet(0, PacketProtocol.DATAGRAM, Addr(0, A), Addr(0, B), 1000, 1000, payload=b"x")
