"""The committed fuzz/ layout matches the harness registry, and the fuzz command behaves (issue 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pilot_proto.fuzzing.harness import select
from pilot_proto.fuzzing.layout import expected_layout, write_corpus

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"
CLI = [sys.executable, "-m", "pilot_proto.cli", "fuzz"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_entry_points_and_dictionary_are_current() -> None:
    want = expected_layout()
    have = {p.name: p.read_text(encoding="utf-8") for p in FUZZ.glob("fuzz_*.py")}
    have["pilot.dict"] = (FUZZ / "pilot.dict").read_text(encoding="utf-8")
    stale = sorted(set(have) ^ set(want)) + sorted(n for n in want if n in have and have[n] != want[n])
    assert stale == [], f"fuzz/ is stale ({stale[:5]}...): run `pilot-proto fuzz --write-layout fuzz/`"


def test_build_scripts_build_every_entry_point() -> None:
    for path in (ROOT / ".clusterfuzzlite" / "build.sh", FUZZ / "oss-fuzz" / "build.sh"):
        text = path.read_text(encoding="utf-8")
        assert "compile_python_fuzzer" in text and "fuzz/fuzz_*.py" in text and "--write-corpus" in text


def test_seed_corpus_holds_valid_inputs(tmp_path: Path) -> None:
    h = select(["decoder:header:packet@draft"])[0]
    counts = write_corpus(tmp_path, [h])
    files = list((tmp_path / "fuzz_decoder_header_packet_draft").iterdir())
    assert counts[h.name] == len(files) >= 5
    for f in files:
        assert h.fuzz_one_input(f.read_bytes())[0] == "accepted"  # type: ignore[index]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=timeout,
                          check=False)  # fmt: skip


def test_cli_lists_and_runs_a_campaign(tmp_path: Path) -> None:
    listed = _cli("--list")
    assert listed.returncode == 0 and "decoder:header:packet@draft" in listed.stdout
    run = _cli("decoder:sack:*", "--runs", "2000", "--json", "--save", str(tmp_path))
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["harness"] for r in rows] == ["decoder:sack:sack@draft", "decoder:sack:sack@go-interop"]
    assert all(r["runs"] == 2000 and r["exec_per_s"] > 0 and r["findings"] == [] for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuch:*",), "no harness matches"),
        ((), "name a harness"),
        (("decoder:*", "--time", "-1"), "must be > 0"),
        (("--target", "10.1.2.3:9"), "not a loopback address"),
        (("--target", "localhost:9"), "not an IP address"),
        (("--target", "127.0.0.1:99999"), "port 1-65535"),
    ],
)
def test_cli_mistakes_are_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    res = _cli(*args)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert message in res.stderr


def test_atheris_engine_runs_an_entry_point(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    res = _cli("decoder:header:packet@draft", "--engine", "atheris", "--runs", "20000", "--json",
               "--save", str(tmp_path))  # fmt: skip
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)
    assert row["runs"] == 20000 and row["coverage"] > 10 and not row["crash"]
