"""Dependencies point down: wire <- tunnel/stream/nat <- node <- drivers/testing/vectors <- cli (issue 8).

Every import in the core, including imports inside functions, is checked; the NAT layer may use
only the wire layer and the shared base modules.  Building the CLI parser must not load the NAT
simulator (``nat-matrix`` imports it when it runs).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pilot_proto

ROOT = Path(pilot_proto.__file__).parent
CORE = ["wire", "tunnel", "stream", "nat", "node.py", "sansio.py", "errors.py", "profile.py", "ratelimit.py"]
ABOVE_CORE = ("pilot_proto.testing", "pilot_proto.vectors", "pilot_proto.drivers", "pilot_proto.cli")
NAT_MAY_USE = (
    "pilot_proto.nat",
    "pilot_proto.wire",
    "pilot_proto.errors",
    "pilot_proto.sansio",
    "pilot_proto.profile",
    "pilot_proto.ratelimit",
)


def _files(part: str) -> list[Path]:
    p = ROOT / part
    return sorted(p.rglob("*.py")) if p.is_dir() else [p]


def _imports(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return [m for m in out if m == "pilot_proto" or m.startswith("pilot_proto.")]


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("part", CORE)
def test_core_never_imports_upward(part: str) -> None:
    bad = [(f.relative_to(ROOT).as_posix(), m) for f in _files(part) for m in _imports(f) if _under(m, ABOVE_CORE)]
    assert bad == []


def test_nat_uses_only_wire_and_the_base_modules() -> None:
    used = {m for f in _files("nat") for m in _imports(f)}
    assert used and all(_under(m, NAT_MAY_USE) for m in used), sorted(used)


def test_cli_parser_does_not_load_the_simulator() -> None:
    code = (
        "import sys; from pilot_proto.cli import build_parser; p = build_parser(); "
        "print('pilot_proto.nat' in sys.modules, 'pilot_proto.testing.nat' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "False"]  # the beacon command is registered, the simulator not loaded
