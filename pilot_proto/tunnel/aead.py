"""PILS session crypto: AES-256-GCM sealing and opening with nonces and replay state (draft 7.2, 10.2, 11, 19.9).

One :class:`SessionCipher` per key exchange holds the AES-256-GCM key (both
directions derive the same key) and hands out a :class:`PilsSealer` (our
send half: fixed random prefix, counter that only grows) and a
:class:`PilsOpener` (the peer's send half: replay windows per nonce prefix).

Nonce = prefix (4 bytes) || counter (8 bytes, big-endian, erratum E-NONCE-2).
The first counter is 0 under ``draft`` and 1 under ``go-interop`` (erratum
E-NONCE-1).  The counter never goes back (NONCE-004); a sealer refuses to
seal once it reaches its limit, and reports ``needs_rekey`` a margin before
that so the owner starts a new exchange in time (NONCE-006).  The limit is a
constructor argument so tests can reach it.

Opening order (CONS-019): replay *check* (no state change), GCM open with
AAD = sender ID, inner source node == sender ID (SEC-027), and only then the
replay *commit*.  Any failure raises :class:`RemoteProtocolError` and leaves
every field exactly as it was.

Two ways in on the receive side: :meth:`PilsOpener.open` takes the nonce and
ciphertext already cut out of the frame; :meth:`PilsOpener.open_frame` takes
the whole datagram (``PILS`` magic, sender, nonce, ciphertext+tag, draft 7.2)
and also checks the magic, the cleartext sender and the length, so a receiver
needs no frame object or slices of its own.  Both run the same checks and give
the same answer for the same bytes.

Optional C accelerator: when the extension :mod:`pilot_proto.tunnel._pilsc` (OpenSSL EVP AES-256-GCM,
built by ``pip install`` where a compiler and the OpenSSL headers exist) imports, :meth:`PilsSealer.seal`
builds the frame in one C call, and :meth:`PilsOpener.open_frame` / :meth:`PilsOpener.open` try the
next-in-order frame in one C call that accepts exactly what the Python fast path accepts and returns
``None`` for everything else, which then takes the Python path unchanged (so every error, the replay state
and the conformance variants' hooks are the same).  :meth:`PilsSealer.seal_packet` and
:meth:`PilsOpener.open_packet` fuse the packet header codec (draft 6, CRC-32 included) with sealing and opening
for the ordinary packet the same way: the tunnel's steady state is one C call per packet each way, and every
other packet takes :func:`~pilot_proto.wire.header.encode_packet` / ``decode_packet`` as before
(tests/test_tunnel_pils_packet.py proves the two ways give the same bytes, packets, errors and state).
``PILOT_PROTO_PURE=1`` in the environment at import, or ``SessionCipher(key, accelerated=False)``, keeps the
pure-Python path; :data:`ACCELERATED` tells which path new ciphers take.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, SupportsIndex

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pilot_proto.errors import Action, ErrorCode, LocalProtocolError, RemoteProtocolError
from pilot_proto.tunnel.kdf import wipe
from pilot_proto.tunnel.replay import DEFAULT_WINDOW, ReplayWindow
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import EncryptedFrame, decode_frame
from pilot_proto.wire.header import Packet

try:  # the optional C accelerator (setup.py builds it with optional=True)
    from pilot_proto.tunnel import _pilsc
except ImportError:  # pragma: no cover - depends on the build
    if not TYPE_CHECKING:
        _pilsc = None
else:
    try:
        _pilsc.set_packet_types(Packet, Addr)  # the classes PilsKey.open_packet builds
    except TypeError:  # pragma: no cover - a Python whose NamedTuples the extension cannot build: stay pure
        if not TYPE_CHECKING:
            _pilsc = None

__all__ = [
    "ACCELERATED",
    "ACCELERATOR_AVAILABLE",
    "COUNTER_LIMIT",
    "PilsOpener",
    "PilsSealer",
    "SessionCipher",
]

#: The counter value that must never be used (draft 11.3: re-key before 2^64 - 1).
COUNTER_LIMIT = (1 << 64) - 1
_U32 = 4
_NONCE = struct.Struct(">4sQ")  # prefix, counter (big-endian, erratum E-NONCE-2)
_pack_nonce = _NONCE.pack
_unpack_nonce = _NONCE.unpack
#: magic + sender (8 bytes, compared whole), nonce prefix, counter: the cleartext head of a PILS frame (draft 7.2)
_unpack_frame_head = struct.Struct(">8s4sQ").unpack_from
#: Shortest PILS frame: magic 4, sender 4, nonce 12, GCM tag 16 (draft 7.2, TUN-003).
_FRAME_MIN = 4 + 4 + 12 + 16
#: True when the C extension imported (whether or not it is used).
ACCELERATOR_AVAILABLE: bool = _pilsc is not None
#: Default for new :class:`SessionCipher` objects: the C path, unless missing or ``PILOT_PROTO_PURE=1``.
ACCELERATED: bool = ACCELERATOR_AVAILABLE and os.environ.get("PILOT_PROTO_PURE", "") in ("", "0")
#: Placeholder for "no cached window"; paired with the impossible prefix b"" so it is never used.
_NO_WINDOW = ReplayWindow(1)


class SessionCipher:
    """The AEAD of one tunnel session.  The key buffer passed in is wiped here (SEC-010).

    ``fingerprint`` is a one-way 8-byte label of the key (SHA-256 over a
    domain string and the key), for logs and for tests that prove no
    (key, nonce) pair repeats; it reveals nothing useful about the key.

    ``fast`` is the C accelerator's key object (two EVP contexts keyed once) or ``None`` for the pure-Python
    path; ``accelerated`` chooses (default :data:`ACCELERATED`; asking for it without the extension is an error).
    """

    __slots__ = ("aead", "fast", "fingerprint")

    def __init__(self, key: bytearray, *, accelerated: bool | None = None) -> None:
        if len(key) != 32:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        if accelerated is None:
            accelerated = ACCELERATED
        elif accelerated and _pilsc is None:
            raise ValueError("the C accelerator pilot_proto.tunnel._pilsc is not built")
        self.aead = AESGCM(key)
        self.fast = _pilsc.PilsKey(key) if accelerated else None
        self.fingerprint = hashlib.sha256(b"pilot-proto key id\x00" + key).digest()[:8]
        wipe(key)


class PilsSealer:
    """Our send half of a session: builds complete PILS frames."""

    __slots__ = (
        "_encrypt",
        "_fast_seal",
        "_fast_seal_packet",
        "_head",
        "_prefix",
        "_sender_aad",
        "counter",
        "counter_start",
        "limit",
        "prefix",
        "rekey_at",
        "rekey_margin",
    )

    def __init__(
        self,
        cipher: SessionCipher,
        sender: int,
        prefix: bytes,
        *,
        counter_start: int = 0,
        limit: int = COUNTER_LIMIT,
        rekey_margin: int = 1 << 20,
    ) -> None:
        if len(prefix) != 4:
            raise ValueError("nonce prefix must be 4 bytes")
        if not 0 <= counter_start < limit <= COUNTER_LIMIT:
            raise ValueError("need 0 <= counter_start < limit <= 2**64 - 1")
        self._encrypt = cipher.aead.encrypt
        self._fast_seal = None if cipher.fast is None else cipher.fast.seal
        self._fast_seal_packet = None if cipher.fast is None else cipher.fast.seal_packet
        self._sender_aad = sender.to_bytes(_U32, "big")
        self._head = b"PILS" + self._sender_aad
        self._prefix = prefix
        self.prefix = prefix
        #: The counter the next frame will carry.
        self.counter = counter_start
        self.counter_start = counter_start
        self.limit = limit
        self.rekey_margin = rekey_margin
        #: First counter at which ``needs_rekey`` holds (a plain compare for the sender's fast path).
        self.rekey_at = limit - rekey_margin

    def __reduce_ex__(self, protocol: SupportsIndex, /) -> NoReturn:
        """Refuse copy, deepcopy and pickle: a copy would seal under the same key, prefix and counter (NONCE-004)."""
        raise TypeError("a PilsSealer cannot be copied or pickled: the copy would reuse its nonces (NONCE-004)")

    @property
    def sealed(self) -> int:
        """Frames sealed (nonces used) so far in this session."""
        return self.counter - self.counter_start

    @property
    def needs_rekey(self) -> bool:
        """True once the counter is within ``rekey_margin`` of the limit: start a new exchange now."""
        return self.counter + self.rekey_margin >= self.limit

    @property
    def exhausted(self) -> bool:
        return self.counter >= self.limit

    def next_nonce(self) -> bytes:
        """Reserve and return the next nonce (prefix || counter BE).  Raises once exhausted."""
        c = self.counter
        if c >= self.limit:
            raise _exhausted(self.limit)
        self.counter = c + 1
        return _pack_nonce(self._prefix, c)

    def seal(self, packet: bytes, _pack: Callable[[bytes, int], bytes] = _pack_nonce) -> bytes:
        """Encrypt one encoded packet into a full PILS frame (magic, sender, nonce, ciphertext+tag)."""
        c = self.counter
        if c >= self.limit:
            raise _exhausted(self.limit)
        self.counter = c + 1
        fast = self._fast_seal
        if fast is not None:  # the same frame, built and encrypted in one bytes object in C
            return fast(self._head, self._prefix, c, packet)
        nonce = _pack(self._prefix, c)
        return self._head + nonce + self._encrypt(nonce, packet, self._sender_aad)

    def seal_packet(self, packet: Packet) -> bytes | None:
        """``seal(encode_packet(packet))`` in one C call, for the ordinary packet; else ``None`` and nothing sealed.

        ``None`` (counter unchanged) without the C accelerator, and for any packet the C encoder does not take
        exactly as :func:`~pilot_proto.wire.header.encode_packet` would (a field out of range or not a plain
        int, a payload that is not ``bytes``, a source node other than this sender, SEC-027): the caller then
        takes the general path, which encodes or raises the precise error.  Raises once the counter is spent.
        """
        fast = self._fast_seal_packet
        if fast is None:
            return None
        c = self.counter
        if c >= self.limit:
            raise _exhausted(self.limit)
        frame = fast(self._head, self._prefix, c, packet)
        if frame is not None:
            self.counter = c + 1
        return frame


class PilsOpener:
    """The peer's send half of a session: verifies and decrypts PILS frames from ``sender``.

    Replay state is kept per peer nonce prefix (one window per prefix).  A
    peer that restarts its counter under the same key (GoB does when it
    re-derives after a repeated key exchange) shows a new prefix and gets a
    new window once a frame under it authenticates.  At most ``max_prefixes``
    windows are kept; an evicted prefix is *retired* and refused from then on
    (up to ``max_retired`` remembered), so dropping a window never re-opens
    old counters to replay.
    """

    __slots__ = (
        "_aad",
        "_decrypt",
        "_fast_open",
        "_fast_open_frame",
        "_fast_open_packet",
        "_head",
        "_last",
        "_last_prefix",
        "max_prefixes",
        "max_retired",
        "retired",
        "sender",
        "window_size",
        "windows",
    )

    def __init__(
        self,
        cipher: SessionCipher,
        sender: int,
        *,
        window_size: int = DEFAULT_WINDOW,
        max_prefixes: int = 4,
        max_retired: int = 4096,
    ) -> None:
        self._decrypt = cipher.aead.decrypt
        fast = cipher.fast
        self._fast_open = None if fast is None else fast.open
        self._fast_open_frame = None if fast is None else fast.open_frame
        self._fast_open_packet = None if fast is None else fast.open_packet
        self.sender = sender
        self._aad = sender.to_bytes(_U32, "big")
        self._head = b"PILS" + self._aad
        self.window_size = window_size
        self.windows: dict[bytes, ReplayWindow] = {}
        self.retired: dict[bytes, None] = {}
        self.max_prefixes = max_prefixes
        self.max_retired = max_retired
        self._last_prefix = b""  # cache of the most recently used window (never a valid 4-byte prefix)
        self._last: ReplayWindow = _NO_WINDOW

    def __reduce_ex__(self, protocol: SupportsIndex, /) -> NoReturn:
        """Refuse copy, deepcopy and pickle: a copy would accept again what this one accepted (CONS-016)."""
        raise TypeError("a PilsOpener cannot be copied or pickled: the copy would fork its replay window (CONS-016)")

    def open(self, nonce: bytes, ciphertext: bytes) -> bytes:
        """Authenticate and decrypt; return the inner packet bytes.  State changes only on success."""
        fast = self._fast_open
        if fast is not None:  # C: the plaintext only where the in-order path below would return it, else None
            window = self._last
            plaintext = fast(nonce, ciphertext, self._aad, self._last_prefix, window.top + 1)
            if plaintext is not None:
                window.top += 1  # ReplayWindow.commit() of the next counter in order, as below
                return plaintext
        prefix, counter = _unpack_nonce(nonce)
        window = self._last
        if prefix != self._last_prefix or counter != window.top + 1:
            return self._open_checked(prefix, counter, self.windows.get(prefix), nonce, ciphertext)
        # the next counter of the stream last seen: cannot be a replay; verify (inlined), then extend the run
        try:
            plaintext = self._decrypt(nonce, ciphertext, self._aad)
        except InvalidTag:
            raise _auth_failed() from None
        if plaintext[6:10] != self._aad:
            self._verify(nonce, ciphertext)  # raises SENDER_MISMATCH with details
        window.top = counter  # ReplayWindow.commit() of the next counter in order: one store
        return plaintext

    def open_packet(self, frame: bytes) -> Packet | None:
        """``decode_packet(open_frame(frame), check_version=False)`` in one C call, for the ordinary frame.

        The decoded inner packet when the frame is the next in order of the stream last seen, authenticates,
        carries the sender as inner source, and its inner packet is exactly 34 + payload length bytes with a
        correct CRC-32 (draft 7.2, 10.2, 6.2, 6.5); the replay window then commits that counter.  ``None``
        otherwise, and without the C accelerator, with nothing changed: the caller takes :meth:`open_frame`
        and :func:`~pilot_proto.wire.header.decode_packet`, which accept it or report the precise error.
        """
        fast = self._fast_open_packet
        if fast is None:
            return None
        window = self._last
        packet: Packet | None = fast(frame, self._head, self._last_prefix, window.top + 1)
        if packet is not None:
            window.top += 1  # ReplayWindow.commit() of the next counter in order, as in open_frame
        return packet

    def open_frame(self, frame: bytes) -> bytes:
        """Verify and decrypt one whole PILS datagram from ``sender``; return the inner packet bytes.

        The same checks as :meth:`open` (replay, tag with AAD = sender ID, inner source), plus the frame's own:
        magic ``PILS``, cleartext sender == this opener's sender, at least 36 bytes (draft 7.2).  The next
        counter of the stream last seen is opened inline; every other frame takes :meth:`open`.  State
        changes only on success.
        """
        fast = self._fast_open_frame
        if fast is not None:  # C: the plaintext only where the in-order path below would return it, else None
            window = self._last
            plaintext = fast(frame, self._head, self._last_prefix, window.top + 1)
            if plaintext is not None:
                window.top += 1  # ReplayWindow.commit() of the next counter in order, as below
                return plaintext
        try:
            head, prefix, counter = _unpack_frame_head(frame)
        except struct.error:  # under 20 bytes: decode_frame raises the same TRUNCATED error as a receiver would
            raise self._frame_error(frame) from None
        window = self._last
        if head != self._head or prefix != self._last_prefix or counter != window.top + 1:
            return self._open_frame_checked(frame)
        nonce = frame[8:20]
        ciphertext = frame[20:]
        try:
            plaintext = self._decrypt(nonce, ciphertext, self._aad)
        except InvalidTag:
            raise (_auth_failed() if len(frame) >= _FRAME_MIN else self._frame_error(frame)) from None
        if plaintext[6:10] != self._aad:
            self._verify(nonce, ciphertext)  # raises SENDER_MISMATCH with details
        window.top = counter  # ReplayWindow.commit() of the next counter in order: one store
        return plaintext

    def _open_frame_checked(self, frame: bytes) -> bytes:
        """:meth:`open_frame` for every frame but the next in order: the frame checks, then :meth:`open`."""
        if frame[:8] != self._head or len(frame) < _FRAME_MIN:
            raise self._frame_error(frame)
        return self.open(frame[8:20], frame[20:])

    def _frame_error(self, frame: bytes) -> RemoteProtocolError:
        """The error for a datagram that is not a whole PILS frame from ``sender`` (decode_frame's own errors)."""
        if frame[:4] != b"PILS" and len(frame) >= 4:
            return RemoteProtocolError(
                ErrorCode.BAD_MAGIC,
                f"not a PILS frame (magic {bytes(frame[:4])!r})",
                field="magic",
                section="7.2",
                requirement="TUN-003",
            )
        try:
            decoded = decode_frame(frame)
        except RemoteProtocolError as exc:
            return exc  # TRUNCATED: shorter than magic + sender + nonce + tag
        assert isinstance(decoded, EncryptedFrame)
        return RemoteProtocolError(
            ErrorCode.NO_SESSION_KEY,
            f"frame from sender {decoded.sender}, this opener holds the key of sender {self.sender}",
            field="pils.sender",
            section="7.2",
            requirement="TUN-012",
        )

    def _open_checked(
        self, prefix: bytes, counter: int, window: ReplayWindow | None, nonce: bytes, ciphertext: bytes
    ) -> bytes:
        """The full path: replay check against ``window`` (the prefix's, or ``None`` for a new prefix), GCM open,
        sender check, then the commit.  Signature kept stable: the conformance variants patch around it."""
        if window is not None:
            verdict = window.check(counter)
            if verdict is not None:
                raise _replay_error(verdict, counter, window)
        elif prefix in self.retired:
            raise RemoteProtocolError(
                ErrorCode.REPLAY,
                f"nonce prefix {prefix.hex()} belongs to a retired counter stream",
                field="pils.nonce.prefix",
                section="19.9",
                requirement="CONS-013",
            )
        plaintext = self._verify(nonce, ciphertext)
        if window is None:
            window = self._new_window(prefix)
        window.commit(counter)
        self._last_prefix, self._last = prefix, window
        return plaintext

    def _verify(self, nonce: bytes, ciphertext: bytes) -> bytes:
        """GCM open with AAD = sender ID, then the inner-source check.  Touches no state."""
        try:
            plaintext = self._decrypt(nonce, ciphertext, self._aad)
        except InvalidTag:
            raise _auth_failed() from None
        if plaintext[6:10] != self._aad:  # header bytes 6..9 = source node (u32 BE)
            inner = int.from_bytes(plaintext[6:10], "big") if len(plaintext) >= 10 else None
            raise RemoteProtocolError(
                ErrorCode.SENDER_MISMATCH,
                f"inner packet source node {inner} differs from PILS sender {self.sender}",
                field="packet.src.node",
                section="10.2",
                requirement="SEC-027",
            )
        return plaintext

    def _new_window(self, prefix: bytes) -> ReplayWindow:
        if len(self.windows) >= self.max_prefixes:
            oldest = next(iter(self.windows))
            del self.windows[oldest]
            self.retired[oldest] = None
            if len(self.retired) > self.max_retired:
                del self.retired[next(iter(self.retired))]
        window = ReplayWindow(self.window_size)
        self.windows[prefix] = window
        self._last_prefix, self._last = b"", _NO_WINDOW  # the cached window may just have been evicted
        return window

    def snapshot(self) -> tuple[tuple[tuple[bytes, tuple[int, int]], ...], tuple[bytes, ...]]:
        """Every piece of mutable state, for tests that prove a rejected frame changed nothing."""
        return (
            tuple((p, w.snapshot()) for p, w in self.windows.items()),
            tuple(self.retired),
        )


def _auth_failed() -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.AUTH_FAILED,
        "AES-256-GCM tag does not verify (key, nonce, AAD=sender ID or ciphertext is wrong)",
        field="pils.tag",
        section="10.2",
        requirement="SEC-006",
    )


def _exhausted(limit: int) -> LocalProtocolError:
    return LocalProtocolError(
        ErrorCode.NONCE_EXHAUSTED,
        f"nonce counter reached its limit {limit}; a new key exchange is required",
        field="pils.nonce.counter",
        section="11.3",
        requirement="NONCE-006",
        action=Action.REKEY,
    )


def _replay_error(code: ErrorCode, counter: int, window: ReplayWindow) -> RemoteProtocolError:
    if code is ErrorCode.TOO_OLD:
        return RemoteProtocolError(
            code,
            f"counter {counter} is {window.size} or more behind the highest seen ({window.top})",
            field="pils.nonce.counter",
            section="19.9",
            requirement="CONS-015",
        )
    return RemoteProtocolError(
        code,
        f"counter {counter} was already accepted",
        field="pils.nonce.counter",
        section="19.9",
        requirement="CONS-016",
    )
