"""Draft 7.3, 7.4, 10.2-10.4: key exchange -- PILK, PILA with good and bad signatures, wrong, stale and
repeated keys.  A refused exchange must leave no session behind: a ping sealed under the key it would
have produced goes unanswered, and the peer's previous session (if any) keeps working."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pilot_proto.conformance.harness import Peer
from pilot_proto.conformance.suite._common import QUIET, answered, keyed_with_ping
from pilot_proto.conformance.verdicts import Unsupported
from pilot_proto.tunnel.identity import Identity


@pytest.mark.req("TUN-016", "TUN-004", "TUN-005", "TUN-023", "SEC-004")
def test_pilk_is_answered_with_a_key(peer: Peer) -> None:
    keys = peer.keyed()
    frame = keys.answer
    assert frame[:4] in (b"PILK", b"PILA")
    if frame[:4] == b"PILK":
        assert len(frame) == 40 or peer.target.profile.value == "go-interop", f"PILK answer is {len(frame)} bytes"
    else:
        assert len(frame) >= 136, f"PILA answer is {len(frame)} bytes"
        assert len(frame) == 136 or peer.target.profile.value == "go-interop", (
            f"draft PILA is 136 bytes, got {len(frame)}"
        )
    assert frame[8:40] != bytes(32), "the target offered an all-zero X25519 key"


@pytest.mark.req("TUN-018", "TUN-019", "SEC-001")
def test_pila_answer_signature_verifies(peer: Peer) -> None:
    """The target proves its identity: its PILA signature verifies under its Ed25519 key (SEC-001)."""
    keys = peer.keyed()
    ok = peer.verify_answer_signature(keys)
    if ok is None:
        raise Unsupported("the target answers with PILK (no identity), so there is no signature to check")
    assert ok, "the PILA signature over 'auth' || sender || X25519 key does not verify (or the key is not --target-key)"


@pytest.mark.level("SHOULD")
@pytest.mark.req("SEC-011", "TUN-021", "CONS-003")
def test_target_with_identity_uses_pila(peer: Peer) -> None:
    if peer.target.ed25519 is None:
        raise Unsupported("give --target-key to judge whether the target should use PILA")
    keys = peer.keyed()
    assert keys.authenticated, "the target has an Ed25519 identity but answered with anonymous PILK"


@pytest.mark.req("TUN-015", "SEC-008", "SEC-006")
def test_session_key_is_hkdf_of_x25519(peer: Peer) -> None:
    """A ping sealed under HKDF-SHA256(X25519, 'pilot-tunnel-v1') is answered under the same key."""
    keyed_with_ping(peer)


@pytest.mark.req("TUN-019", "TUN-005", "SEC-011")
def test_pila_with_good_signature_is_accepted(make_peer: Any) -> None:
    peer: Peer = make_peer(trusted=True)
    keyed_with_ping(peer, auth=True)


def _refused(peer: Peer, frame: bytes) -> None:
    """Send a broken offer; no key answer may come and a ping under the implied key must go unanswered."""
    priv = peer.new_private()
    keys = peer.key_exchange(private=priv, frame=frame, duration=QUIET * 2, retries=0)
    assert keys is None, "the target answered a key exchange it should have refused"


@pytest.mark.req("TUN-019")
def test_pila_with_bad_signature_is_refused(make_peer: Any) -> None:
    peer: Peer = make_peer(trusted=True)
    frame = bytearray(peer.kex_frame(peer.new_private(), auth=True))
    frame[100] ^= 0x40
    _refused(peer, bytes(frame))
    keyed_with_ping(peer, auth=True)  # the identity itself is fine


@pytest.mark.req("TUN-020")
def test_pila_with_wrong_ed25519_key_is_refused(make_peer: Any) -> None:
    peer: Peer = make_peer(trusted=True)
    real = peer.identity
    peer.identity = Identity.from_seed(peer.rng.randbytes(32))  # validly signed, but not the node's key
    _refused(peer, peer.kex_frame(peer.new_private(), auth=True))
    peer.identity = real


@pytest.mark.req("TUN-019", "TUN-020")
def test_pila_signed_for_another_node_is_refused(make_peer: Any) -> None:
    peer: Peer = make_peer(trusted=True)
    other: Peer = make_peer(trusted=True)
    frame = peer.kex_frame(peer.new_private(), auth=True)  # our identity signs our node ID ...
    forged = frame[:4] + other.node_id.to_bytes(4, "big") + frame[8:]  # ... relabelled as the other node
    _refused(peer, forged)


@pytest.mark.req("SEC-029")
def test_pilk_after_pila_is_refused(make_peer: Any) -> None:
    peer: Peer = make_peer(trusted=True)
    keyed_with_ping(peer, auth=True)
    old = peer.keys
    downgraded = peer.key_exchange(auth=False, duration=QUIET * 2, retries=0)
    if downgraded is not None:
        # an answer alone is not the failure; the session must not move to the anonymous key
        req = peer.ping_packet()
        peer.send_packet(req)
        assert not answered(peer, req.src_port, req.seq), "the target keyed an anonymous PILK after PILA"
    peer.keys = old
    peer.alive()


@pytest.mark.req("SEC-028")
def test_low_order_x25519_key_is_refused(peer: Peer) -> None:
    frame = b"PILK" + peer.node_id.to_bytes(4, "big") + bytes(32)
    peer.send_raw(frame)
    got = peer.receive(QUIET, lambda _i, d: d[:4] in (b"PILK", b"PILA"))
    assert not [d for d in got if d[:4] in (b"PILK", b"PILA")], "the target answered an all-zero X25519 key"
    assert peer.key_exchange() is not None, "a good PILK after the low-order one was not answered"


@pytest.mark.req("TUN-016", "NONCE-005")
def test_repeated_exchange_with_a_new_key(peer: Peer) -> None:
    keyed_with_ping(peer)
    before = {i.prefix for i in peer.inbound}
    n = len(peer.inbound)
    second = peer.key_exchange()
    assert second is not None, "a second PILK with a fresh key (re-key) was not answered"
    peer.old_keys.clear()  # from now on only the new key counts
    peer.alive()
    after = {i.prefix for i in peer.inbound[n:]}
    assert after, "no frame from the target under the new key"
    assert after.isdisjoint(before), "the target kept its nonce prefix across a key exchange (NONCE-005)"


@pytest.mark.req("TUN-016")
def test_repeated_identical_offer_keeps_the_session(peer: Peer) -> None:
    priv = peer.new_private()
    assert peer.key_exchange(private=priv) is not None
    peer.require_ping()
    keys = peer.keys
    peer.send_raw(peer.kex_frame(priv, auth=False))  # the same offer again (as if our first answer was lost)
    peer.receive(QUIET)
    peer.keys = keys
    peer.alive()


@pytest.mark.req("TUN-012", "SEC-006")
def test_frame_under_a_key_never_exchanged_is_dropped(peer: Peer) -> None:
    keyed_with_ping(peer)
    req = peer.ping_packet()
    peer.send_packet(req, aead=AESGCM(peer.rng.randbytes(32)))
    assert not answered(peer, req.src_port, req.seq), "a frame sealed under a random key was answered"
    peer.alive()
