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

    def open_(self: PilsOpener, nonce: bytes, ciphertext: bytes) -> bytes:
        try:
            return orig(self, nonce, ciphertext)
        except RemoteProtocolError as exc:
            if exc.code is ErrorCode.AUTH_FAILED:
                window = self.windows.get(nonce[:4])
                counter = int.from_bytes(nonce[4:], "big")
                if window is not None and window.check(counter) is None:
                    window.commit(counter)
            raise

    setattr(PilsOpener, "open", open_)  # noqa: B010


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
}


def apply(name: str) -> None:
    try:
        patch, _ = VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}") from None
    patch()
