"""pytest plugin of the conformance suite (``pytest11`` entry point ``pilot_proto.conformance.plugin``).

Options (all in the ``pilot-conformance`` group of ``pytest --help``):

``--target=HOST:PORT``  UDP tunnel endpoint of the implementation under test (an IP literal; a host name
  is refused, never resolved).  Without it the suite starts our own node on 127.0.0.1 and tests that.
``--target-node-id``, ``--target-key``  expected node ID and Ed25519 key (hex or base64); learned from the
  target's key-exchange answer when not given.
``--registry=HOST:PORT``  the reference registry's JSON-over-TCP service; the harness registers PILA
  identities there so a target that checks PILA against its registry accepts them.
``--profile=draft|go-interop``  which reading of the draft the verdicts follow.
``--strict-should``  SHOULD-level tests count (without it their failures are reported but do not fail the run).
``--section=6,7.2``  only tests citing requirements of these draft sections; ``--req=PKT-010,SEC``
  (from :mod:`pilot_proto.testing.pytest_plugin`) selects by requirement ID or prefix.
``--xfail-file=FILE``  expected failures, one ``TEST-NAME-OR-REQ-ID[@PROFILE]  reason`` a line (``#``
  starts a comment); an unexpected pass fails the run so the list stays true.
``--timeout-scale=X``  multiply every wait (slow targets, loaded CI).
``--seed=N``  drives every random choice of the harness (node IDs, keys, ISNs, ports); printed first.
``--dial-command="CMD {host} {port} {node}"``  dialer tests: the implementation dials the suite (default
  with the built-in node: our own daemon opening a stream).
``--builtin-trust=open|gated``  the built-in node's trust gate: a public node (default) or a private one that
  admits untrusted peers only to port 444 (the trust tests judge both).
``--long``  also run the tests that wait out long draft timers (the 30 s keepalive).
``--pcap=FILE``  passive mode: only the checks that need no stimulus run, over this capture.
``--keylog=FILE``  with ``--pcap``: decrypt PILS frames with this key log (``pilot-proto node --keylog``
  writes one; format in :mod:`pilot_proto.tunnel.dangerous`) and run the inner-packet checks too.
``--report=FILE.json``  the machine-readable report; JUnit comes from pytest's own ``--junitxml`` with
  the requirement IDs as properties.

Verdicts are pass / fail / unsupported / inconclusive; a sanity check runs first and last, and if the
first one fails every other test is ``inconclusive``.  A failing test's wire log (JSONL) and pcap are
written next to the report and listed in it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
import re
import tempfile
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pilot_proto.conformance import SUITE_DIR, SUITE_VERSION
from pilot_proto.conformance.harness import Peer, Target, parse_endpoint
from pilot_proto.conformance.verdicts import Inconclusive, Unsupported, Verdict
from pilot_proto.conformance.wirelog import WireLog
from pilot_proto.profile import Profile
from pilot_proto.spec import Requirement
from pilot_proto.tunnel.identity import Identity

#: the requirement marker and --req selection come from the project's traceability plugin
pytest_plugins = ["pilot_proto.testing.pytest_plugin"]

_STATE = pytest.StashKey["RunState"]()
_ITEM = pytest.StashKey["ItemInfo"]()
_LEVEL_RANK = {"MUST": 0, "MUST NOT": 0, "REQUIRED": 0, "SHALL": 0, "SHALL NOT": 0, "prose": 0, "SHOULD": 1,
               "SHOULD NOT": 1, "RECOMMENDED": 1, "NOT RECOMMENDED": 1, "MAY": 2, "OPTIONAL": 2}  # fmt: skip

#: Requirement areas that are not observable on a Pilot tunnel endpoint, with the reason (coverage report).
#: Single requirements carry their own reason in ``spec/requirements/*.toml`` (``unobservable = "..."``).
UNOBSERVABLE = {
    "ARCH": "architecture prose; no single wire behaviour to stimulate",
    "ADDR": "text forms and address constants are host-side; covered by the vectors",
    "PORT": "port-number assignments; exercised only through the services that use them",
    "NAT": "needs a beacon and NAT topology; not reachable through one tunnel endpoint",
    "GW": "gateway is a local process, not observable on the tunnel",
    "IPC": "local Unix socket between daemon and client, not on the wire",
    "REPL": "registry replication runs between registries, not on a node's tunnel",
    "ENT": "enterprise registry features, not on a node's tunnel",
    "IANA": "registry of magic values; the frames tests exercise every magic",
}


@dataclass
class ItemInfo:
    reqs: list[str]
    level: str
    sections: list[str]
    expected: str | None = None  # reason from --xfail-file
    advisory: bool = False  # SHOULD-level without --strict
    logs: list[WireLog] = field(default_factory=list)
    verdict: Verdict | None = None
    message: str = ""
    artifacts: list[str] = field(default_factory=list)
    duration: float = 0.0
    unexpected_pass: bool = False


@dataclass
class RunState:
    seed: int
    profile: Profile
    strict: bool
    scale: float
    report: Path | None
    artifacts: Path
    target_text: str | None
    variant: str | None
    target: Target | None = None
    builtin: Any = None
    target_error: str | None = None
    items: list[pytest.Item] = field(default_factory=list)
    #: every conformance item collected, selected or not (the coverage report names tests not run here)
    collected: list[pytest.Item] = field(default_factory=list)
    sanity_failed: str | None = None
    started: float = field(default_factory=time.time)
    trust_secret: bytes = b""
    pcap: str | None = None
    keylog: str | None = None
    registry_ids: int = 0
    gate: Any = None  # gate.GateState, made with the target


def _requirements() -> dict[str, Requirement]:
    from pilot_proto.conformance.requirements import load

    return load()


def is_conformance_item(item: pytest.Item) -> bool:
    try:
        return Path(str(item.path)).resolve().is_relative_to(SUITE_DIR)
    except (OSError, ValueError):
        return False


# -- options ---------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("pilot-conformance", "Pilot Protocol conformance suite")
    g.addoption(
        "--target",
        default=None,
        metavar="HOST:PORT",
        help="UDP tunnel endpoint under test (IP literal; default: start our own node on 127.0.0.1)",
    )
    g.addoption("--target-node-id", default=None, metavar="ID", help="expected node ID of the target")
    g.addoption("--target-key", default=None, metavar="KEY", help="target's Ed25519 public key (hex or base64)")
    g.addoption("--registry", default=None, metavar="HOST:PORT", help="registry to register PILA identities with")
    g.addoption("--profile", default="draft", choices=["draft", "go-interop"], help="reading of the draft to judge by")
    g.addoption(
        "--strict-should",
        action="store_true",
        default=False,
        help="SHOULD-level tests count (pytest itself owns --strict)",
    )
    g.addoption("--section", default=None, metavar="S[,S]", help="only tests of these draft sections (6, 7.2 ...)")
    g.addoption("--xfail-file", default=None, metavar="FILE", help="expected failures: 'TEST-OR-REQ reason' lines")
    g.addoption("--timeout-scale", type=float, default=1.0, metavar="X", help="multiply every wait by X")
    g.addoption("--seed", type=int, default=None, metavar="N", help="harness randomness (printed; replays a run)")
    g.addoption("--report", default=None, metavar="FILE.json", help="write the JSON conformance report")
    g.addoption("--artifacts", default=None, metavar="DIR", help="where failing tests' wire logs and pcaps go")
    g.addoption("--long", action="store_true", default=False,
                help="also run the tests that wait out the draft's long timers (keepalive 30 s)")  # fmt: skip
    g.addoption("--pcap", default=None, metavar="FILE", help="passive mode: judge this capture, send nothing")
    g.addoption("--keylog", default=None, metavar="FILE",
                help="passive mode: decrypt PILS frames with this key log (inner-packet checks)")  # fmt: skip
    g.addoption("--dial-command", default=None, metavar="CMD",
                help="make the implementation dial the suite: 'CMD {host} {port} {node}' (dialer tests)")  # fmt: skip
    g.addoption(
        "--builtin-variant",
        default=None,
        metavar="NAME",
        help="suite self-test: start a broken variant of our node (pilot_proto.conformance.variants)",
    )
    g.addoption("--builtin-trust", default="open", choices=["open", "gated"],
                help="the built-in node's trust gate: open (public) or gated (private, draft 10.6/10.7)")  # fmt: skip


def _state(config: pytest.Config) -> RunState | None:
    return config.stash.get(_STATE, None)


def _usage_error(msg: str) -> pytest.UsageError:
    return pytest.UsageError(msg)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance_sanity(which): the sanity check (first or last)")
    config.addinivalue_line("markers", "level(name): override the requirement level of a conformance test")
    config.addinivalue_line("markers", "conformance_passive: a passive check over --pcap (runs only in that mode)")
    config.addinivalue_line("markers", "conformance_long: waits out a long draft timer (runs only with --long)")
    pcap = config.getoption("--pcap")
    if pcap is not None and not Path(pcap).is_file():
        raise _usage_error(f"--pcap: no such file {pcap}")
    keylog = config.getoption("--keylog")
    if keylog is not None:
        if pcap is None:
            raise _usage_error("--keylog needs --pcap FILE (it decrypts a capture)")
        from pilot_proto.tunnel.dangerous import KeyLog

        try:
            KeyLog.load(keylog)
        except (OSError, ValueError) as exc:
            raise _usage_error(f"--keylog: {keylog}: {getattr(exc, 'strerror', None) or exc}") from None
    seed = config.getoption("--seed")
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    target = config.getoption("--target")
    if target is not None:
        try:
            parse_endpoint(target)
        except ValueError as exc:
            raise _usage_error(f"--target: {exc}") from None
    reg = config.getoption("--registry")
    if reg is not None:
        try:
            parse_endpoint(reg)
        except ValueError as exc:
            raise _usage_error(f"--registry: {exc}") from None
    scale = config.getoption("--timeout-scale")
    if not 0.1 <= scale <= 100:
        raise _usage_error("--timeout-scale must be between 0.1 and 100")
    report = config.getoption("--report")
    report_path = Path(report).resolve() if report else None
    art = config.getoption("--artifacts")
    if art:
        artifacts = Path(art).resolve()
    elif report_path is not None:
        artifacts = report_path.with_name(report_path.stem + "-artifacts")
    else:
        artifacts = Path(tempfile.gettempdir()) / f"pilot-conformance-{os.getpid()}"
    variant = config.getoption("--builtin-variant")
    if variant is not None:
        from pilot_proto.conformance.variants import VARIANTS

        if variant not in VARIANTS:
            raise _usage_error(f"--builtin-variant: unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        if target is not None:
            raise _usage_error("--builtin-variant applies to the built-in node only; drop --target")
    st = RunState(
        seed=seed,
        profile=Profile.parse(config.getoption("--profile")),
        strict=config.getoption("--strict-should"),
        scale=scale,
        report=report_path,
        artifacts=artifacts,
        target_text=target,
        variant=variant,
    )
    st.trust_secret = random.Random(f"trust:{seed}").randbytes(16)
    st.pcap = pcap
    st.keylog = keylog
    config.stash[_STATE] = st


def pytest_report_header(config: pytest.Config) -> list[str]:
    st = _state(config)
    if st is None or not _runs_suite(config):
        return []
    target = st.target_text or "built-in node (pilot_proto, 127.0.0.1)" + (
        f" variant={st.variant}" if st.variant else ""
    )
    return [
        f"pilot-conformance seed={st.seed} (replay with --seed={st.seed})",
        f"pilot-conformance target={target} profile={st.profile.value} strict={st.strict} scale={st.scale}",
    ]


# -- collection ------------------------------------------------------------------------------------------


def _xfail_entries(path: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise _usage_error(f"--xfail-file: cannot read {path}: {exc.strerror}") from None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, reason = line.partition(" ")
        if not reason.strip():
            raise _usage_error(f"--xfail-file {path}:{n}: give a reason after {key!r}")
        out.append((key, reason.strip()))
    return out


def _section_match(sections: list[str], wanted: list[str]) -> bool:
    return any(s == w or s.startswith(w + ".") for s in sections for w in wanted)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    st = _state(config)
    if st is None:
        return
    conf = [it for it in items if is_conformance_item(it)]
    if not conf:
        return
    _remember(st, conf)
    reqs = _requirements()
    xfails = _xfail_entries(config.getoption("--xfail-file")) if config.getoption("--xfail-file") else []
    for it in conf:
        cited = [str(i) for m in it.iter_markers("req") for i in m.args]
        known = [reqs[c] for c in cited if c in reqs]
        lvl_mark = it.get_closest_marker("level")
        if lvl_mark is not None:
            level = str(lvl_mark.args[0])
        elif known:
            level = min((r.level for r in known), key=lambda lv: _LEVEL_RANK.get(lv, 0))
            level = "MUST" if _LEVEL_RANK.get(level, 0) == 0 else level
        else:
            level = "MUST"
        info = ItemInfo(cited, level, sorted({r.section for r in known}))
        for key, reason in xfails:
            key, _, only = key.partition("@")
            if only and only != st.profile.value:
                continue
            if key in (it.name, it.nodeid, it.originalname if isinstance(it, pytest.Function) else "") or key in cited:
                info.expected = reason
        if _LEVEL_RANK.get(level, 0) > 0 and not st.strict:
            info.advisory = True
        if info.expected is not None:
            it.add_marker(pytest.mark.xfail(reason=f"expected failure: {info.expected}", strict=True))
        elif info.advisory:
            it.add_marker(
                pytest.mark.xfail(reason=f"{level}-level test (counts only with --strict-should)", strict=False)
            )
        it.stash[_ITEM] = info
    passive_mode = config.getoption("--pcap") is not None
    keep = [it for it in items if not is_conformance_item(it)
            or (it.get_closest_marker("conformance_passive") is not None) == passive_mode]  # fmt: skip
    if not config.getoption("--long"):
        keep = [it for it in keep if it.get_closest_marker("conformance_long") is None]
    wanted = config.getoption("--section")
    if wanted:
        secs = [w.strip() for w in wanted.split(",") if w.strip()]
        keep = [it for it in keep if not is_conformance_item(it) or _is_sanity(it)
                or _section_match(it.stash[_ITEM].sections, secs)]  # fmt: skip
    dropped = [it for it in items if it not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    first = [it for it in keep if _is_sanity(it) == "first"]
    last = [it for it in keep if _is_sanity(it) == "last"]
    middle = [it for it in keep if not _is_sanity(it)]
    items[:] = first + middle + last
    st.items = [it for it in items if is_conformance_item(it)]


def _remember(st: RunState, items: list[pytest.Item]) -> None:
    seen = {id(it) for it in st.collected}
    st.collected += [it for it in items if id(it) not in seen and is_conformance_item(it)]


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Remember deselected suite items (``-k``, ``-m``, ``--req``, ``--section``, ``--long``, passive mode) so
    the coverage report can say "covered by test_x, not run here" instead of "no conformance test"."""
    if items:
        st = _state(items[0].config)
        if st is not None:
            _remember(st, list(items))


def _not_run_reason(config: pytest.Config, item: pytest.Item) -> str:
    passive_mode = config.getoption("--pcap") is not None
    passive_item = item.get_closest_marker("conformance_passive") is not None
    if passive_item and not passive_mode:
        return "a passive check: needs --pcap FILE"
    if passive_mode and not passive_item:
        return "an active test: passive mode (--pcap) sends nothing"
    if item.get_closest_marker("conformance_long") is not None and not config.getoption("--long"):
        return "needs --long"
    if config.getoption("--section"):
        return "deselected by --section"
    return "deselected (-k, -m or --req)"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Put the sanity checks back if ``--req`` (which runs after us) removed them."""
    st = _state(session.config)
    if st is None or not st.items:
        return
    items = session.items
    present = {id(it) for it in items}
    for it in st.items:
        if _is_sanity(it) and id(it) not in present:
            if _is_sanity(it) == "first":
                items.insert(0, it)
            else:
                items.append(it)
    st.items = [it for it in items if is_conformance_item(it)]


def _runs_suite(config: pytest.Config) -> bool:
    """True if a command-line path lies in (or contains) the suite, so plain ``pytest tests/`` stays quiet."""
    for arg in config.args:
        try:
            p = Path(config.invocation_params.dir, arg.partition("::")[0]).resolve()
        except OSError:
            continue
        if p.is_relative_to(SUITE_DIR) or SUITE_DIR.is_relative_to(p):
            return True
    return False


def _is_sanity(item: pytest.Item) -> str:
    m = item.get_closest_marker("conformance_sanity")
    return str(m.args[0]) if m is not None else ""


# -- fixtures --------------------------------------------------------------------------------------------


def _parse_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise _usage_error("--target-key: not hex or base64") from None
    if len(key) != 32:
        raise _usage_error(f"--target-key: an Ed25519 public key is 32 bytes, got {len(key)}")
    return key


@pytest.fixture(scope="session")
def conformance_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The implementation under test; the built-in node is started here (and stopped at the end)."""
    config = request.config
    st = _state(config)
    assert st is not None
    if st.target is None and st.target_error is None:
        _start_target(config, st)
    if st.target is None:
        raise Inconclusive(f"no target: {st.target_error}")
    yield st.target


def _start_target(config: pytest.Config, st: RunState) -> None:
    node_id = config.getoption("--target-node-id")
    key = config.getoption("--target-key")
    registry = config.getoption("--registry")
    try:
        nid = int(node_id, 0) if node_id is not None else None
    except ValueError:
        raise _usage_error("--target-node-id: not an integer") from None
    if st.target_text is None:
        from pilot_proto.conformance.builtin import start_builtin

        try:
            b = start_builtin(st.profile.value, 0x00C0FFEE, st.trust_secret, variant=st.variant,
                              trust=config.getoption("--builtin-trust"))  # fmt: skip
        except (RuntimeError, OSError) as exc:
            st.target_error = str(exc)
            return
        st.builtin = b
        config.add_cleanup(b.stop)
        st.target = Target(b.host, b.port, st.profile, b.node_id, b.ed25519, st.scale, None, True,
                           gated=config.getoption("--builtin-trust") == "gated")  # fmt: skip
        return
    host, port = parse_endpoint(st.target_text)
    st.target = Target(host, port, st.profile, nid, _parse_key(key) if key else None, st.scale,
                       parse_endpoint(registry) if registry else None, False)  # fmt: skip


@pytest.fixture
def conformance_rng(request: pytest.FixtureRequest) -> random.Random:
    st = _state(request.config)
    assert st is not None
    return random.Random(f"{st.seed}:{request.node.nodeid}")


def _item_info(request: pytest.FixtureRequest) -> ItemInfo | None:
    info: ItemInfo | None = request.node.stash.get(_ITEM, None)
    return info


@pytest.fixture
def make_peer(
    request: pytest.FixtureRequest, conformance_target: Target, conformance_rng: random.Random
) -> Iterator[Any]:
    """Factory: ``make_peer(trusted=False, stranger=False)`` -> a new :class:`Peer` (own socket and node ID).

    Against a private target an ordinary peer asks for trust (port 444) once it keys (:mod:`.gate`); a
    ``stranger`` does not, so it still meets the gate (the trust tests).

    ``trusted=True`` gives it an Ed25519 identity the target accepts PILA from (built-in node: derived
    from the run's trust secret; other targets: registered with ``--registry``), else Unsupported."""
    peers: list[Peer] = []
    info = _item_info(request)
    st = _state(request.config)
    assert st is not None

    def make(trusted: bool = False, node_id: int | None = None, stranger: bool = False) -> Peer:
        log = WireLog()
        ident: Identity | None = None
        if trusted:
            node_id, ident = _trusted(st, conformance_target, conformance_rng)
        p = Peer(conformance_target, conformance_rng, log, node_id=node_id, identity=ident)
        if not stranger and node_id is None:  # an ordinary peer: past a private target's gate first (gate.py)
            _gate(st, conformance_target, conformance_rng).assign(p, peers)
        peers.append(p)
        if info is not None:
            info.logs.append(log)
        return p

    yield make
    for p in peers:
        p.close()


def _gate(st: RunState, target: Target, rng: random.Random) -> Any:
    """The run's :class:`~pilot_proto.conformance.gate.GateState` (made on first use)."""
    if st.gate is None:
        from pilot_proto.conformance.gate import GateState

        gate_rng = random.Random(f"{st.seed}:gate")
        if target.builtin:
            st.gate = GateState("gated" if target.gated else "open", True,
                                builtin_identity=lambda: _member(st, gate_rng))  # fmt: skip
        else:
            reg = (lambda: _trusted(st, target, gate_rng)) if target.registry is not None else None
            st.gate = GateState({True: "gated", False: "open"}.get(target.gated), False, register=reg)  # type: ignore[arg-type]
    return st.gate


def _member(st: RunState, rng: random.Random) -> tuple[int, Identity]:
    """An ordinary peer's identity against the gated built-in node (its operator approves it; PILK to the tunnel)."""
    from pilot_proto.conformance.builtin import MEMBER_BASE, trusted_identity

    nid = MEMBER_BASE | rng.getrandbits(24)
    return nid, trusted_identity(st.trust_secret, nid)


def _trusted(st: RunState, target: Target, rng: random.Random) -> tuple[int, Identity]:
    if target.builtin:
        from pilot_proto.conformance.builtin import TRUSTED_BASE, trusted_identity

        nid = TRUSTED_BASE | rng.getrandbits(24)
        return nid, trusted_identity(st.trust_secret, nid)
    if target.registry is None:
        raise Unsupported("PILA tests need --registry (to register an identity the target can look up)")
    from pilot_proto.conformance.registry import register

    ident = Identity.from_seed(rng.randbytes(32))
    try:
        nid = register(target.registry, ident, f"127.0.0.1:{rng.randrange(20000, 60000)}")
    except (OSError, ValueError) as exc:
        raise Inconclusive(f"could not register with the registry {target.registry}: {exc}") from None
    return nid, ident


@pytest.fixture
def dial(request: pytest.FixtureRequest, conformance_target: Target, conformance_rng: random.Random) -> Iterator[Any]:
    """A :class:`~pilot_proto.conformance.dialer.DialSession`: the suite listens, the implementation dials."""
    from pilot_proto.conformance.dialer import DialSession, default_dial_command

    command = request.config.getoption("--dial-command")
    default = command is None
    if command is None:
        if not conformance_target.builtin:
            raise Unsupported("dialer tests need --dial-command 'CMD {host} {port} {node}'")
        command = default_dial_command(conformance_target.profile.value)
    log = WireLog()
    info = _item_info(request)
    if info is not None:
        info.logs.append(log)
    try:
        session = DialSession(command, conformance_target, conformance_rng, log, default=default)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise Inconclusive(f"could not run the dial command: {exc}") from None
    yield session
    session.close()


@pytest.fixture(scope="session")
def capture(request: pytest.FixtureRequest) -> list[Any]:
    """Passive mode: the datagrams of ``--pcap``."""
    from pilot_proto.conformance.passive import read_capture

    path = request.config.getoption("--pcap")
    if path is None:
        raise Unsupported("passive checks need --pcap FILE")
    try:
        return read_capture(Path(path))
    except Exception as exc:  # scapy raises many types for a bad file
        raise Inconclusive(f"cannot read the capture {path}: {exc}") from None


@pytest.fixture(scope="session")
def keylog(request: pytest.FixtureRequest) -> Any:
    """Passive mode: the ``--keylog`` file, loaded (inner-packet checks are unsupported without one)."""
    from pilot_proto.tunnel.dangerous import KeyLog

    path = request.config.getoption("--keylog")
    if path is None:
        raise Unsupported("inner-packet checks need --keylog FILE to decrypt the capture")
    return KeyLog.load(path)


@pytest.fixture(scope="session")
def opened(capture: list[Any], keylog: Any) -> list[Any]:
    """Passive mode with ``--keylog``: the capture's PILS frames a logged key opens (inner-packet checks)."""
    from pilot_proto.conformance.passive import open_capture

    frames, unopened = open_capture(capture, keylog)
    if not frames:
        raise Inconclusive(f"no PILS frame of the capture opens under the key log ({unopened} PILS frames)")
    return frames


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> Profile:
    st = _state(request.config)
    assert st is not None
    return st.profile


@pytest.fixture
def peer(make_peer: Any) -> Peer:
    """One scripted peer with its own socket and an anonymous node ID (PILK)."""
    return make_peer()  # type: ignore[no-any-return]


# -- running ---------------------------------------------------------------------------------------------


def pytest_runtest_setup(item: pytest.Item) -> None:
    info = item.stash.get(_ITEM, None)
    st = _state(item.config)
    if info is None or st is None:
        return
    for rid in info.reqs:
        item.user_properties.append(("requirement", rid))
    item.user_properties.append(("level", info.level))
    if st.sanity_failed and not _is_sanity(item):
        raise Inconclusive(f"the first sanity check failed: {st.sanity_failed}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    info = item.stash.get(_ITEM, None)
    st = _state(item.config)
    if info is None or st is None:
        return rep
    info.duration += rep.duration
    verdict: Verdict | None = None
    exc = call.excinfo.value if call.excinfo is not None else None
    if rep.when == "call" or rep.outcome != "passed":
        if hasattr(rep, "wasxfail"):
            if rep.outcome == "skipped":  # xfail that failed as expected
                verdict, info.message = Verdict.FAIL, _message(call) or rep.wasxfail
            else:  # non-strict xpass
                verdict = Verdict.PASS
        elif rep.outcome == "passed":
            verdict = Verdict.PASS
        elif rep.outcome == "failed":
            verdict = Verdict.FAIL
            info.message = _message(call) or str(rep.longrepr)[-500:]
            if "XPASS(strict)" in str(rep.longrepr):
                verdict, info.unexpected_pass = Verdict.PASS, True
                info.message = f"unexpected pass: listed in --xfail-file ({info.expected})"
        elif isinstance(exc, Inconclusive):
            verdict, info.message = Verdict.INCONCLUSIVE, str(exc.msg)
        elif isinstance(exc, Unsupported):
            verdict, info.message = Verdict.UNSUPPORTED, str(exc.msg)
        else:
            verdict, info.message = Verdict.INCONCLUSIVE, f"skipped: {exc}" if exc is not None else "skipped"
    if verdict is not None and (info.verdict is None or verdict is Verdict.FAIL):
        info.verdict = verdict
    if verdict is Verdict.FAIL and rep.when == "call":
        _write_artifacts(st, item, info)
        for a in info.artifacts:
            item.user_properties.append(("wire_log", a))
    if _is_sanity(item) == "first" and rep.when == "call" and verdict is not Verdict.PASS:
        st.sanity_failed = info.message or str(verdict)
    return rep


def _message(call: pytest.CallInfo[None]) -> str:
    if call.excinfo is None:
        return ""
    text = str(call.excinfo.value).strip()
    return (text.splitlines()[0] if text else call.excinfo.typename)[:500]


def _write_artifacts(st: RunState, item: pytest.Item, info: ItemInfo) -> None:
    if not info.logs:
        return
    st.artifacts.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid.split("::", 1)[-1])[:120]
    for n, log in enumerate(info.logs):
        suffix = f"-peer{n}" if len(info.logs) > 1 else ""
        jl, pc = st.artifacts / f"{stem}{suffix}.jsonl", st.artifacts / f"{stem}{suffix}.pcap"
        log.to_jsonl(jl)
        log.to_pcap(pc)
        info.artifacts += [str(jl), str(pc)]


# -- report ----------------------------------------------------------------------------------------------


def build_report(st: RunState) -> dict[str, Any]:
    reqs = _requirements()
    tests: list[dict[str, Any]] = []
    by_req: dict[str, list[tuple[str, str]]] = {}
    for it in st.items:
        info = it.stash.get(_ITEM, None)
        if info is None:
            continue
        verdict = (info.verdict or Verdict.INCONCLUSIVE).value
        if info.verdict is None and not info.message:
            info.message = "not run (the session stopped before this test)"
        counted = not info.advisory and info.expected is None
        tests.append({
            "id": it.nodeid.split("::", 1)[-1] if "::" in it.nodeid else it.nodeid,
            "module": Path(str(it.path)).name,
            "verdict": verdict,
            "message": info.message,
            "requirements": info.reqs,
            "sections": info.sections,
            "level": info.level,
            "counted": counted,
            "expected_failure": info.expected,
            "unexpected_pass": info.unexpected_pass,
            "duration_s": round(info.duration, 3),
            "artifacts": info.artifacts,
        })  # fmt: skip
        for rid in info.reqs:
            by_req.setdefault(rid, []).append((str(tests[-1]["id"]), verdict))
    ran = {id(it) for it in st.items}
    not_run: dict[str, list[dict[str, str]]] = {}
    for it in st.collected:
        if id(it) in ran:
            continue
        name = it.nodeid.split("::", 1)[-1] if "::" in it.nodeid else it.nodeid
        reason = _not_run_reason(it.config, it)
        for rid in dict.fromkeys(str(i) for m in it.iter_markers("req") for i in m.args):
            not_run.setdefault(rid, []).append({"test": name, "reason": reason})
    coverage: dict[str, dict[str, Any]] = {}
    for rid, r in sorted(reqs.items(), key=lambda kv: (_sec_key(kv[1].section), kv[0])):
        coverage.setdefault(r.top_section, {})[rid] = _coverage_entry(r, by_req.get(rid), not_run.get(rid))
    summary = {v.value: sum(1 for t in tests if t["verdict"] == v.value) for v in Verdict}
    counted_fail = sum(1 for t in tests if t["verdict"] == "fail" and t["counted"])
    tgt = st.target
    return {
        "suite": "pilot-proto conformance",
        "suite_version": SUITE_VERSION,
        "target": {
            "address": f"{tgt.host}:{tgt.port}" if tgt else st.target_text or (f"pcap:{st.pcap}" if st.pcap else None),
            "node_id": tgt.node_id if tgt else None,
            "builtin": bool(tgt and tgt.builtin),
            "variant": st.variant,
            "error": st.target_error,
            "capture": st.pcap,
            "keylog": st.keylog,
        },
        "profile": st.profile.value,
        "strict": st.strict,
        "seed": st.seed,
        "timeout_scale": st.scale,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.started)),
        "duration_s": round(time.time() - st.started, 2),
        "summary": {**summary, "counted_failures": counted_fail,
                    "unexpected_passes": sum(1 for t in tests if t["unexpected_pass"])},
        "tests": tests,
        "coverage": coverage,
    }  # fmt: skip


def _coverage_entry(
    r: Requirement, ran: list[tuple[str, str]] | None, not_run: list[dict[str, str]] | None
) -> dict[str, Any]:
    """One requirement's row of the coverage matrix; ``status`` is tested, not-run, unobservable or no-test."""
    entry: dict[str, Any] = {"level": r.level, "section": r.section}
    if ran:
        entry["status"] = "tested"
        entry["tests"] = [{"test": t, "verdict": v} for t, v in ran]
    elif not_run:
        entry["status"] = "not-run"
        entry["untested"] = "; ".join(
            dict.fromkeys(f"covered by {n['test']}, not run here ({n['reason']})" for n in not_run)
        )
    elif r.unobservable or r.id.split("-")[0] in UNOBSERVABLE:
        entry["status"] = "unobservable"
        entry["untested"] = r.unobservable or UNOBSERVABLE[r.id.split("-")[0]]
    else:
        entry["status"] = "no-test"
        entry["untested"] = "no conformance test yet"
    if not_run:
        entry["not_run"] = not_run
    return entry


def _sec_key(section: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in section.split("."))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    st = _state(config)
    if st is None or not st.items:
        return
    rep = build_report(st)
    s = rep["summary"]
    tw = terminalreporter
    tw.section("pilot-conformance")
    tw.line(f"target {rep['target']['address']} profile {rep['profile']} seed {rep['seed']}: "
            f"{s['pass']} pass, {s['fail']} fail ({s['counted_failures']} counted), {s['unsupported']} unsupported, "
            f"{s['inconclusive']} inconclusive in {rep['duration_s']} s")  # fmt: skip
    for t in rep["tests"]:
        if t["verdict"] != "pass" or t["unexpected_pass"]:
            tag = "" if t["counted"] else " (not counted)"
            tw.line(f"  {t['verdict'].upper():12} {t['id']}{tag}: {t['message'][:160]}")
            for a in t["artifacts"]:
                if a.endswith(".pcap"):
                    tw.line(f"               wire log: {a[:-5]}.jsonl, pcap: {a}")
    status: dict[str, int] = {}
    for sec in rep["coverage"].values():
        for e in sec.values():
            status[e["status"]] = status.get(e["status"], 0) + 1
    total = sum(status.values())
    tw.line(f"requirements exercised: {status.get('tested', 0)} of {total}; "
            f"{status.get('not-run', 0)} covered by tests not selected in this run, "
            f"{status.get('unobservable', 0)} not observable on the wire (reason in the report), "
            f"{status.get('no-test', 0)} without a conformance test (see the report's coverage matrix)")  # fmt: skip
    if st.report is not None:
        tw.line(f"report: {st.report}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    st = _state(session.config)
    if st is None or not st.items or st.report is None:
        return
    st.report.parent.mkdir(parents=True, exist_ok=True)
    st.report.write_text(json.dumps(build_report(st), indent=2) + "\n", encoding="utf-8")
