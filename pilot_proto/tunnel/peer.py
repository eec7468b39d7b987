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

    @property
    def active(self) -> Session | None:
        return self.sessions[0] if self.sessions else None

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
