"""The conformance plugin itself: option errors, bounded waits against bad targets, JUnit properties,
the packaged requirement copy, seed replay and the xfail file.  Each run is small (-k) and fast."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_conformance_builtin import ROOT, run_suite

from pilot_proto.conformance.harness import Peer, Target, parse_endpoint
from pilot_proto.conformance.requirements import PACKAGED
from pilot_proto.conformance.wirelog import WireLog
from pilot_proto.spec import default_spec_dir


def test_parse_endpoint_refuses_hostnames_and_keeps_ips() -> None:
    assert parse_endpoint("127.0.0.1:4000") == ("127.0.0.1", 4000)
    assert parse_endpoint("[::1]:4000") == ("::1", 4000)
    for bad in ("localhost:4000", "example.com:1", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":5"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--target=localhost:9"], "not an IP address"),
        (["--timeout-scale=0"], "--timeout-scale"),
        (["--builtin-variant=nope"], "unknown variant"),
        (["--xfail-file=/nonexistent/x.txt"], "cannot read"),
    ],
)
def test_cli_mistakes_are_one_line_errors(args: list[str], needle: str) -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "pilot_proto.cli", "conformance", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/tmp", env=env)
    assert proc.returncode != 0
    assert needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_xfail_file_line_without_reason_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.txt"
    bad.write_text("test_sanity_first\n")
    code, _, out, _ = run_suite(tmp_path, f"--xfail-file={bad}", "-k", "sanity", timeout=60)
    assert code != 0 and "give a reason" in out


def test_packaged_requirements_match_spec() -> None:
    spec = {p.name: p.read_bytes() for p in default_spec_dir().glob("*.toml")}
    packaged = {p.name: p.read_bytes() for p in PACKAGED.glob("*.toml")}
    assert packaged == spec, "run: python -m pilot_proto.conformance.requirements"


def test_seed_replays_the_harness_choices() -> None:
    tgt = Target("127.0.0.1", 9)
    a = Peer(tgt, random.Random("7:x"), WireLog())
    b = Peer(tgt, random.Random("7:x"), WireLog())
    c = Peer(tgt, random.Random("8:x"), WireLog())
    try:
        assert (a.node_id, a.new_port(), a.new_private().public_key().public_bytes_raw()) == (
            b.node_id, b.new_port(), b.new_private().public_key().public_bytes_raw())  # fmt: skip
        assert a.node_id != c.node_id
    finally:
        for p in (a, b, c):
            p.close()


def test_junit_carries_requirement_ids_and_the_seed_is_printed(tmp_path: Path) -> None:
    xml = tmp_path / "j.xml"
    code, report, out, _ = run_suite(tmp_path, f"--junitxml={xml}", "-k", "sanity or test_ping_reply_fields",
                                     "--seed=42", "-o", "console_output_style=classic", timeout=120)  # fmt: skip
    assert code == 0, out[-2000:]
    text = xml.read_text()
    assert '<property name="requirement" value="SVC-042"' in text
    assert '<property name="level" value="MUST"' in text
    assert report["seed"] == 42 and report["tests"][0]["id"] == "test_sanity_first"


class _BadTarget:
    """A UDP socket on 127.0.0.1 that is mute, answers garbage, or floods every sender."""

    def __init__(self, mode: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.mode = mode
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self.stop and time.monotonic() < deadline:
            try:
                _, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "garbage":
                self.sock.sendto(b"PILS" + bytes(60), addr)
                self.sock.sendto(b"\xff" * 17, addr)
            elif self.mode == "flood":
                for _ in range(300):
                    try:
                        self.sock.sendto(b"PILK" + bytes(36), addr)  # bad key offers, never a valid answer
                    except OSError:
                        break


@pytest.fixture(params=["mute", "garbage", "flood"])
def bad_target(request: pytest.FixtureRequest) -> Iterator[_BadTarget]:
    t = _BadTarget(request.param)
    yield t
    t.stop = True
    t.sock.close()
    t.thread.join(2)


@pytest.mark.slow
def test_bad_target_never_hangs_and_still_reports(tmp_path: Path, bad_target: _BadTarget) -> None:
    t0 = time.monotonic()
    code, report, out, _ = run_suite(tmp_path, f"--target=127.0.0.1:{bad_target.port}", timeout=120)
    took = time.monotonic() - t0
    assert code != 0
    assert report, out[-2000:]
    verdicts = {t["id"]: t["verdict"] for t in report["tests"]}
    assert verdicts["test_sanity_first"] == verdicts["test_sanity_last"] == "fail"
    others = [v for k, v in verdicts.items() if not k.startswith("test_sanity")]
    assert others and all(v == "inconclusive" for v in others), verdicts
    assert report["summary"]["pass"] == 0, "nothing may pass against a target that never keys"
    # that the run ends at all is proved by the subprocess timeout above; how long it took is reported, not judged
    print(f"run against a {bad_target.mode} target: {took:.1f} s")


def test_runs_from_the_package_alone(tmp_path: Path) -> None:
    """What a wheel holds (the pilot_proto package, no spec/, tests/ or conformance/) is enough to run the suite."""
    import shutil

    shutil.copytree(ROOT / "pilot_proto", tmp_path / "pkg" / "pilot_proto",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    report = tmp_path / "r.json"
    env = {"PYTHONPATH": str(tmp_path / "pkg"), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "pilot_proto.cli", "conformance", "-q", "-k", "sanity or test_ping_reply_fields",
           f"--report={report}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    import json

    doc = json.loads(report.read_text())
    assert doc["summary"]["pass"] == 3 and "6" in doc["coverage"]
