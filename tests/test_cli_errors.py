"""Every command-line mistake: one line on stderr, exit status 2, no traceback (issue 9 and 11).

Table-driven: each row is a command line that a user could plausibly get wrong.  Every row runs in-process
through ``pilot_proto.cli.main`` (fast, and it is the same code path), and the rows in :data:`REAL_PROCESS`
also run as real subprocesses, started together, to prove the interpreter itself adds nothing (no traceback
at exit, the exit status reaches the shell).  Ctrl-C and a broken pipe are real-process only.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "pilot_proto.cli"]
ROOT = Path(__file__).resolve().parent.parent

# A UDP port on 127.0.0.1 held for this module's lifetime: binding it again is the late OSError a user
# meets (tests bind loopback only, so a foreign address is not how to provoke it).
_BUSY = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
_BUSY.bind(("127.0.0.1", 0))
BUSY_UDP = f"127.0.0.1:{_BUSY.getsockname()[1]}"

MISTAKES: dict[str, list[str]] = {
    "unknown command": ["bogus"],
    "negative node id": ["node", "--node-id", "-5", "--duration", "0.1"],
    "node id too large": ["node", "--node-id", "4294967296", "--duration", "0.1"],
    "node id not a number": ["node", "--node-id", "five", "--duration", "0.1"],
    "listen port out of range": ["node", "--node-id", "5", "--listen", "127.0.0.1:99999", "--duration", "0.1"],
    "listen without port": ["node", "--node-id", "5", "--listen", "127.0.0.1", "--duration", "0.1"],
    "listen with junk host": ["node", "--node-id", "5", "--listen", "!!:1", "--duration", "0.1"],
    "listen on a port in use": ["node", "--node-id", "5", "--listen", BUSY_UDP, "--duration", "0.1"],
    "peer garbage": ["node", "--node-id", "5", "--peer", "garbage", "--duration", "0.1"],
    "peer with bad node": ["node", "--node-id", "5", "--peer", "x=127.0.0.1:1", "--duration", "0.1"],
    "profile banana": ["node", "--node-id", "5", "--profile", "banana", "--duration", "0.1"],
    "conformance profile banana": ["conformance", "--profile", "banana"],
    "conformance timeout scale not a number": ["conformance", "--timeout-scale", "abc"],
    "conformance target is a hostname": ["conformance", "--target", "localhost:4000"],
    "fuzz target not loopback": ["fuzz", "--target", "10.1.2.3:9", "--runs", "1"],
    "fuzz unknown harness": ["fuzz", "no:such:harness"],
    "beacon bad port": ["beacon", "--listen", "127.0.0.1:70000"],
    "registry bad profile": ["registry", "--profile", "banana"],
    "negative duration": ["node", "--node-id", "5", "--duration", "-1"],
    "nat-matrix profile banana": ["nat-matrix", "--profile", "banana"],
    "missing --spec dir": ["spec", "coverage", "--spec", "/nonexistent/spec"],
    "missing --spec dir (list)": ["spec", "list", "--spec", "/nonexistent/spec"],
    "unwritable --out": ["vectors", "generate", "--out", "/proc/pilot-proto-out"],
    "--out is a file": ["vectors", "generate", "--out", str(ROOT / "pyproject.toml")],
    "missing vectors dir": ["vectors", "verify", "/nonexistent/vectors"],
    "unknown decoder": ["decode", "banana", "00"],
    "bad hex": ["decode", "header:packet@draft", "zz"],
    "trace of a missing file": ["trace", "plot", "/nonexistent/trace.jsonl", "-o", "/tmp/x.png"],
    "missing required option": ["vectors", "generate"],
    "registry address without port": ["node", "--registry", "127.0.0.1", "--duration", "0.1"],
    "registry address with junk host": ["node", "--registry", "bad!host:9000", "--duration", "0.1"],
    "beacon address a broken IP": ["node", "--node-id", "5", "--beacon", "300.1.1.1:9", "--duration", "0.1"],
    "peer address a broken IP": ["node", "--node-id", "5", "--peer", "7=1.2.3:9", "--duration", "0.1"],
    "registry --listen port out of range": ["registry", "--listen", "127.0.0.1:99999"],
    "registry --listen junk host": ["registry", "--listen", "bad_host!:9000"],
    "registry --listen broken IP": ["registry", "--listen", "127.0.0.256:9000"],
    "registry --standby without port": ["registry", "--standby", "127.0.0.1", "--replication-token", "t"],
    "set-tags without a tag": ["set-tags"],
    "set-tags with a bad tag": ["set-tags", "GPU!"],
    "set-tags with four tags": ["set-tags", "a", "b", "c", "d"],
    "set-webhook not http": ["set-webhook", "ftp://127.0.0.1/x"],
    "set-webhook without url": ["set-webhook"],
    "enable-tasks with an argument": ["enable-tasks", "now"],
    "network without action": ["network"],
    "network unknown action": ["network", "destroy"],
    "network join id too large": ["network", "join", "70000"],
    "network invite without node": ["network", "invite", "5"],
    "network accept not a number": ["network", "accept", "club"],
    "node --webhook not http": ["node", "--node-id", "5", "--webhook", "mailto:x@y", "--duration", "0.1"],
    "tags to a daemon that is not running": ["set-tags", "gpu", "--socket", "/nonexistent/pilot.sock"],
}

#: Host names that do not resolve.  These rows run with ``socket.getaddrinfo`` replaced by a fake that knows
#: no name (tests never resolve a host name), so each proves the resolution path's one-line error.
UNRESOLVED: dict[str, list[str]] = {
    "node --listen unknown name": ["node", "--node-id", "5", "--listen", "nowhere.test:0", "--duration", "0.1"],
    "node --registry unknown name": ["node", "--registry", "nowhere.test:9000", "--duration", "0.1"],
    "node --beacon unknown name": ["node", "--node-id", "5", "--beacon", "nowhere.test:9001", "--duration", "0.1"],
    "node --peer unknown name": ["node", "--node-id", "5", "--peer", "7=nowhere.test:4000", "--duration", "0.1"],
    "registry --listen unknown name": ["registry", "--listen", "nowhere.test:0"],
    "registry --standby unknown name": ["registry", "--standby", "nowhere.test:9000", "--replication-token", "t"],
    "beacon --listen unknown name": ["beacon", "--listen", "nowhere.test:0", "--duration", "0.1"],
}


def _run_all(rows: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess[str]]:
    procs = {
        name: subprocess.Popen([*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        for name, argv in rows.items()
    }
    done = {}
    for name, p in procs.items():
        out, err = p.communicate(timeout=60)
        done[name] = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    return done


#: Rows that also run as subprocesses (one per kind of check: argparse, a type function, a late OSError).
REAL_PROCESS = ["negative node id", "listen on a port in use", "unknown decoder", "missing --spec dir"]


def _check(name: str, res: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{name}: stderr was {res.stderr!r}"
    assert "error" in lines[0].lower(), lines[0]
    assert res.returncode == 2, f"{name}: exit {res.returncode}, stderr {res.stderr!r}"


@pytest.fixture(scope="module")
def results() -> dict[str, subprocess.CompletedProcess[str]]:
    return _run_all({name: MISTAKES[name] for name in REAL_PROCESS})


@pytest.mark.parametrize("name", list(MISTAKES))
def test_mistake_is_one_line_and_exit_2(name: str, capfd: pytest.CaptureFixture[str]) -> None:
    from pilot_proto.cli import main

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        status = main(MISTAKES[name])
    finally:
        os.chdir(cwd)
    out, err = capfd.readouterr()
    _check(name, subprocess.CompletedProcess(MISTAKES[name], status, out, err))


@pytest.mark.parametrize("name", REAL_PROCESS)
def test_mistake_in_a_real_process(name: str, results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    _check(name, results[name])


def test_broken_pipe_is_one_line() -> None:
    """``pilot-proto spec list | head -0``: stdout is gone before the first write; one line on stderr, exit 2.

    The reader closes before the interpreter has even started, so the first write meets EPIPE whatever
    the machine's load (reading a line first raced: the whole listing can fit in the pipe buffer).
    """
    p = subprocess.Popen([*CLI, "spec", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # the reader goes away
    err = p.stderr.read().decode()
    rc = p.wait(timeout=30)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert len(err.strip().splitlines()) == 1 and "broken pipe" in err, err
    assert rc == 2


def test_ctrl_c_of_a_running_node_is_clean() -> None:
    """SIGINT to ``pilot-proto node``: it shuts down with its summary line, no traceback."""
    p = subprocess.Popen([*CLI, "node", "--node-id", "5", "--duration", "30"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    assert p.stdout is not None
    banner = p.stdout.readline()
    assert "127.0.0.1" in banner, banner
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=15)
    assert "Traceback" not in err, err
    assert p.returncode in (0, 130), (p.returncode, err)
    assert "done" in out or "interrupted" in err, (out, err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere, so no directory is unwritable")
def test_unwritable_out_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    res = _run_all({"x": ["vectors", "generate", "--out", str(locked / "sub")]})["x"]
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr


def _fake_resolver(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> list[str]:
    """Replace ``socket.getaddrinfo``: IP literals pass through (nothing to look up), ``names`` map to their
    address, every other name fails as an unknown name would.  Returns the names asked for."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def fake(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        try:
            ipaddress.ip_address(str(host))
        except ValueError:
            asked.append(str(host))
            if host not in names:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
            return [(socket.AF_INET, type or socket.SOCK_DGRAM, 0, "", (names[host], int(port)))]
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return asked


@pytest.mark.parametrize("name", list(UNRESOLVED))
def test_unresolvable_host_name_is_one_line_and_exit_2(
    name: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pilot_proto.cli import main

    asked = _fake_resolver(monkeypatch, {})
    status = main(UNRESOLVED[name])
    out, err = capfd.readouterr()
    _check(name, subprocess.CompletedProcess(UNRESOLVED[name], status, out, err))
    assert asked == ["nowhere.test"], asked  # the name went to the resolver, once
    assert "nowhere.test" in err and "resolve" in err, err


def test_host_names_are_resolved_once_at_start(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the Go daemon does (E-DF-1): a name becomes an IP literal before the node binds or sends anything."""
    from pilot_proto.cli import main
    from pilot_proto.registry.server import _endpoint

    asked = _fake_resolver(monkeypatch, {"pilot-test.example": "127.0.0.1"})
    argv = ["node", "--node-id", "5", "--listen", "pilot-test.example:0", "--peer", "7=pilot-test.example:9",
            "--socket", "none", "--duration", "0.1"]  # fmt: skip
    assert main(argv) == 0
    out, err = capfd.readouterr()
    assert "on udp 127.0.0.1:" in out, (out, err)
    assert asked == ["pilot-test.example", "pilot-test.example"]  # --listen and --peer, once each
    assert _endpoint("pilot-test.example:9000") == ("127.0.0.1", 9000)


def test_beacon_host_name_is_resolved_once_at_start(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``beacon --listen NAME:PORT`` binds the address the name resolved to, asked once, as node and registry do."""
    from pilot_proto.cli import main

    asked = _fake_resolver(monkeypatch, {"pilot-test.example": "127.0.0.1"})
    assert main(["beacon", "--listen", "pilot-test.example:0", "--duration", "0.1"]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("beacon listening on udp 127.0.0.1:"), (out, err)
    assert "beacon stopped after " in out and err == "", (out, err)
    assert asked == ["pilot-test.example"]


def test_help_says_how_host_names_are_handled(capsys: pytest.CaptureFixture[str]) -> None:
    from pilot_proto.cli import main

    for command in ("node", "registry", "beacon"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "host name" in text and "resolved once at start" in text, (command, text)
