"""Tunnel configuration per profile (draft 7, 10, 11, 19; errata E-NONCE-1, E-PILT-1).

=============================  ===========  ===========  =======================================
setting                        draft        go-interop   why
=============================  ===========  ===========  =======================================
``counter_start``              0            1            draft 11.1 vs Go pre-increment (E-NONCE-1)
``plaintext_fallback``         True         False        draft 10.2 fallback vs GoB queue-only (E-PILT-1)
``accept_plaintext``           True         True         PILT only from a peer whose fallback is in force (E-TNL-2)
``lenient_frames``             False        True         extra bytes after PILK/PILA (GoC trailer)
``hold_during_rekey``          False        True         GoB drops the old key the moment it sees ours (E-KEX-1)
``answer_may_repeat_key``      False        True         GoB answers with its one per-process key (E-TNL-1)
=============================  ===========  ===========  =======================================

Both profiles: encryption on (SEC-003); PILA whenever we have an identity
(SEC-011); a peer that authenticated once may not drop to PILK
(``allow_downgrade=False``, SEC-029); PILK from a node whose Ed25519 key we
know is refused (``require_pila_from_known=True``, as GoB does); never send
or accept plaintext with a peer once a key exists (SEC-005).

Freshness and admission (issue 9, errata E-TNL-1 and E-TNL-2, bounds in ``spec/bounds.md``): a key
exchange that would replace a live session only opens a *tentative* session, promoted when a PILS
frame authenticates under it; a key the peer used before is refused as stale; inbound key-exchange
work is paid for from token buckets; peers that never showed authenticated traffic are capped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.tunnel.aead import COUNTER_LIMIT
from pilot_proto.tunnel.replay import DEFAULT_WINDOW

__all__ = ["TunnelConfig"]


@dataclass(frozen=True)
class TunnelConfig:
    profile: Profile = DEFAULT_PROFILE
    #: Encrypt at all (draft 10.2: on by default).  Off means PILT only.
    encryption: bool = True
    #: First nonce counter of a session (E-NONCE-1).
    counter_start: int = 0
    #: Counter value that is never used; reaching it forces a re-key (NONCE-006).  Injectable for tests.
    counter_limit: int = COUNTER_LIMIT
    #: Start a new key exchange this many frames before the limit.
    rekey_margin: int = 1 << 20
    #: Replay window width (CONS-014).
    replay_window: int = DEFAULT_WINDOW
    #: Peer nonce prefixes (counter streams) tracked per session key.
    max_prefixes: int = 4
    #: Previous sessions kept for decrypting in-flight frames after a re-key.
    max_old_sessions: int = 1
    #: Fresh X25519 key per tunnel session (True) or one key per endpoint shared by all peers (Go's way).
    ephemeral_per_session: bool = True
    #: Set the top bit of our nonce prefix from the node-ID order so both directions of a key differ (E-NONCE-3).
    prefix_role_bit: bool = True
    #: With encryption on, accept PILT from a peer while a plaintext fallback for it is in force (our key
    #: exchange to it timed out under ``plaintext_fallback``, or :meth:`TunnelEndpoint.allow_plaintext`), and
    #: only from that peer's known address.  Never from anyone else (E-TNL-2).  With encryption off PILT is all
    #: there is and is always accepted.
    accept_plaintext: bool = True
    #: Draft 10.2: after the key exchange times out, send PILT.  GoB never does (E-PILT-1).
    plaintext_fallback: bool = True
    #: Accept an anonymous PILK at all.
    accept_pilk: bool = True
    #: Accept PILK from a peer that has authenticated with PILA before (downgrade).
    allow_downgrade: bool = False
    #: Refuse PILK from a node whose Ed25519 key is known (GoB behaviour; blocks MITM downgrade).
    require_pila_from_known: bool = True
    #: Extra bytes after PILK/PILA are tolerated (GoC trailer).
    lenient_frames: bool = False
    #: Key-exchange retransmission interval and count before giving up / falling back (seconds).
    kex_retry_interval: float = 1.0
    kex_retries: int = 3
    #: Minimum spacing of answers to repeated key-exchange frames from one peer (seconds).
    kex_answer_interval: float = 1.0
    #: While our re-key offer is unanswered, queue packets instead of sealing them with the old session.
    #: GoB replaces its key as soon as our offer arrives, so frames under the old key would be lost (E-KEX-1).
    hold_during_rekey: bool = False
    #: While our re-key offer is unanswered, also accept frames sealed under the key our offer implies with the
    #: peer's *current* X25519 key.  GoB keeps one X25519 key per process and switches to that key as soon as our
    #: offer arrives, so its next frame can overtake its own answer (E-KEX-2).
    anticipate_rekey: bool = False
    #: Accept an answer to our pending offer that repeats the peer's live X25519 key.  GoB keeps one X25519 key
    #: per process, so its answers always do; a draft peer answers with a fresh key, and a frame repeating the
    #: live key is then a replay that must not complete our offer (E-TNL-1).
    answer_may_repeat_key: bool = False
    #: Packets queued per peer while keying (GoB: 64, drop oldest).
    max_pending: int = 64
    #: A key exchange that would replace a live session waits, as a tentative session, for a PILS frame proving
    #: it (E-TNL-1).  ``False`` installs it at once, as GoB does -- with no defence against a replayed PILA; only
    #: for modelling a Go peer in tests.
    confirm_new_keys: bool = True
    #: Tentative sessions per peer (key exchanges that would replace the live session, awaiting a PILS frame
    #: that proves them, E-TNL-1); the oldest is dropped first.
    max_tentative: int = 2
    #: X25519 keys of a peer remembered to refuse a replayed earlier key exchange as stale (E-TNL-1).
    key_history: int = 16
    #: Peers the endpoint created itself (inbound key exchange, not :meth:`TunnelEndpoint.add_peer`).  When full,
    #: the oldest one that never sent an authenticated PILS frame is evicted; if every one has, the newcomer is
    #: refused (``table_full``).
    max_inbound_peers: int = 1024
    #: Inbound key-exchange work (X25519 operations per second): per source address (burst = 2 s worth) and
    #: globally for known senders (configured, or with a live session) and for unknown ones (burst = 1 s worth).
    kex_rate_per_source: float = 10.0
    kex_rate_known: float = 1000.0
    kex_rate_unknown: float = 200.0
    #: Source addresses whose key-exchange bucket is remembered (least recently used forgotten first).
    kex_sources: int = 4096
    #: Rejections queued for :meth:`TunnelEndpoint.next_event` before further ones are only counted
    #: (``stats["rejections_unreported"]``) -- a driver that never pulls events cannot make the queue grow.
    max_queued_rejections: int = 1024

    @classmethod
    def for_profile(cls, profile: Profile | str = DEFAULT_PROFILE, **overrides: object) -> TunnelConfig:
        prof = Profile.parse(profile)
        base = cls(profile=prof)
        if prof is Profile.GO_INTEROP:
            base = dataclasses.replace(
                base,
                counter_start=1,
                plaintext_fallback=False,
                lenient_frames=True,
                hold_during_rekey=True,
                anticipate_rekey=True,
                answer_may_repeat_key=True,
            )
        return dataclasses.replace(base, **overrides) if overrides else base  # type: ignore[arg-type]
