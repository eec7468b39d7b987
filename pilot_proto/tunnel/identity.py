"""Node identity: an Ed25519 keypair bound to a node ID (draft 10.1, 7.4).

:class:`Identity` wraps the keypair; :meth:`Identity.to_json` /
:meth:`Identity.from_json` use the Go daemon's identity file format
(``{"private_key": base64(64-byte seed||public), "public_key": base64(32)}``)
so a persisted identity moves between implementations (SEC-002).  Reading and
writing the file is the caller's job: this module only converts bytes.

:class:`NodeIdentity` binds an identity to the node ID the registry assigned
and signs PILA frames: the signature covers ``"auth" || node ID (u32 BE) ||
X25519 public key`` (TUN-018).  :func:`verify_auth_kex` checks a received PILA
against the Ed25519 key the receiver already knows for that node (TUN-019,
TUN-020).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pilot_proto.errors import DecodeError, ErrorCode, RemoteProtocolError
from pilot_proto.wire.frames import AuthKeyExchangeFrame, auth_kex_signed_message

__all__ = ["Identity", "NodeIdentity", "verify_auth_kex"]


class Identity:
    """An Ed25519 keypair (the node's long-term credential, SEC-001)."""

    __slots__ = ("_private", "public_bytes")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_bytes = private.public_key().public_bytes_raw()

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Build from the 32-byte RFC 8032 seed (the caller supplies the randomness)."""
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    def seed(self) -> bytes:
        return self._private.private_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def to_json(self) -> bytes:
        """Serialise in the Go daemon's identity-file form (base64 of seed||public and of public)."""
        doc = {
            "private_key": base64.b64encode(self.seed() + self.public_bytes).decode("ascii"),
            "public_key": base64.b64encode(self.public_bytes).decode("ascii"),
        }
        return json.dumps(doc, indent=2).encode("ascii")

    @classmethod
    def from_json(cls, data: bytes | str) -> Identity:
        """Parse an identity file; the stored public key must match the private key."""
        try:
            doc = json.loads(data)
            priv = base64.b64decode(doc["private_key"], validate=True)
            pub = base64.b64decode(doc["public_key"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise DecodeError(
                ErrorCode.BAD_ENCODING,
                "identity",
                f"not an identity file: {exc}",
                section="10.1",
                requirement="SEC-002",
            ) from None
        if len(priv) != 64 or len(pub) != 32:
            raise DecodeError(
                ErrorCode.LENGTH_MISMATCH,
                "identity",
                f"private key {len(priv)} bytes (need 64), public key {len(pub)} bytes (need 32)",
                section="10.1",
                requirement="SEC-002",
            )
        ident = cls.from_seed(priv[:32])
        if ident.public_bytes != pub or priv[32:] != pub:
            raise DecodeError(
                ErrorCode.IDENTITY_MISMATCH,
                "identity.public_key",
                "stored public key does not belong to the private key",
                section="10.1",
                requirement="SEC-002",
            )
        return ident


@dataclass(frozen=True)
class NodeIdentity:
    """An identity bound to the node ID the registry gave it."""

    node_id: int
    identity: Identity

    def auth_kex_frame(self, x25519_public: bytes) -> AuthKeyExchangeFrame:
        """The PILA frame announcing ``x25519_public`` signed by this node (draft 7.4)."""
        signature = self.identity.sign(auth_kex_signed_message(self.node_id, x25519_public))
        return AuthKeyExchangeFrame(self.node_id, x25519_public, self.identity.public_bytes, signature)


def verify_auth_kex(frame: AuthKeyExchangeFrame, known_key: bytes | None) -> None:
    """Check a PILA against the Ed25519 key known for ``frame.sender``; raise on any failure.

    Order: a key must be known (``UNKNOWN_IDENTITY``), the frame's key must be
    that key (``IDENTITY_MISMATCH``), the signature must verify under it
    (``BAD_SIGNATURE``).  The signature is checked with the *known* key, never
    with the key the frame carries.
    """
    if known_key is None:
        raise RemoteProtocolError(
            ErrorCode.UNKNOWN_IDENTITY,
            f"no Ed25519 key is known for node {frame.sender}",
            field="pila.sender",
            section="7.4",
            requirement="TUN-020",
        )
    if frame.ed25519_public != known_key:
        raise RemoteProtocolError(
            ErrorCode.IDENTITY_MISMATCH,
            f"PILA carries an Ed25519 key that is not node {frame.sender}'s known key",
            field="pila.ed25519_public",
            section="7.4",
            requirement="TUN-020",
        )
    try:
        Ed25519PublicKey.from_public_bytes(known_key).verify(
            frame.signature, auth_kex_signed_message(frame.sender, frame.x25519_public)
        )
    except (InvalidSignature, ValueError):
        raise RemoteProtocolError(
            ErrorCode.BAD_SIGNATURE,
            "Ed25519 signature over 'auth' || sender || X25519 key does not verify",
            field="pila.signature",
            section="7.4",
            requirement="TUN-019",
        ) from None
