"""Security review of PILS sealing/opening and its C accelerator (draft 7.2, 11.1, 19.9).

Two defects found in review, each pinned here on both paths (``accelerated=True`` when the extension is built,
``accelerated=False`` always):

* A copied :class:`PilsSealer` carries the same key, prefix and counter as the original, so the two seal
  different packets under the same (key, nonce): AES-GCM nonce reuse (NONCE-004).  A copied
  :class:`PilsOpener` forks the replay state, so a frame accepted by one is accepted again by the other
  (CONS-016).  Both now refuse ``copy``, ``deepcopy`` and ``pickle``.
* The C ``seal`` took any C-contiguous buffer byte-wise (``array('i')``, a memoryview cast to ``'d'``, ctypes
  arrays) where the pure path (``AESGCM.encrypt``) raises ``TypeError``; now both raise it.

And one guard: the built extension must come from the ``_pilsc.c`` beside it, else every C test here and in
``test_tunnel_pils_accel.py`` tests old code (an in-place build not redone after a merge).
"""

from __future__ import annotations

import array
import copy
import ctypes
import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from pilot_proto.tunnel import aead
from pilot_proto.tunnel.aead import PilsOpener, PilsSealer, SessionCipher
from pilot_proto.wire.address import Addr
from pilot_proto.wire.header import Packet, PacketProtocol, encode_packet

KEY = bytes(range(32))
SENDER = 5
PREFIX = b"\x0a\x0b\x0c\x0d"
PATHS = [pytest.param(False, id="pure")] + ([pytest.param(True, id="c")] if aead.ACCELERATOR_AVAILABLE else [])
COPIES: dict[str, Callable[[object], object]] = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda o: pickle.loads(pickle.dumps(o)),
}


def _pkt(seq: int = 0, payload: bytes = b"x") -> bytes:
    return encode_packet(
        Packet(0, PacketProtocol.DATAGRAM, Addr(0, SENDER), Addr(0, 9), 1, 2, seq=seq, payload=payload)
    )


@pytest.mark.req("NONCE-004")
@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("accelerated", PATHS)
def test_a_sealer_cannot_be_copied_into_a_second_nonce_stream(accelerated: bool, how: str) -> None:
    sealer = PilsSealer(SessionCipher(bytearray(KEY), accelerated=accelerated), SENDER, PREFIX)
    sealer.seal(_pkt(0))
    with pytest.raises(TypeError, match="nonce"):
        COPIES[how](sealer)
    # the original is untouched and its nonces still only move forward
    assert sealer.counter == 1
    assert sealer.seal(_pkt(1))[12:20] == (1).to_bytes(8, "big")


@pytest.mark.req("CONS-016")
@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("accelerated", PATHS)
def test_an_opener_cannot_be_copied_into_a_second_replay_window(accelerated: bool, how: str) -> None:
    sealer = PilsSealer(SessionCipher(bytearray(KEY), accelerated=accelerated), SENDER, PREFIX)
    opener = PilsOpener(SessionCipher(bytearray(KEY), accelerated=accelerated), SENDER)
    frame = sealer.seal(_pkt(0))
    assert opener.open_frame(frame) == _pkt(0)
    before = opener.snapshot()
    with pytest.raises(TypeError, match="replay"):
        COPIES[how](opener)
    assert opener.snapshot() == before


def _odd_buffers() -> list[object]:
    raw = bytes(range(24))
    return [
        array.array("i", range(6)),
        array.array("b", raw),
        memoryview(raw).cast("i"),
        memoryview(raw).cast("d"),
        memoryview(raw).cast("b"),
        memoryview(raw).cast("i", [2, 3]),
        (ctypes.c_ubyte * 24)(*raw),
        (ctypes.c_char * 24).from_buffer_copy(raw),
    ]


def _byte_buffers() -> list[object]:
    raw = bytes(range(24))
    return [raw, bytearray(raw), memoryview(raw), memoryview(raw).cast("c"), memoryview(raw).cast("B", [4, 6])]


@pytest.mark.req("TUN-003")
@pytest.mark.parametrize("accelerated", PATHS)
def test_seal_takes_byte_buffers_and_refuses_typed_ones_on_both_paths(accelerated: bool) -> None:
    """Only buffers of bytes are packets; a typed buffer is the caller's mistake on either path."""
    sealer = PilsSealer(SessionCipher(bytearray(KEY), accelerated=accelerated), SENDER, PREFIX)
    pure = PilsSealer(SessionCipher(bytearray(KEY), accelerated=False), SENDER, PREFIX)
    for obj in _byte_buffers():
        assert sealer.seal(obj) == pure.seal(obj), obj  # type: ignore[arg-type]
    for obj in _odd_buffers():
        with pytest.raises(TypeError):
            sealer.seal(obj)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            pure.seal(obj)  # type: ignore[arg-type]
        assert sealer.counter == pure.counter  # a refused packet uses up its counter on both paths alike


@pytest.mark.skipif(not aead.ACCELERATOR_AVAILABLE, reason="the C accelerator _pilsc is not built")
def test_the_built_accelerator_is_built_from_the_source_beside_it() -> None:
    source = Path(aead.__file__).with_name("_pilsc.c")
    built = getattr(aead._pilsc, "SOURCE_SHA256", None)
    assert built is not None, "_pilsc predates its source hash: stale build, rerun `pip install -e .`"
    if not built or not source.exists():
        pytest.skip("built without setup.py (no source hash) or installed without its C source")
    assert built == hashlib.sha256(source.read_bytes()).hexdigest(), (
        f"{aead._pilsc.__file__} was built from another _pilsc.c: rerun `pip install -e .` "
        "(or `python setup.py build_ext --inplace`)"
    )
