"""Every decoder in the registry survives arbitrary bytes.

``pilot_proto.wire.formats.discover()`` finds every ``DECODERS`` table in
``pilot_proto.wire`` (all modules, all profiles).  Each decoder gets random
bytes and mutated valid encodings (bit flips, truncations, insertions, length
fields set to extremes); it must return a value or raise ``PilotError`` --
any other exception is a bug.  Seeds are valid encodings of every format,
including every hex field of the committed vector files, so the mutations
start from deep inside the formats rather than at their first length check.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilot_proto.errors import PilotError
from pilot_proto.fuzzing.seeds import own_seeds
from pilot_proto.profile import Profile
from pilot_proto.wire.formats import discover, modules_without_decoders, nonconforming_modules

pytestmark = pytest.mark.req("IPC-024", "SVC-010", "SVC-026", "SVC-031", "SVC-041", "SVC-051", "SVC-061")

DECODERS = discover()
VECTOR_DIR = Path(__file__).resolve().parent.parent / "vectors"


def _hex_strings(node: object) -> list[bytes]:
    out: list[bytes] = []
    if isinstance(node, dict):
        for value in node.values():
            out.extend(_hex_strings(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(_hex_strings(value))
    elif isinstance(node, str) and len(node) % 2 == 0 and 0 < len(node) <= 4096:
        with contextlib.suppress(ValueError):
            out.append(bytes.fromhex(node))
    return out


def _own_seeds() -> list[bytes]:
    """Hand-built encodings of the service, IPC and control formats (shared with the fuzz harnesses)."""
    return list(own_seeds())


def _seeds() -> list[bytes]:
    seeds = _own_seeds()
    for path in sorted(VECTOR_DIR.glob("*.json")):
        seeds.extend(_hex_strings(json.loads(path.read_text(encoding="utf-8"))))
    return sorted(set(seeds), key=lambda s: (len(s), s))


SEEDS = _seeds()


def _prefix_seeds(budget: int = 3000) -> list[bytes]:
    """Our own seeds plus a fixed sample of vector seeds, about ``budget`` prefixes in all."""
    import random

    own = [s for s in _own_seeds() if len(s) <= 128]
    rest = [s for s in SEEDS if len(s) <= 128 and s not in own]
    random.Random(0).shuffle(rest)
    chosen, total = list(own), sum(len(s) + 1 for s in own)
    for seed in rest:
        if total >= budget:
            break
        chosen.append(seed)
        total += len(seed) + 1
    return chosen


PREFIX_SEEDS = _prefix_seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "extreme", "splice"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "extreme" and len(data) >= pos + 4:
            data[pos : pos + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x01\x00\x00\x00"]))
        elif op == "splice":
            data += draw(st.sampled_from(SEEDS))
    return bytes(data)


def _survives(name: str, data: bytes) -> None:
    try:
        DECODERS[name](data)
    except PilotError:
        pass
    except Exception as exc:  # the property under test: nothing but PilotError escapes
        raise AssertionError(f"{name} raised {type(exc).__name__}: {exc!r} on {data.hex()}") from exc


# A fixed total budget shared by all decoders keeps the file near 15 s however many formats appear.
_EXAMPLES = max(40, 4500 // max(len(DECODERS), 1))
_FUZZ = settings(max_examples=_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("name", sorted(DECODERS))
@_FUZZ
@given(data=st.one_of(st.binary(max_size=96), mutated()))
def test_decoder_survives_arbitrary_bytes(name: str, data: bytes) -> None:
    _survives(name, data)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder_survives_every_seed_prefix(name: str) -> None:
    """Each prefix of our seeds and of sampled vectors: the truncation path of every field of every format."""
    for seed in PREFIX_SEEDS:
        for end in range(len(seed) + 1):
            _survives(name, seed[:end])


def test_registry_finds_core_and_service_decoders() -> None:
    """The registry cannot silently find nothing: core, NAT, stream and our service/IPC modules are all there."""
    modules = {name.split(":", 1)[0] for name in DECODERS}
    required = {"header", "frames", "control", "secure", "trust", "dataexchange", "eventstream", "tasksubmit", "ipc",
                "registry"}  # fmt: skip
    assert required <= modules, f"missing decoders of {sorted(required - modules)}"
    for profile in Profile:
        assert f"ipc:frame@{profile.value}" in DECODERS
        assert f"secure:record@{profile.value}" in DECODERS
        assert f"eventstream:stream@{profile.value}/client" in DECODERS
    assert all(callable(fn) for fn in DECODERS.values())
    assert len(SEEDS) >= 20


def test_registry_reports_modules_it_adapts_or_skips() -> None:
    """Modules that break the convention are adapted (and listed), never silently dropped."""
    adapted = nonconforming_modules()
    for name in adapted:
        assert any(key.startswith(f"{name}:") for key in DECODERS), name
    # Modules without decoders are helpers with no byte format of their own.
    assert not {"control", "secure", "trust", "ipc"} & set(modules_without_decoders())


@pytest.mark.req("IPC-008")
def test_cli_decode_command(capsys: pytest.CaptureFixture[str]) -> None:
    from pilot_proto.cli import main

    assert main(["decode", "ipc:frame@go-interop", "0000000f05000a0000000100010000f291c000"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"type": "Accept", "conn_id": 1, "remote": "1:0001.0000.F291", "remote_port": 49152,
                   "local_port": 10}  # fmt: skip
    assert main(["decode", "ipc:frame@draft", "0000000f05000a0000000100010000f291c000"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "length_mismatch"
    assert main(["decode", "--list"]) == 0
    assert set(capsys.readouterr().out.split()) == set(DECODERS)
    assert main(["decode", "no:such", "00"]) == 2
