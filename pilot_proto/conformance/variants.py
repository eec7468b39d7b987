"""Deliberately broken variants of our own node, one behaviour flipped each (suite self-test only).

``python -m pilot_proto.conformance.builtin --variant NAME`` applies one of these patches to the
package's classes *in that subprocess* before it starts the node; the suite's own tests
(``tests/test_conformance_variants.py``) run the conformance suite against each variant and require at
least one failing conformance test per variant.  Never import this module into a process that does
anything else: the patches are global.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["VARIANTS", "apply"]


def _crc_ignored() -> None:
    """Bad checksum accepted: inner packets are decoded without the CRC-32 check (PKT-010)."""
    import pilot_proto.tunnel.endpoint as ep
    from pilot_proto.wire.header import decode_packet

    setattr(ep, "decode_packet", functools.partial(decode_packet, verify_checksum=False))  # noqa: B010


def _no_replay_check() -> None:
    """No replay check: every counter is accepted again (CONS-013, CONS-016)."""
    from pilot_proto.tunnel.replay import ReplayWindow

    ReplayWindow.check = lambda self, counter: None  # type: ignore[method-assign]


def _forged_advances_window() -> None:
    """A frame whose tag fails still moves the replay window (CONS-019)."""
    from pilot_proto.errors import ErrorCode, RemoteProtocolError
    from pilot_proto.tunnel.aead import PilsOpener

    orig = PilsOpener.open
    orig_frame = PilsOpener.open_frame

    def advance(self: PilsOpener, nonce: bytes) -> None:
        window = self.windows.get(nonce[:4])
        counter = int.from_bytes(nonce[4:], "big")
        if window is not None and window.check(counter) is None:
            window.commit(counter)

    def open_(self: PilsOpener, nonce: bytes, ciphertext: bytes) -> bytes:
        try:
            return orig(self, nonce, ciphertext)
        except RemoteProtocolError as exc:
            if exc.code is ErrorCode.AUTH_FAILED:
                advance(self, nonce)
            raise

    def open_frame(self: PilsOpener, frame: bytes) -> bytes:  # the whole-datagram way in: broken the same way
        try:
            return orig_frame(self, frame)
        except RemoteProtocolError as exc:
            if exc.code is ErrorCode.AUTH_FAILED:
                advance(self, frame[8:20])
            raise

    setattr(PilsOpener, "open", open_)  # noqa: B010
    setattr(PilsOpener, "open_frame", open_frame)  # noqa: B010


def _aad_unchecked() -> None:
    """The AAD is not bound on receive: a frame sealed with an empty AAD is accepted too (SEC-006)."""
    from cryptography.exceptions import InvalidTag

    from pilot_proto.tunnel.aead import PilsOpener

    orig_init = PilsOpener.__init__

    def init(self: PilsOpener, cipher: Any, sender: int, **kw: Any) -> None:
        orig_init(self, cipher, sender, **kw)
        strict = self._decrypt

        def lenient(nonce: Any, data: Any, associated_data: Any) -> bytes:
            try:
                return strict(nonce, data, associated_data)
            except InvalidTag:
                return strict(nonce, data, b"")

        self._decrypt = lenient

    PilsOpener.__init__ = init  # type: ignore[method-assign]


def _no_source_check() -> None:
    """The inner packet's source node is not checked against the PILS sender (SEC-027)."""
    from pilot_proto.tunnel.aead import PilsOpener

    def verify(self: PilsOpener, nonce: bytes, ciphertext: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        from pilot_proto.tunnel.aead import _auth_failed

        try:
            return self._decrypt(nonce, ciphertext, self._aad)
        except InvalidTag:
            raise _auth_failed() from None

    # the fast path of open() calls _verify() only to raise on a source mismatch; this one never raises for that
    PilsOpener._verify = verify  # type: ignore[method-assign]


def _no_rst() -> None:
    """No RST is ever sent (closed ports, unsupported versions, limits) (SES-131, VER-005)."""
    from pilot_proto.stream.endpoint import StreamEndpoint

    StreamEndpoint._reply_rst = lambda self, pkt: None  # type: ignore[method-assign]


def _zero_window_ignored() -> None:
    """A zero advertised window is taken as 'no limit' (SES-082), the go-interop reading applied to draft."""
    _override_stream(zero_window_means_unlimited=True)


def _slow_rto() -> None:
    """Wrong RTO: the minimum retransmission timeout is 6 s instead of 200 ms (SES-043, SES-044)."""
    _override_stream(rto_min=6.0, rto_initial=6.0)


def _no_nagle() -> None:
    """Small writes always go out at once, even with data unacknowledged (SES-090)."""
    _override_stream(nodelay=True)


def _dest_unchecked() -> None:
    """Packets addressed to another node are processed as if addressed to us (PKT-025)."""
    from pilot_proto.stream.endpoint import StreamEndpoint

    orig = StreamEndpoint.receive_packet

    def receive(self: StreamEndpoint, packet: Any, now: float) -> None:
        orig(self, packet._replace(dst=self.local_addr), now)

    StreamEndpoint.receive_packet = receive  # type: ignore[method-assign]


def _fin_not_reacked() -> None:
    """A retransmitted FIN from the peer is ignored, not acknowledged again (SES-020, SES-052)."""
    from pilot_proto.stream.connection import Connection

    orig = Connection._on_fin

    def on_fin(self: Connection, pkt: Any, seq: int, now: float) -> None:
        if not self._peer_fin_seen:
            orig(self, pkt, seq, now)

    Connection._on_fin = on_fin  # type: ignore[method-assign]


def _passive_time_wait() -> None:
    """The passive closer holds TIME_WAIT (and its port) after the peer's ACK of its FIN, as Go does, under draft
    rules: a SYN reusing the closed tuple is refused (SES-022, SES-121)."""
    from pilot_proto.stream._state import TRANSITIONS, Input, State

    TRANSITIONS[(State.LAST_ACK, Input.RECV_FIN_ACK)] = (State.TIME_WAIT, "start_time_wait")


def _ping_payload_truncated() -> None:
    """A Control ping is answered with only the first 16 bytes of its payload (SES-152, SVC-041)."""
    from pilot_proto.stream.endpoint import StreamEndpoint

    orig = StreamEndpoint._control

    def control(self: StreamEndpoint, pkt: Any, now: float) -> None:
        if pkt.dst_port == 0 and not pkt.flags & 0x2:
            pkt = pkt._replace(payload=pkt.payload[:16])
        orig(self, pkt, now)

    StreamEndpoint._control = control  # type: ignore[method-assign]


def _pilp_moves_path() -> None:
    """A PILP naming a known peer moves that peer's path to the PILP's source, unauthenticated (NAT-043)."""
    from pilot_proto.tunnel.endpoint import TunnelEndpoint

    orig = TunnelEndpoint._receive

    def receive(self: TunnelEndpoint, data: bytes, address: Any, now: float) -> Any:
        if data[:4] == b"PILP" and len(data) >= 8:
            known = self.peers.get(int.from_bytes(data[4:8], "big"))
            if known is not None:
                known.address = address
        return orig(self, data, address, now)

    TunnelEndpoint._receive = receive  # type: ignore[method-assign]


def _syn_limit_shared() -> None:
    """The per-source SYN bucket is one bucket for every source: one peer's flood refuses the others (SEC-025)."""
    from pilot_proto.stream.admission import SynAdmission

    orig = SynAdmission.admit

    def admit(self: SynAdmission, source: Any, now: float) -> str | None:
        return orig(self, "everyone", now)

    SynAdmission.admit = admit  # type: ignore[method-assign]


def _small_initial_window() -> None:
    """The initial congestion window is 4 segments instead of 10 (SES-070)."""
    _override_stream(initial_window_segments=4)


def _cwnd_kept_after_rto() -> None:
    """An RTO leaves cwnd at the initial window instead of 1 segment (SES-076), Go's reading applied to draft."""
    _override_stream(rto_cwnd_segments=10)


def _no_fast_retransmit() -> None:
    """Duplicate ACKs never trigger a fast retransmit; only the RTO recovers a lost segment (SES-073)."""
    _override_stream(dupack_threshold=1_000_000)


def _data_acks_counted_as_dup() -> None:
    """An ACK that carries data but repeats the cumulative ACK counts as a duplicate ACK (SES-074)."""
    from pilot_proto.stream.connection import Connection

    orig = Connection._on_ack

    def on_ack(self: Connection, pkt: Any, sack: Any, data: bytes, now: float) -> bool:
        return orig(self, pkt, sack, b"" if pkt.flags == 0x2 else data, now)

    Connection._on_ack = on_ack  # type: ignore[method-assign]


def _sack_blocks_trusted() -> None:
    """SACK blocks are applied as they come, even beyond what was sent or reversed (SES-065)."""
    import pilot_proto.stream.connection as conn
    from pilot_proto.errors import DecodeError
    from pilot_proto.wire.sack import decode_sack

    def parse(self: Any, payload: bytes) -> list[tuple[int, int]] | None:
        try:
            raw = decode_sack(payload, strict=False)
        except DecodeError:
            return None
        out = []
        for left, right in raw:  # positions relative to the ISS; only reversed blocks are dropped, nothing is checked
            ls, rs = (left - self.iss) & 0xFFFFFFFF, (right - self.iss) & 0xFFFFFFFF
            if ls < rs:
                out.append((max(ls, self.snd_una), min(rs, self.snd_nxt)))
        return [b for b in out if b[0] < b[1]]

    conn.Connection._parse_sack = parse  # type: ignore[method-assign]


def _sack_blocks_unlimited() -> None:
    """Every held range goes into the SACK of an ACK, more than 4 blocks (SES-062)."""
    import pilot_proto.stream.connection as conn
    from pilot_proto.stream.reassembly import Reassembly
    from pilot_proto.wire.sack import SACK_MAGIC

    orig = Reassembly.blocks
    Reassembly.blocks = lambda self, limit: orig(self, 64)  # type: ignore[method-assign]

    def encode(blocks: Any) -> bytes:
        body = b"".join(left.to_bytes(4, "big") + right.to_bytes(4, "big") for left, right in blocks)
        return SACK_MAGIC + bytes((len(blocks),)) + body

    setattr(conn, "encode_sack", encode)  # noqa: B010


def _trust_gate_open() -> None:
    """A private node's trust gate admits every new connection, trusted or not (SEC-015)."""
    from pilot_proto.daemon.core import Daemon

    Daemon._admit = lambda self, pkt: True  # type: ignore[method-assign]


def _trust_timestamp_unchecked() -> None:
    """Port-444 messages are accepted whatever their timestamp (SVC-066)."""
    import pilot_proto.services.trust as trust

    setattr(trust, "check_timestamp", lambda msg, now: None)  # noqa: B010


def _dataexchange_frame_overlong() -> None:
    """The data-exchange service's reply frames announce one byte more than they carry (SVC-010)."""
    import pilot_proto.services.dataexchange as dx

    orig = getattr(dx, "encode_data_frame")  # noqa: B009 (imported there from pilot_proto.wire.dataexchange)

    def encode(frame: Any) -> bytes:
        wire: bytes = orig(frame)
        return wire[:4] + (int.from_bytes(wire[4:8], "big") + 1).to_bytes(4, "big") + wire[8:]

    setattr(dx, "encode_data_frame", encode)  # noqa: B010


def _eventstream_echoes_publisher() -> None:
    """The event broker also sends a published event back to its publisher (SVC-029)."""
    from pilot_proto.services.eventstream import EventStreamService

    def on_data(self: EventStreamService, conn_id: int, conn: Any, data: bytes, now: float) -> None:
        wires: list[bytes] = []
        for target, wire in self.broker.receive(conn_id, data):
            self.write(target, wire)
            self.delivered += 1
            if not wires or wires[-1] is not wire:  # one wire object per publish, shared by its subscribers
                wires.append(wire)
        for wire in wires:
            self.write(conn_id, wire)

    EventStreamService.on_data = on_data  # type: ignore[method-assign]


def _secure_aad_unbound() -> None:
    """The port-443 server seals its records with an empty AAD instead of its role prefix (SEC-013)."""
    from pilot_proto.tunnel.secure_channel import SecureChannel

    orig = SecureChannel._establish

    class _EmptyAad:
        def __init__(self, real: Any) -> None:
            self.real = real

        def encrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
            return self.real.encrypt(nonce, data, b"")  # type: ignore[no-any-return]

        def decrypt(self, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
            return self.real.decrypt(nonce, data, aad)  # type: ignore[no-any-return]

    def establish(self: SecureChannel, peer_key: bytes) -> None:
        orig(self, peer_key)
        self._aead = _EmptyAad(self._aead)  # type: ignore[assignment]

    SecureChannel._establish = establish  # type: ignore[method-assign]


def _task_length_unbounded() -> None:
    """The task-submit reader accepts any body length and waits to buffer it (SVC-032)."""
    import pilot_proto.wire.tasksubmit as ts

    setattr(ts, "MAX_BODY", 1 << 32)  # noqa: B010


def _override_stream(**changes: Any) -> None:
    from pilot_proto.stream.config import StreamConfig

    orig = StreamConfig.for_profile.__func__  # type: ignore[attr-defined]

    def for_profile(cls: Any, /, profile: Any = "draft", **overrides: Any) -> StreamConfig:
        return orig(cls, profile, **{**overrides, **changes})  # type: ignore[no-any-return]

    setattr(StreamConfig, "for_profile", classmethod(for_profile))  # noqa: B010


#: name -> (patch, profiles it is meaningful in)
VARIANTS: dict[str, tuple[Callable[[], None], tuple[str, ...]]] = {
    "crc-ignored": (_crc_ignored, ("draft", "go-interop")),
    "no-replay-check": (_no_replay_check, ("draft", "go-interop")),
    "forged-advances-window": (_forged_advances_window, ("draft", "go-interop")),
    "aad-unchecked": (_aad_unchecked, ("draft", "go-interop")),
    "no-source-check": (_no_source_check, ("draft", "go-interop")),
    "no-rst": (_no_rst, ("draft", "go-interop")),
    "zero-window-ignored": (_zero_window_ignored, ("draft",)),
    "slow-rto": (_slow_rto, ("draft", "go-interop")),
    "dest-unchecked": (_dest_unchecked, ("draft", "go-interop")),
    "no-nagle": (_no_nagle, ("draft", "go-interop")),
    "fin-not-reacked": (_fin_not_reacked, ("draft", "go-interop")),
    "passive-time-wait": (_passive_time_wait, ("draft",)),
    "ping-payload-truncated": (_ping_payload_truncated, ("draft", "go-interop")),
    "pilp-moves-path": (_pilp_moves_path, ("draft", "go-interop")),
    "syn-limit-shared": (_syn_limit_shared, ("draft", "go-interop")),
    "small-initial-window": (_small_initial_window, ("draft", "go-interop")),
    "cwnd-kept-after-rto": (_cwnd_kept_after_rto, ("draft",)),
    "no-fast-retransmit": (_no_fast_retransmit, ("draft", "go-interop")),
    "data-acks-counted-as-dup": (_data_acks_counted_as_dup, ("draft", "go-interop")),
    "sack-blocks-trusted": (_sack_blocks_trusted, ("go-interop", "draft")),
    "sack-blocks-unlimited": (_sack_blocks_unlimited, ("draft", "go-interop")),
    "trust-gate-open": (_trust_gate_open, ("draft", "go-interop")),
    "trust-timestamp-unchecked": (_trust_timestamp_unchecked, ("go-interop", "draft")),
    "dataexchange-frame-overlong": (_dataexchange_frame_overlong, ("draft", "go-interop")),
    "eventstream-echoes-publisher": (_eventstream_echoes_publisher, ("go-interop", "draft")),
    "secure-aad-unbound": (_secure_aad_unbound, ("draft", "go-interop")),
    "task-length-unbounded": (_task_length_unbounded, ("go-interop", "draft")),
}


def apply(name: str) -> None:
    try:
        patch, _ = VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}") from None
    patch()
