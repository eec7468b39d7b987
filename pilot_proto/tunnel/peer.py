"""Per-peer tunnel state: sessions, the pending key offer and queued packets (draft 10.2, 11.2).

A :class:`Session` is one completed X25519 exchange: the AEAD, our sealer
(our prefix and counter) and the peer's opener (its replay windows).  A
:class:`PeerTunnel` keeps the active session first, plus up to
``max_old_sessions`` predecessors so frames still in flight after a re-key
decrypt; every session keeps its own counters and windows for life, so a
re-key never resets a counter or a window (NONCE-004, NONCE-005).

Key-exchange states (wire-notes 4.3)::

    NO_KEY --send--> KEYING --peer key--> READY --limit near / peer new key--> READY (new session)
    KEYING --retries exhausted--> PLAINTEXT (draft fallback, no session yet) or NO_KEY (go-interop)
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pilot_proto.tunnel.aead import PilsOpener, PilsSealer, SessionCipher
from pilot_proto.tunnel.events import Address

__all__ = ["KeyState", "PeerTunnel", "Session"]


class KeyState(enum.Enum):
    NO_KEY = "no_key"
    KEYING = "keying"
    READY = "ready"
    PLAINTEXT = "plaintext"


@dataclass(eq=False)
class Session:
    cipher: SessionCipher
    sealer: PilsSealer
    opener: PilsOpener
    our_public: bytes
    peer_public: bytes
    authenticated: bool
    established_at: float
    #: The peer has sealed a frame under this session (one opened): it may still be using it.
    rx: bool = False
    #: The first session with this peer (installed at once on both sides).
    first: bool = False

    @property
    def maybe_in_use(self) -> bool:
        """The peer may be sealing under this session: it did, it was the first, or we sealed under it
        (a peer switches to a new session when it sees our frames under it, E-TNL-1)."""
        return self.rx or self.first or self.sealer.sealed > 0


@dataclass(eq=False)
class PeerTunnel:
    node: int
    address: Address | None = None
    sessions: list[Session] = field(default_factory=list)
    #: Our X25519 key offered to the peer and not yet answered.
    offer_private: X25519PrivateKey | None = None
    offer_public: bytes | None = None
    offer_attempts: int = 0
    offer_next: float | None = None
    #: Under ``anticipate_rekey``: the cipher of the session our offer yields if the peer answers with its
    #: current X25519 key (never used to seal; only to recognise the peer's frames, E-KEX-2).
    offer_candidate: SessionCipher | None = None
    #: The key we last sent as an *answer* (not an offer) and when; see ``TunnelEndpoint._on_kex``.
    answer_private: X25519PrivateKey | None = None
    answer_at: float | None = None
    pending: deque[bytes] = field(default_factory=deque)
    authenticated_once: bool = False
    plaintext_mode: bool = False
    last_answer: float | None = None
    #: Sessions from key exchanges that would replace the live one; promoted by the first PILS frame that
    #: authenticates under one of them (E-TNL-1).  Never used to seal.
    tentative: list[Session] = field(default_factory=list)
    #: X25519 keys this peer has used (newest last, bounded): a key exchange repeating one that is not the
    #: live key is stale (E-TNL-1).
    key_history: deque[bytes] = field(default_factory=deque)
    #: Created by ``add_peer`` (never evicted) rather than by an inbound key exchange.
    configured: bool = False
    #: At least one PILS frame from this peer authenticated.
    confirmed: bool = False
    created_at: float = 0.0

    @property
    def active(self) -> Session | None:
        return self.sessions[0] if self.sessions else None

    def remember_key(self, key: bytes, limit: int) -> None:
        if key in self.key_history:
            return
        self.key_history.append(key)
        while len(self.key_history) > limit:
            self.key_history.popleft()

    @property
    def state(self) -> KeyState:
        if self.sessions:
            return KeyState.READY
        if self.offer_private is not None:
            return KeyState.KEYING
        return KeyState.PLAINTEXT if self.plaintext_mode else KeyState.NO_KEY

    def clear_offer(self) -> None:
        self.offer_private = None
        self.offer_public = None
        self.offer_attempts = 0
        self.offer_next = None
        self.offer_candidate = None
