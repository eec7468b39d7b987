"""Port-443 secure channel crypto, sans-IO (draft 10.5, 11.4; framing in :mod:`pilot_proto.wire.secure`).

One :class:`SecureChannel` per port-443 stream connection.  Byte flow (SVC-054):
the client sends its raw 32-byte X25519 key, the server answers with its own,
both derive ``HKDF-SHA256(info="pilot-secure-v1")`` (SEC-009), and from then
on every chunk of application data is one record ``len || nonce || sealed``.

* Nonce = role prefix (server ``00000001``, client ``00000002``) || counter,
  counter from 0 (``draft``) or 1 (``go-interop``, erratum E-NONCE-1 / E-SEC443-1).
* AAD = the sender's 4-byte prefix (SEC-013), so a record reflected back to
  its sender fails; we also refuse any record whose prefix is not the peer's role.
* Records arrive in order on a reliable stream, so a counter must be above the
  last accepted one; a replayed or reordered record is refused.
* Keys come from the injected ``rng``; the shared secret and key buffers are
  wiped after the AEAD is built (SEC-010, limits as in :mod:`pilot_proto.tunnel.kdf`).

Not implemented: GoB's optional 92-byte mutual-auth frames (SVC-055/056).
Any error is raised as :class:`~pilot_proto.errors.PilotError` and leaves the
channel unusable (``failed``): a stream with a bad record cannot resynchronise.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pilot_proto.errors import ErrorCode, LocalProtocolError, PilotError, RemoteProtocolError
from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.tunnel.aead import COUNTER_LIMIT
from pilot_proto.tunnel.kdf import derive_secure_key, wipe, x25519_shared_secret
from pilot_proto.wire.secure import KEY_SIZE, KeyAgreementReader, Record, RecordReader, Role, encode_record

__all__ = ["SecureChannel", "SecureState"]


class SecureState(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    FAILED = "failed"


class SecureChannel:
    """End-to-end encryption of one port-443 connection, as ``role`` (client dials, server listens)."""

    def __init__(
        self,
        role: Role,
        rng: Callable[[int], bytes],
        profile: Profile = DEFAULT_PROFILE,
        *,
        counter_limit: int = COUNTER_LIMIT,
    ) -> None:
        self.role = Role(role)
        self.peer_role = Role.SERVER if self.role is Role.CLIENT else Role.CLIENT
        self.profile = profile
        self._private: X25519PrivateKey | None = X25519PrivateKey.from_private_bytes(bytes(rng(32)))
        self.public_key = self._private.public_key().public_bytes_raw()
        self._start = 1 if profile is Profile.GO_INTEROP else 0
        self.send_counter = self._start
        self.recv_counter = -1  # highest counter accepted from the peer
        self.counter_limit = counter_limit
        self._aead: AESGCM | None = None
        self._keys = KeyAgreementReader()
        self._records = RecordReader(profile)
        self._prefix = int(self.role).to_bytes(4, "big")
        self._peer_prefix = int(self.peer_role).to_bytes(4, "big")
        self.state = SecureState.HANDSHAKE
        self._out = bytearray(self.public_key if self.role is Role.CLIENT else b"")

    def data_to_send(self) -> bytes:
        """Bytes for the stream: our key during the handshake, then records."""
        out, self._out = bytes(self._out), bytearray()
        return out

    def send(self, data: bytes) -> None:
        """Seal ``data`` as one record (queued for :meth:`data_to_send`)."""
        if self.state is not SecureState.OPEN or self._aead is None:
            raise LocalProtocolError(
                ErrorCode.INVALID_STATE, f"cannot send in state {self.state.value}", section="10.5"
            )
        c = self.send_counter
        if c >= self.counter_limit:
            raise LocalProtocolError(
                ErrorCode.NONCE_EXHAUSTED, "port-443 counter exhausted; open a new connection", section="11.4",
                requirement="NONCE-006",
            )  # fmt: skip
        self.send_counter = c + 1
        nonce = self._prefix + c.to_bytes(8, "big")
        self._out += encode_record(Record(nonce, self._aead.encrypt(nonce, data, self._prefix)))

    def receive_data(self, data: bytes) -> list[bytes]:
        """Feed stream bytes; return the application data of every complete record."""
        if self.state is SecureState.FAILED:
            raise LocalProtocolError(ErrorCode.INVALID_STATE, "channel failed earlier", section="10.5")
        try:
            return self._receive(data)
        except PilotError:
            self.state = SecureState.FAILED
            raise

    def _receive(self, data: bytes) -> list[bytes]:
        if self.state is SecureState.HANDSHAKE:
            self._keys.feed(data)
            peer_key = self._keys.next_message()
            if peer_key is None:
                return []
            self._establish(peer_key)
            data = self._keys.remainder()
        self._records.feed(data)
        out = []
        while (record := self._records.next_message()) is not None:
            out.append(self._open(record))
        return out

    def _establish(self, peer_key: bytes) -> None:
        assert self._private is not None and len(peer_key) == KEY_SIZE
        secret = x25519_shared_secret(self._private, peer_key)
        key = derive_secure_key(secret)
        wipe(secret)
        self._aead = AESGCM(key)
        wipe(key)
        self._private = None
        self.state = SecureState.OPEN
        if self.role is Role.SERVER:
            self._out += self.public_key

    def _open(self, record: Record) -> bytes:
        assert self._aead is not None
        if record.nonce[:4] != self._peer_prefix:
            raise RemoteProtocolError(
                ErrorCode.BAD_VALUE,
                f"record prefix {record.nonce[:4].hex()} is not the peer's role {int(self.peer_role):08x}",
                field="secure.nonce.prefix", section="11.4", requirement="NONCE-007",
            )  # fmt: skip
        counter = record.counter
        if counter <= self.recv_counter:
            raise RemoteProtocolError(
                ErrorCode.REPLAY, f"record counter {counter} not above {self.recv_counter}",
                field="secure.nonce.counter", section="11.4", requirement="NONCE-008",
            )  # fmt: skip
        try:
            plaintext = self._aead.decrypt(record.nonce, record.sealed, self._peer_prefix)
        except InvalidTag:
            raise RemoteProtocolError(
                ErrorCode.AUTH_FAILED, "port-443 record tag does not verify", field="secure.tag", section="10.5",
                requirement="SEC-013",
            ) from None  # fmt: skip
        self.recv_counter = counter
        return plaintext
