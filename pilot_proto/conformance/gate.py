"""Getting past a private target's trust gate (draft 10.6, 10.7) before the tests that need its streams.

A private node silently drops new connections and datagrams from nodes it does not trust, so against it the
suite does what a real peer does: its peers ask for trust on port 444 with a signed ``handshake_request`` and
wait (bounded) for the ``handshake_accept`` the target sends by dialling back.  The trust tests themselves use
*stranger* peers (``make_peer(stranger=True)``), which skip this, so they still observe the gate.

* The built-in node (``--builtin-trust=gated``) has a scripted operator that approves the suite's trusted node
  range at once; every ordinary peer gets a fresh identity in that range and asks.  No approval is a failure.
* Any other target: whether it gates is learned once per session (a SYN to the echo port goes unanswered while
  pings work).  The suite then registers one *main* identity with ``--registry`` and asks once, waiting at most
  :data:`APPROVE_WAIT` s for the operator.  Approved: the first ordinary peer of each test becomes that node.
  Refused (or no registry): every test that needs a stream is ``unsupported`` with one message, decided once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pilot_proto.conformance.harness import ACK, FIN, RST, SYN, Peer
from pilot_proto.conformance.verdicts import Unsupported
from pilot_proto.tunnel.identity import Identity
from pilot_proto.wire.trust import TrustMessage, TrustType, encode_trust, handshake_signing_string

__all__ = ["APPROVE_WAIT", "GateState", "request_trust"]

TRUST, ECHO = 444, 7
#: Seconds a third-party target's operator gets to approve the main identity (x --timeout-scale), once a run.
APPROVE_WAIT = 10.0
#: Seconds the built-in node (which approves at once) gets to dial back its accept (x --timeout-scale).
BUILTIN_WAIT = 2.0
#: Seconds for the last segments of a closing trust connection (x --timeout-scale).
QUIET = 0.5


def request_trust(peer: Peer, wait: float, *, text: str = "pilot conformance suite") -> bool:
    """Send a signed handshake_request from ``peer`` (keyed, with an identity) on port 444 and wait up to ``wait``
    (scaled) seconds for the target to dial our port 444 with its answer; True if an answer came (approved)."""
    from pilot_proto.conformance.suite._services import accept, collect, release, wait_acked

    ident = peer.identity
    assert ident is not None
    target = peer.target_addr().node
    sig = ident.sign(handshake_signing_string(peer.node_id, target))
    now = int(time.time())
    msg = encode_trust(TrustMessage(TrustType.REQUEST, peer.node_id, ident.public_bytes, text, sig, "", now))
    since = len(peer.inbound)
    s = peer.stream(TRUST)
    s.syn()
    ans = s.reply(1.0, lambda p: bool(p.flags & (SYN | RST)))
    if ans is None or ans.flags & RST:
        return False
    s.synack, s.irs, s.rcv_nxt = ans, ans.seq, (ans.seq + 1) & 0xFFFFFFFF
    s.ack()
    s.send(msg)
    s.send(b"", FIN | ACK)
    back = accept(peer, TRUST, wait, since)
    # close both connections cleanly and wait for their last segments, so none arrives during the test itself
    _, end = collect(s, QUIET)
    if end == "open":
        release(s)
    else:
        wait_acked(s, QUIET)
    if back is None:
        return False
    _, end = collect(back, 2.0)
    if end == "fin":
        back.send(b"", FIN | ACK)
        wait_acked(back, QUIET * 2)
    else:
        release(back)
    return True


def _echo_syn_dropped(peer: Peer) -> bool:
    """True when a SYN to the echo port gets neither SYN-ACK nor RST (the gate, or a dead tunnel)."""
    from pilot_proto.conformance.suite._services import release

    s = peer.stream(ECHO)
    s.syn()
    ans = s.reply(0.8, lambda p: bool(p.flags & (SYN | RST)))
    if ans is None:
        return True
    if not ans.flags & RST:
        release(s)
    return False


@dataclass
class GateState:
    """One run's knowledge of the target's trust gate and of the suite's standing with it."""

    #: "open" (public), "gated" (private; peers ask for trust), "refused" (private and never approved), None: unknown
    mode: str | None
    #: the target is the built-in node
    builtin: bool
    #: builtin target: a fresh identity in the range its operator approves
    builtin_identity: Callable[[], tuple[int, Identity]] | None = None
    #: other targets: register an identity with --registry (None without one)
    register: Callable[[], tuple[int, Identity]] | None = None
    main: tuple[int, Identity] | None = None
    message: str = ""

    def refuse(self, node: int | None, why: str = "") -> None:
        who = f"node {node}" if node is not None else "the suite's node (give --registry so it has one)"
        self.mode = "refused"
        self.message = (f"the target is private and did not approve the suite's trust request{why}; approve {who} or "
                        "run it public")  # fmt: skip

    def assign(self, peer: Peer, others: list[Peer]) -> None:
        """When a test makes an ordinary peer: give it the identity it will ask trust for, and ask after it keys."""
        if self.mode == "open":
            return
        if self.mode == "refused":
            peer.gate_block = self.message
            return
        if self.builtin and self.builtin_identity is not None:
            peer.node_id, peer.identity = self.builtin_identity()
        elif self.main is not None:
            if any(o.node_id == self.main[0] for o in others):
                peer.gate_block = ("the target is private and this test needs a second trusted node (only the "
                                   f"suite's main node {self.main[0]} is approved); run it public")  # fmt: skip
                return
            peer.node_id, peer.identity = self.main
        peer.admission = self.admit

    def admit(self, peer: Peer) -> None:
        """After ``peer`` keyed: make sure the target admits it; a refusal blocks its streams (Unsupported)."""
        if self.builtin:
            if not request_trust(peer, BUILTIN_WAIT):
                raise AssertionError(f"the built-in node's operator approves the suite's identities, yet node "
                                     f"{peer.node_id} got no handshake_accept within {BUILTIN_WAIT} s")  # fmt: skip
            return
        if self.mode is None:
            if not _echo_syn_dropped(peer) or peer.ping() is None:
                self.mode = "open"  # answered (or a dead tunnel, which the test itself will see)
                return
            self.mode = "gated"
        if self.mode == "gated" and self.main is None:
            self._ask_once(peer)
        if self.mode == "refused":
            peer.gate_block = self.message

    def _ask_once(self, peer: Peer) -> None:
        """The one trust request of a run against a third-party private target (its operator decides)."""
        if self.register is None:
            self.refuse(None)
            return
        try:
            self.main = self.register()
        except Unsupported:
            self.refuse(None)
            return
        peer.node_id, peer.identity = self.main
        if peer.key_exchange(auth=True) is None:
            self.refuse(self.main[0], " (it did not answer a PILA key exchange from that node)")
            return
        if not request_trust(peer, APPROVE_WAIT):
            reached = any(i.packet is not None and i.packet.src_port == TRUST for i in peer.inbound)
            self.refuse(self.main[0], "" if reached else " (it drops SYNs to port 444 too, erratum E-DMN-1)")
            return
        self.mode = "gated"
