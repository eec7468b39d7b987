"""Vector generation states its verdicts: a broken check makes generation FAIL (issue 13).

Each test turns one security or protocol check off in the implementation (monkeypatch) and asserts that
regenerating the affected vector file raises :class:`ExpectationMismatch` instead of writing a file that
agrees with the bug -- and that ``generate_all`` then writes nothing at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pilot_proto.errors import ErrorCode
from pilot_proto.stream.config import StreamConfig
from pilot_proto.tunnel import aead, identity, replay
from pilot_proto.vectors import ExpectationMismatch, all_suites, generate_all, generate_checked

pytestmark = pytest.mark.req("TUN-019", "SEC-027", "CONS-015")


def _generate(filename: str) -> None:
    generate_checked(all_suites()[filename])


def _no_signature_check(monkeypatch: pytest.MonkeyPatch) -> None:
    class _AcceptAll:
        @staticmethod
        def from_public_bytes(_key: bytes) -> Any:
            return _AcceptAll()

        def verify(self, _sig: bytes, _msg: bytes) -> None:
            return None

    monkeypatch.setattr(identity, "Ed25519PublicKey", _AcceptAll)


def _no_sender_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    def verify(self: aead.PilsOpener, nonce: bytes, ciphertext: bytes) -> bytes:
        try:
            return self._decrypt(nonce, ciphertext, self._aad)
        except aead.InvalidTag:
            raise aead._auth_failed() from None

    monkeypatch.setattr(aead.PilsOpener, "_verify", verify)


def _too_old_off_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    def check(self: replay.ReplayWindow, counter: int) -> ErrorCode | None:
        if counter > self.top:
            return None
        diff = self.top - counter
        if diff > self.size:  # the bug: '>' where the draft's window needs '>='
            return ErrorCode.TOO_OLD
        return ErrorCode.REPLAY if (self.bits >> diff) & 1 else None

    monkeypatch.setattr(replay.ReplayWindow, "check", check)


def _fin_always_fin_ack(monkeypatch: pytest.MonkeyPatch) -> None:
    original = StreamConfig.for_profile.__func__  # type: ignore[attr-defined]

    def for_profile(cls: type[StreamConfig], *args: Any, **kwargs: Any) -> StreamConfig:
        return dataclasses.replace(original(cls, *args, **kwargs), fin_has_ack=True)

    monkeypatch.setattr(StreamConfig, "for_profile", classmethod(for_profile))


BREAKS: list[tuple[str, Callable[[pytest.MonkeyPatch], None], str]] = [
    ("PILA signature not checked", _no_signature_check, "tunnel_kex_test.json"),
    ("PILS inner source not bound to the sender", _no_sender_binding, "tunnel_pils_test.json"),
    ("replay window too-old bound off by one", _too_old_off_by_one, "tunnel_pils_test.json"),
    ("FIN always sent as FIN|ACK", _fin_always_fin_ack, "stream-scenarios.json"),
]


@pytest.mark.parametrize(("what", "breaks", "filename"), BREAKS, ids=[b[0] for b in BREAKS])
def test_a_broken_check_makes_generation_fail(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    what: str,
    breaks: Callable[[pytest.MonkeyPatch], None],
    filename: str,
) -> None:
    _generate(filename)  # sane implementation: generates
    breaks(monkeypatch)
    with pytest.raises(ExpectationMismatch):
        _generate(filename)
    with pytest.raises(ExpectationMismatch):
        generate_all(tmp_path / "out")
    assert not (tmp_path / "out").exists(), "generate_all wrote files although a suite failed"


def test_pila_signature_break_names_the_case(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_signature_check(monkeypatch)
    with pytest.raises(ExpectationMismatch, match=r"signature bit flipped.*bad_signature.*accepts"):
        _generate("tunnel_kex_test.json")


def test_every_suite_generates_and_verifies() -> None:
    for suite in all_suites().values():
        generate_checked(suite)


def test_cli_generate_against_a_broken_check_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``pilot-proto vectors generate`` on a broken implementation: one error line, exit 1, no file, no traceback."""
    from pilot_proto.cli import main

    _no_signature_check(monkeypatch)
    assert main(["vectors", "generate", "--out", str(tmp_path / "v")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pilot-proto vectors generate: error:") and "no file written" in err[0]
    assert not (tmp_path / "v").exists()
