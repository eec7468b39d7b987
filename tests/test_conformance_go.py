"""The conformance suite against a Go reference daemon on 127.0.0.1 -- only with PILOT_GO_BIN.

Starts the Go registry, beacon and one public daemon with its services (tests/interop/_go.py), runs the whole
suite against the daemon in both profiles with the daemon's node ID and Ed25519 key and the registry (for PILA
peers), has Go dial the suite (``pilotctl ping``) for the dialer tests, and requires every failure to be one of
the judged entries of that build's file: ``conformance/go-64c2780-known-failures.txt`` for 64c2780 (GoB),
``conformance/go-head-known-failures.txt`` for the fork's head (GoC, told apart by ``_go.go_head``).  A
``#racy TEST[@PROFILE]  reason`` line there names a failure that depends on timing inside Go: it may fail or
pass, and is reported either way.  A second run judges the trust-gate tests against a private daemon.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "interop"))
from _go import GO_BIN, go_head, go_network
from test_conformance_builtin import run_suite

CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance"
pytestmark = [pytest.mark.interop, pytest.mark.slow]


def _known() -> Path:
    """The judged known-failures file of the build in PILOT_GO_BIN."""
    return CONFORMANCE / ("go-head-known-failures.txt" if go_head() else "go-64c2780-known-failures.txt")


def racy(known: Path, profile: str) -> set[str]:
    """Test names on ``#racy`` lines of ``known`` that apply to ``profile``."""
    names = set()
    for line in known.read_text(encoding="utf-8").splitlines():
        if line.startswith("#racy "):
            name, _, only = line.split()[1].partition("@")
            if not only or only == profile:
                names.add(name)
    return names


@pytest.mark.req("PKT-010", "CONS-013", "SEC-006", "TUN-019", "SES-131")
@pytest.mark.parametrize("profile", ["go-interop", "draft"])
def test_go_daemon_fails_only_the_judged_tests(tmp_path: Path, profile: str) -> None:
    go = tmp_path / "go"
    go.mkdir()
    known = _known()
    with go_network(go, lifetime=300, services=True) as net:
        reg = f"127.0.0.1:{net.registry[1]}"
        dial = []
        pilotctl = Path(GO_BIN or "") / "pilotctl"
        if pilotctl.is_file():  # Go dials the suite: pilotctl resolves our registered node and connects to port 7
            dial = [f"--dial-command=env HOME={go}/home PILOT_SOCKET={go}/d.sock PILOT_REGISTRY={reg} "
                    f"timeout 15 {pilotctl} --json ping {{node}}"]  # fmt: skip
        code, report, out, _ = run_suite(
            tmp_path, f"--target=127.0.0.1:{net.daemon[1]}", f"--target-node-id={net.node_id}",
            f"--target-key={net.ed25519.hex()}", f"--registry={reg}", f"--profile={profile}",
            f"--xfail-file={known}", "--seed=3", *dial,
        )  # fmt: skip
    assert report, out[-3000:]
    failed = [t for t in report["tests"] if t["counted"] and t["verdict"] == "fail"]
    timing = racy(known, profile)
    bad = [(t["id"], t["verdict"], t["message"]) for t in failed if t["id"].split("[")[0] not in timing]
    assert not bad, f"unjudged failures against {known.name}: {bad}"
    for t in failed:
        print(f"racy Go failure ({known.name}): {t['id']}: {t['message']}")
    assert code == (1 if failed else 0), out[-3000:]  # pytest's exit code 1: some tests failed
    assert sum(1 for t in report["tests"] if t["expected_failure"] and t["verdict"] == "fail") >= 5
    assert report["summary"]["unexpected_passes"] == 0, "a judged Go failure now passes: update the known-failures file"
    assert report["duration_s"] <= 90


@pytest.mark.req("SEC-015")
def test_private_go_daemon_and_the_trust_tests(tmp_path: Path) -> None:
    """A private GoB daemon gates untrusted SYNs; the trust-handshake tests need port 444 open to strangers, which
    GoB's gate closes too (E-DMN-1), so they are unsupported -- never a failure."""
    go = tmp_path / "go"
    go.mkdir()
    with go_network(go, lifetime=120, public=False) as net:
        code, report, out, _ = run_suite(
            tmp_path, f"--target=127.0.0.1:{net.daemon[1]}", f"--target-node-id={net.node_id}",
            f"--target-key={net.ed25519.hex()}", f"--registry=127.0.0.1:{net.registry[1]}", "--profile=go-interop",
            f"--xfail-file={_known()}", "--section=10.6", "--seed=3",
        )  # fmt: skip
    assert report, out[-3000:]
    verdicts = {t["id"]: (t["verdict"], t["message"]) for t in report["tests"] if t["module"] == "test_s10_trust.py"}
    assert verdicts["test_private_node_drops_an_untrusted_syn"][0] == "pass", verdicts
    assert all(v in ("pass", "unsupported") for v, _ in verdicts.values()), verdicts
    assert code == 0, out[-3000:]
