"""Key derivation for tunnel and port-443 keys (draft 10.3).

``key = HKDF-SHA256(salt = empty, IKM = X25519 shared secret, info)`` and the
first 32-byte output block is the AES-256-GCM key.  ``info`` is
``b"pilot-tunnel-v1"`` for tunnel sessions and ``b"pilot-secure-v1"`` for
port 443 (SEC-008, SEC-009).

Key material and zeroing (SEC-010, draft 10.3 MUST): the derived key is
written straight into a caller-visible :class:`bytearray` with
``HKDF.derive_into`` so it can be wiped with :func:`wipe`.  The shared secret
is copied into a bytearray and wiped the same way.  Limits Python imposes,
stated plainly:

* ``X25519PrivateKey.exchange`` returns an immutable ``bytes`` object; we
  drop our only reference at once but cannot overwrite it, so its memory is
  reclaimed (not zeroed) by the allocator.
* The PRK lives only inside the ``cryptography`` (Rust/OpenSSL) HKDF call and
  never reaches Python; whether that code clears it is up to that library.
* ``AESGCM`` keeps its own copy of the key inside OpenSSL for as long as the
  session lives -- that copy is the cipher, which the draft allows to remain.
* X25519 private keys are built from the injected RNG's ``bytes`` (immutable)
  and live inside ``cryptography`` objects; we drop them once a session is
  set up (an answer key is kept until the next exchange with that peer, and a
  shared per-endpoint key, if configured, for the endpoint's life).
* Python may copy any buffer behind our back (resizing, slicing); zeroing is
  best effort, not a guarantee that no copy of a key remains in memory.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pilot_proto.errors import ErrorCode, RemoteProtocolError

__all__ = [
    "KEY_SIZE",
    "SECURE_INFO",
    "TUNNEL_INFO",
    "derive_key",
    "derive_secure_key",
    "derive_tunnel_key",
    "wipe",
    "x25519_shared_secret",
]

TUNNEL_INFO = b"pilot-tunnel-v1"
SECURE_INFO = b"pilot-secure-v1"
KEY_SIZE = 32


def wipe(buf: bytearray | memoryview) -> None:
    """Overwrite a mutable buffer with zeros in place."""
    buf[:] = bytes(len(buf))


def derive_key(shared_secret: bytes | bytearray, info: bytes) -> bytearray:
    """HKDF-SHA256 with an empty salt; returns the 32-byte key in a wipeable buffer (draft 10.3)."""
    out = bytearray(KEY_SIZE)
    HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=b"", info=info).derive_into(bytes(shared_secret), out)
    return out


def derive_tunnel_key(shared_secret: bytes | bytearray) -> bytearray:
    """The PILS session key: HKDF info ``pilot-tunnel-v1`` (SEC-008)."""
    return derive_key(shared_secret, TUNNEL_INFO)


def derive_secure_key(shared_secret: bytes | bytearray) -> bytearray:
    """The port-443 channel key: HKDF info ``pilot-secure-v1`` (SEC-009)."""
    return derive_key(shared_secret, SECURE_INFO)


def _low_order() -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.BAD_PUBLIC_KEY,
        "X25519 shared secret is all zeros (low-order public key)",
        field="x25519_public",
        section="10.2",
        requirement="SEC-028",
    )


def x25519_shared_secret(private: X25519PrivateKey, peer_public: bytes) -> bytearray:
    """X25519 ECDH (RFC 7748) into a wipeable buffer.

    A peer key that yields the all-zero secret (a low-order point) raises
    :class:`RemoteProtocolError` ``BAD_PUBLIC_KEY`` (SEC-028), as RFC 7748
    section 6.1 allows and as the ``cryptography`` library enforces.
    """
    if len(peer_public) != 32:
        raise RemoteProtocolError(
            ErrorCode.BAD_PUBLIC_KEY,
            f"X25519 public key is {len(peer_public)} bytes, not 32",
            field="x25519_public",
            section="7.3",
            requirement="TUN-016",
        )
    try:
        secret = private.exchange(X25519PublicKey.from_public_bytes(bytes(peer_public)))
    except ValueError:
        raise _low_order() from None
    out = bytearray(secret)
    del secret
    if not any(out):  # belt and braces: never derive from a zero secret
        raise _low_order()
    return out
