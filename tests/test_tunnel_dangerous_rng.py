"""The dangerous crafting helpers draw no randomness of their own: the caller injects ``rng`` (sansio rules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pilot_proto.tunnel as tunnel_pkg
from pilot_proto.testing.keys import InsecureDeterministicRng
from pilot_proto.tunnel.dangerous import X25519Keypair


def test_generate_requires_rng() -> None:
    with pytest.raises(TypeError):
        X25519Keypair.generate()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="callable"):
        X25519Keypair.generate(b"not callable")  # type: ignore[arg-type]


def test_generate_uses_exactly_the_injected_bytes() -> None:
    rng = InsecureDeterministicRng("dangerous")
    kp = X25519Keypair.generate(rng)
    assert rng.drawn == 32
    again = InsecureDeterministicRng("dangerous")
    assert kp.private == again(32)
    assert kp == X25519Keypair.from_private(kp.private)


def test_generate_refuses_a_short_rng() -> None:
    with pytest.raises(ValueError, match="returned 31 bytes"):
        X25519Keypair.generate(lambda n: bytes(n - 1))


def test_tunnel_package_names_no_os_urandom() -> None:
    """No module of the tunnel core reaches for ``os.urandom`` (or any ``random``) in code."""
    offenders = []
    for path in Path(tunnel_pkg.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "urandom":
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n in ("random", "secrets") for n in names if n):
                    offenders.append(f"{path.name}:{node.lineno} imports {names}")
    assert offenders == []
