"""Draft 10.6, 10.7: the trust gate of a private node and the port-444 trust handshake.

A private node drops new connections from nodes it does not trust (silently: no RST, Go and our node), while
Control pings still work.  The harness asks for trust on port 444 with a signed ``handshake_request`` (one JSON
object, Go's field set); a node that approves answers by dialling the harness's port 444 with a
``handshake_accept``, and from then on admits its streams.  Every test first checks that the target gates at all:
a public target (the built-in node's default, ``--builtin-trust=open``) is ``unsupported`` here, and the
built-in node started with ``--builtin-trust=gated`` must gate.  Its operator approves requests from the suite's
trusted identities at once and leaves any other request pending (so the other tests' peers ask first, see
conformance/gate.py; the peers here are strangers, which do not); another target's operator has to approve
within :data:`APPROVE` seconds (else ``unsupported``).  A target that also drops SYNs to port 444 from untrusted
nodes (Go does, erratum E-DMN-1) can only be asked through the registry relay, which no tunnel endpoint shows."""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pilot_proto.conformance.harness import ACK, FIN, RST, SYN, Peer
from pilot_proto.conformance.suite._common import QUIET
from pilot_proto.conformance.suite._services import accept, collect, release
from pilot_proto.conformance.verdicts import Inconclusive, Unsupported
from pilot_proto.tunnel.identity import Identity
from pilot_proto.wire.trust import FIELDS, TrustMessage, TrustType, encode_trust, handshake_signing_string

TRUST, ECHO = 444, 7
APPROVE = 2.0  # seconds for the target to answer an approvable request with handshake_accept (x --timeout-scale)
REFUSED = 1.0  # seconds without an accept that count as "not approved" (x --timeout-scale)
_GATED_444 = (
    "the target drops SYNs to port 444 from untrusted nodes too (Go does, erratum E-DMN-1): trust can only be asked "
    "through the registry relay, which a tunnel endpoint does not show"
)


def _syn_answer(peer: Peer, port: int = ECHO) -> str:
    """'open' (SYN-ACK; reset again at once), 'rst' or 'dropped' for one SYN from ``peer``."""
    s = peer.stream(port)
    s.syn()
    ans = s.reply(QUIET * 2, lambda p: bool(p.flags & (SYN | RST)))
    if ans is None:
        return "dropped"
    if ans.flags & RST:
        return "rst"
    release(s)
    return "open"


def _require_gate(peer: Peer) -> None:
    """Unsupported unless the target drops an untrusted peer's SYN to port 7 (its trust gate)."""
    peer.require_ping()
    state = _syn_answer(peer)
    if state == "rst":
        raise Inconclusive("port 7 answered RST (nothing listens), so the trust gate cannot be told from a closed port")
    if state == "open":
        assert not peer.target.gated, (
            "the built-in node runs gated (--builtin-trust=gated) but admitted an untrusted SYN"
        )
        raise Unsupported("the target is public (it admits streams from untrusted nodes), so its trust gate cannot be "
                          "observed; run it private (built-in node: --builtin-trust=gated)")  # fmt: skip
    assert peer.target.gated is not False, (
        "the built-in node runs open (public) but dropped a SYN from an untrusted node"
    )
    peer.alive()  # the drop is the gate, not a dead tunnel


def _message(peer: Peer, mtype: TrustType, *, age: float = 0.0, text: str = "pilot conformance suite") -> bytes:
    ident = peer.identity
    assert ident is not None
    target = peer.target_addr().node
    sig = ident.sign(handshake_signing_string(peer.node_id, target))
    ts = int(time.time() - age)
    return encode_trust(TrustMessage(mtype, peer.node_id, ident.public_bytes, text, sig, "", ts))


def _send_trust(peer: Peer, message: bytes) -> None:
    """One trust message on a fresh connection to port 444, then FIN (as Go's sender does)."""
    s = peer.stream(TRUST)
    s.syn()
    ans = s.reply(1.0, lambda p: bool(p.flags & (SYN | RST)))
    if ans is None:
        raise Unsupported(_GATED_444)
    if ans.flags & RST:
        raise Unsupported("nothing listens on port 444 (the target answered RST): it runs no trust handshake")
    s.synack, s.irs, s.rcv_nxt = ans, ans.seq, (ans.seq + 1) & 0xFFFFFFFF
    s.ack()
    s.send(message)
    s.send(b"", FIN | ACK)
    _, end = collect(s, QUIET)
    if end == "open":
        release(s)


def _accept_message(peer: Peer, since: int, duration: float) -> dict[str, Any] | None:
    """The trust message the target sends by dialling our port 444 within ``duration`` s, decoded, or None."""
    s = accept(peer, TRUST, duration, since)
    if s is None:
        return None
    data, end = collect(s, 2.0)
    if end == "fin":
        s.send(b"", FIN | ACK)
    else:
        release(s)
    try:
        doc = json.loads(data)
    except ValueError:
        pytest.fail(f"the target's port-444 message is not JSON: {data[:120]!r}")
    assert isinstance(doc, dict), f"the target's port-444 message is not one JSON object: {data[:120]!r}"
    return doc


def _request_trust(peer: Peer, *, age: float = 0.0) -> dict[str, Any] | None:
    since = len(peer.inbound)
    _send_trust(peer, _message(peer, TrustType.REQUEST, age=age))
    return _accept_message(peer, since, APPROVE if age == 0.0 else REFUSED)


def _trusted_peer(make_peer: Any) -> Peer:
    """A peer with an identity the target can verify (registered with --registry), once the target is known to gate
    (an anonymous peer checks that first, so a public target costs no registration)."""
    stranger: Peer = make_peer(stranger=True)
    stranger.keyed()
    _require_gate(stranger)
    peer: Peer = make_peer(trusted=True, stranger=True)
    peer.keyed(auth=True)
    _require_gate(peer)
    return peer


def _become_trusted(peer: Peer) -> dict[str, Any]:
    doc = _request_trust(peer)
    if doc is None:
        assert not peer.target.gated, "the built-in node's operator approves the suite's identities, yet no accept came"
        raise Unsupported(f"no handshake_accept within {APPROVE} s: the request waits for the target's operator "
                          f"(approve node {peer.node_id} there to run this test)")  # fmt: skip
    return doc


@pytest.mark.req("SEC-015")
def test_private_node_drops_an_untrusted_syn(make_peer: Any) -> None:
    """A node with no trust relationship gets no answer to a SYN (no SYN-ACK, no RST); pings still work."""
    peer: Peer = make_peer(stranger=True)
    peer.keyed()
    _require_gate(peer)


@pytest.mark.req("SEC-015", "SVC-061", "SVC-062", "SVC-063")
def test_trust_handshake_admits_the_peer(make_peer: Any) -> None:
    """After a signed handshake_request the target answers with a handshake_accept -- one JSON object with Go's
    seven fields, standard base64 of a 32-byte key and a 64-byte signature -- and then admits our streams."""
    peer = _trusted_peer(make_peer)
    doc = _become_trusted(peer)
    assert set(doc) == set(FIELDS), f"port-444 message fields {sorted(doc)}; expected {sorted(FIELDS)}"
    assert doc["type"] == TrustType.ACCEPT.value, f"the answer to a request is {doc['type']!r}"
    assert doc["node_id"] == peer.target_addr().node, f"the accept names node {doc['node_id']}, not the target"
    raw = {}
    for name, size in (("public_key", 32), ("signature", 64)):
        try:
            raw[name] = base64.b64decode(doc[name], validate=True)
        except (binascii.Error, ValueError, TypeError):
            pytest.fail(f"{name} is not standard base64: {doc[name]!r}")
        assert len(raw[name]) in (0, size), f"{name} decodes to {len(raw[name])} bytes (0 or {size})"
    if raw["public_key"] and peer.target.ed25519 is not None:
        assert raw["public_key"] == peer.target.ed25519, "the accept carries another Ed25519 key than the target's"
    if raw["public_key"] and raw["signature"]:
        try:
            Ed25519PublicKey.from_public_bytes(raw["public_key"]).verify(
                raw["signature"], handshake_signing_string(doc["node_id"], peer.node_id)
            )
        except InvalidSignature:
            pytest.fail("the accept's signature does not verify over 'handshake:<target>:<us>'")
    assert _syn_answer(peer) == "open", "after its handshake_accept the target still drops our SYN"


@pytest.mark.req("SEC-019")
def test_revocation_closes_the_gate_again(make_peer: Any) -> None:
    """Draft 10.6: revoking trust stops communication at once -- after our handshake_revoke a new SYN is dropped.
    (The other half of SEC-019, trust surviving a restart, cannot be seen from here.)"""
    peer = _trusted_peer(make_peer)
    _become_trusted(peer)
    assert _syn_answer(peer) == "open", "after its handshake_accept the target still drops our SYN"
    _send_trust(peer, _message(peer, TrustType.REVOKE))
    assert _syn_answer(peer) == "dropped", "after our handshake_revoke the target still admits our SYN"


@pytest.mark.req("SEC-018")
def test_request_from_a_stranger_waits_for_the_operator(make_peer: Any) -> None:
    """A signed request from a node that shares no network with the target and that it never asked is not approved
    by itself: no accept comes and the gate stays closed."""
    peer: Peer = make_peer(stranger=True)
    peer.identity = Identity.from_seed(peer.rng.randbytes(32))
    peer.keyed()
    _require_gate(peer)
    since = len(peer.inbound)
    _send_trust(peer, _message(peer, TrustType.REQUEST))
    doc = _accept_message(peer, since, REFUSED)
    assert doc is None, f"a stranger's request was answered at once: {doc}"
    assert _syn_answer(peer) == "dropped", "a stranger's request alone opened the gate"


@pytest.mark.req("SVC-066")
def test_stale_or_future_trust_request_is_refused(make_peer: Any) -> None:
    """A request 10 min old or 2 min in the future is refused (Go: > 5 min old or > 30 s ahead), while the same
    request with the current time is approved (so the refusals are the timestamp's)."""
    peer = _trusted_peer(make_peer)
    for age, what in ((600.0, "10 minutes old"), (-120.0, "2 minutes in the future")):
        doc = _request_trust(peer, age=age)
        assert doc is None, f"a trust request {what} was accepted: {doc}"
        assert _syn_answer(peer) == "dropped", f"a trust request {what} opened the gate"
    _become_trusted(peer)
