"""``pilot-proto beacon`` for real: a subprocess on 127.0.0.1 that two UDP clients discover and punch through.

Bounded: every socket read has a timeout, the beacon runs with ``--duration`` as a backstop and is
stopped with SIGINT (Ctrl-C), which must end it cleanly with its summary line.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilot_proto.drivers.beacon import parse_listen
from pilot_proto.wire.beacon import (
    Discover,
    DiscoverReply,
    Endpoint,
    PunchCommand,
    PunchRequest,
    Relay,
    RelayDeliver,
    decode_beacon,
    encode_beacon,
)

CLI = [sys.executable, "-m", "pilot_proto.cli", "beacon"]
ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


def _client() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOOPBACK, 0))
    s.settimeout(5.0)
    return s


def _ep(s: socket.socket) -> Endpoint:
    host, port = s.getsockname()[:2]
    return Endpoint(host, port)


@pytest.fixture
def beacon_proc() -> Iterator[tuple[subprocess.Popen[str], tuple[str, int]]]:
    p = subprocess.Popen(
        [*CLI, "--listen", f"{LOOPBACK}:0", "--profile", "go-interop", "--duration", "30", "-v"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert p.stdout is not None
        banner = p.stdout.readline()
        assert banner.startswith("beacon listening on udp 127.0.0.1:"), banner
        port = int(banner.split()[4].rsplit(":", 1)[1])
        yield p, (LOOPBACK, port)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=10)


@pytest.mark.req("NAT-001", "NAT-002", "NAT-013", "NAT-021", "NAT-022", "NAT-027")
def test_beacon_command_serves_discovery_punch_and_relay(
    beacon_proc: tuple[subprocess.Popen[str], tuple[str, int]],
) -> None:
    p, addr = beacon_proc
    a, b = _client(), _client()
    ep_a, ep_b = _ep(a), _ep(b)
    try:
        for node, s in ((7, a), (8, b)):
            s.sendto(encode_beacon(Discover(node)), addr)
            data, src = s.recvfrom(2048)
            assert src == addr and decode_beacon(data) == DiscoverReply(_ep(s))  # NAT-002: what it saw
        a.sendto(encode_beacon(PunchRequest(7, 8)), addr)
        assert decode_beacon(a.recvfrom(2048)[0]) == PunchCommand(_ep(b))
        assert decode_beacon(b.recvfrom(2048)[0]) == PunchCommand(_ep(a))
        frame = b"PILS" + bytes(40)
        a.sendto(encode_beacon(Relay(7, 8, frame)), addr)
        assert decode_beacon(b.recvfrom(2048)[0]) == RelayDeliver(7, frame)  # go-interop delivery form
        a.sendto(b"\x09garbage", addr)  # refused, logged at -v, the beacon lives on
        a.sendto(encode_beacon(Discover(7)), addr)
        assert decode_beacon(a.recvfrom(2048)[0]) == DiscoverReply(_ep(a))
    finally:
        a.close()
        b.close()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=15)
    assert p.returncode == 0 and "Traceback" not in err, err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("beacon stopped after "), out
    assert "2 nodes registered, 3 discover, 1 punch, 1 relay, 1 rejected" in summary, summary
    log = err.splitlines()
    assert f"beacon: registered node 7 at {ep_a}" in log and f"beacon: registered node 8 at {ep_b}" in log, err
    assert "beacon: punch: node 7 <-> node 8" in log, err
    assert any(line.startswith("beacon: rejected 8 bytes from") and "bad_magic" in line for line in log), err


def test_beacon_command_stops_by_itself_after_duration() -> None:
    res = subprocess.run([*CLI, "--listen", f"{LOOPBACK}:0", "--duration", "0.3"], capture_output=True, text=True,
                         cwd=ROOT, timeout=30)  # fmt: skip
    assert res.returncode == 0 and res.stderr == "", res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("beacon listening on udp 127.0.0.1:") and "(profile draft)" in lines[0]
    assert lines[-1].startswith("beacon stopped after 0.") and "0 nodes registered" in lines[-1], lines


MISTAKES: dict[str, list[str]] = {
    "port out of range": ["--listen", "127.0.0.1:99999"],
    "port not a number": ["--listen", "127.0.0.1:http"],
    "no port": ["--listen", "127.0.0.1"],
    "junk host": ["--listen", "!!:1"],
    "broken IP literal": ["--listen", "300.1.1.1:9001"],
    "host name in brackets": ["--listen", "[pilot-test.example]:9001"],
    "IPv4 in brackets": ["--listen", "[127.0.0.1]:9001"],
    "unbracketed v6": ["--listen", "::1:9001"],
    "foreign address": ["--listen", "192.0.2.1:9001"],
    "profile banana": ["--profile", "banana"],
    "negative duration": ["--duration", "-1"],
    "duration not a number": ["--duration", "soon"],
}


@pytest.mark.parametrize("name", list(MISTAKES))
def test_every_mistake_is_one_line_and_exit_2(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from pilot_proto.cli import main

    argv = MISTAKES[name]
    status = main(["beacon", *argv] if "--duration" in argv else ["beacon", *argv, "--duration", "5"])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and "error" in lines[0], err
    assert status == 2 and "beacon listening" not in out, (status, out)


@pytest.mark.parametrize(
    ("text", "want"),
    [("127.0.0.1:9001", ("127.0.0.1", 9001)), (":0", ("127.0.0.1", 0)), ("[::1]:5", ("::1", 5)),
     ("0.0.0.0:65535", ("0.0.0.0", 65535))],
)  # fmt: skip
def test_parse_listen(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


def test_parse_listen_leaves_a_host_name_for_resolve_listen() -> None:
    """The parser only checks a name's shape; it never looks it up (resolution is resolve_listen's, E-DF-1)."""
    assert parse_listen("pilot-test.example:9001") == ("pilot-test.example", 9001)
