"""DETERMINISTIC, INSECURE key material for tests and vectors only.

Everything here is derived from fixed labels with SHA-256, so runs repeat
byte for byte.  Never use these keys or this RNG outside tests: anyone can
recompute them.  Production drivers pass ``os.urandom`` as the tunnel RNG.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pilot_proto.tunnel.identity import Identity

__all__ = ["InsecureDeterministicRng", "insecure_test_identity", "insecure_test_x25519"]


class InsecureDeterministicRng:
    """``rng(n) -> bytes`` from SHA-256 in counter mode over a seed label.  Repeatable; NOT secret."""

    def __init__(self, seed: bytes | str = b"pilot-proto test rng") -> None:
        self._seed = seed.encode() if isinstance(seed, str) else bytes(seed)
        self._counter = 0
        self._buffer = b""
        self.drawn = 0

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            block = hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
            self._buffer += block
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        self.drawn += n
        return out


def _derive(label: str) -> bytes:
    return hashlib.sha256(b"pilot-proto INSECURE test key\x00" + label.encode()).digest()


def insecure_test_identity(label: str | int) -> Identity:
    """A fixed Ed25519 identity named by ``label`` (e.g. a node ID)."""
    return Identity.from_seed(_derive(f"ed25519/{label}"))


def insecure_test_x25519(label: str | int) -> X25519PrivateKey:
    """A fixed X25519 private key named by ``label``."""
    return X25519PrivateKey.from_private_bytes(_derive(f"x25519/{label}"))
