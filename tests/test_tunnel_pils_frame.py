"""``PilsOpener.open_frame``: the whole-datagram way in runs every check ``open`` runs, plus the frame's own.

The property tests drive two openers of one key side by side -- one through ``decode_frame`` + ``open``
(the older call), one through ``open_frame`` -- with the same datagrams, and require the same plaintext
bytes or the same error (code and field) and the same replay state after every datagram (draft 7.2, 10.2,
19.9).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import DecodeError, ErrorCode, PilotError, RemoteProtocolError
from pilot_proto.tunnel.aead import PilsOpener, PilsSealer, SessionCipher
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import EncryptedFrame, decode_frame, encode_frame
from pilot_proto.wire.header import Packet, PacketProtocol, encode_packet

KEY = bytes(range(32))
SENDER = 5
PREFIX = b"\x0a\x0b\x0c\x0d"
FAST = settings(max_examples=80, derandomize=True, deadline=None)


def _pkt(src: int = SENDER, payload: bytes = b"x", seq: int = 0) -> bytes:
    return encode_packet(Packet(0, PacketProtocol.DATAGRAM, Addr(0, src), Addr(0, 9), 1, 2, seq=seq, payload=payload))


def _sealer(prefix: bytes = PREFIX, start: int = 0, sender: int = SENDER, key: bytes = KEY) -> PilsSealer:
    return PilsSealer(SessionCipher(bytearray(key)), sender, prefix, counter_start=start)


def _opener(**kw: int) -> PilsOpener:
    return PilsOpener(SessionCipher(bytearray(KEY)), SENDER, **kw)


def _outcome_old(opener: PilsOpener, frame: bytes) -> tuple[str, object]:
    """The older receive path: only PILS goes to an opener; decode it, check its sender is ours, then ``open``."""
    if len(frame) >= 4 and frame[:4] != b"PILS":
        return ("error", ErrorCode.BAD_MAGIC)
    try:
        f = decode_frame(frame)
        assert isinstance(f, EncryptedFrame)
        if f.sender != opener.sender:
            return ("error", ErrorCode.NO_SESSION_KEY)
        return ("ok", opener.open(f.nonce, f.ciphertext))
    except PilotError as exc:
        return ("error", exc.code)


def _outcome_new(opener: PilsOpener, frame: bytes) -> tuple[str, object]:
    try:
        return ("ok", opener.open_frame(frame))
    except PilotError as exc:
        return ("error", exc.code)


def _reject(opener: PilsOpener, frame: bytes) -> RemoteProtocolError:
    """``open_frame`` must refuse ``frame`` and leave the opener's state exactly as it was."""
    before = opener.snapshot()
    with pytest.raises(RemoteProtocolError) as info:
        opener.open_frame(frame)
    assert opener.snapshot() == before
    return info.value


# -- the same answers as the older path ---------------------------------------------------------------------------


@st.composite
def _traffic(draw: st.DrawFn) -> list[bytes]:
    """Frames of two prefixes, delivered partly in order, partly shuffled with duplicates, some tampered, some
    cut, re-labelled or with another magic, some with an inner source that is not the sender."""
    sealers = [_sealer(), _sealer(b"\x01\x02\x03\x04", start=draw(st.integers(0, 3)))]
    made: list[bytes] = []
    for _ in range(draw(st.integers(1, 14))):
        s = sealers[draw(st.integers(0, 1))]
        payload = draw(st.binary(max_size=40))
        src = draw(st.sampled_from([SENDER, SENDER, SENDER, 6]))
        made.append(s.seal(_pkt(src, payload)))
    out: list[bytes] = []
    nxt = 0
    for _ in range(draw(st.integers(1, 24))):
        if draw(st.booleans()):  # mostly the next frame in sealing order: the in-order fast path
            frame, nxt = made[nxt % len(made)], nxt + 1
        else:
            frame = made[draw(st.integers(0, len(made) - 1))]
        how = draw(st.sampled_from(["as-is", "as-is", "as-is", "flip", "cut", "sender", "magic", "counter"]))
        if how == "flip":
            i = draw(st.integers(8, len(frame) - 1))
            frame = frame[:i] + bytes([frame[i] ^ 1]) + frame[i + 1 :]
        elif how == "cut":
            frame = frame[: draw(st.integers(0, 35))]
        elif how == "sender":
            frame = frame[:4] + (SENDER + 1).to_bytes(4, "big") + frame[8:]
        elif how == "magic":
            frame = draw(st.sampled_from([b"PILT", b"PILK", b"XXXX"])) + frame[4:]
        elif how == "counter":
            frame = frame[:12] + draw(st.integers(0, 600)).to_bytes(8, "big") + frame[20:]
        out.append(frame)
    return out


@pytest.mark.req("TUN-003", "SEC-006", "SEC-027", "CONS-013", "CONS-015", "CONS-016", "CONS-019")
@FAST
@given(_traffic())
def test_open_frame_matches_decode_then_open(frames: list[bytes]) -> None:
    old, new = _opener(max_prefixes=1), _opener(max_prefixes=1)  # one window: the second prefix evicts/retires
    for frame in frames:
        want, got = _outcome_old(old, frame), _outcome_new(new, frame)
        assert got == want, frame.hex()
        assert new.snapshot() == old.snapshot()
    for frame in frames:  # everything again: now all replays, still answered alike
        assert _outcome_new(new, frame) == _outcome_old(old, frame)


@pytest.mark.req("TUN-003", "NONCE-001", "SEC-006")
@FAST
@given(st.integers(0, 1 << 40), st.lists(st.binary(max_size=300), min_size=1, max_size=6))
def test_frames_are_the_draft_layout_and_open_frame_returns_the_packet(start: int, payloads: list[bytes]) -> None:
    """The sealer's bytes are exactly magic | sender | prefix | counter | AES-GCM(AAD = sender), as an
    independent encoder builds them, and ``open_frame`` and ``open`` give back the same packet bytes."""
    sealer, by_frame, by_parts = _sealer(start=start), _opener(), _opener()
    aad = SENDER.to_bytes(4, "big")
    for i, payload in enumerate(payloads):
        pkt = _pkt(payload=payload)
        frame = sealer.seal(pkt)
        nonce = PREFIX + (start + i).to_bytes(8, "big")
        assert frame == encode_frame(EncryptedFrame(SENDER, nonce, AESGCM(KEY).encrypt(nonce, pkt, aad)))
        assert by_frame.open_frame(frame) == pkt == by_parts.open(frame[8:20], frame[20:])
    assert by_frame.snapshot() == by_parts.snapshot()


# -- each rejection through the new path --------------------------------------------------------------------------


@pytest.mark.req("SEC-006", "CONS-019")
@pytest.mark.parametrize("where", ["tag", "ciphertext", "prefix", "counter"])
def test_tampered_frame_is_refused_and_the_next_real_one_opens(where: str) -> None:
    sealer, opener = _sealer(), _opener()
    assert opener.open_frame(sealer.seal(_pkt())) == _pkt()
    frame = bytearray(sealer.seal(_pkt(seq=1)))
    index = {"tag": len(frame) - 1, "ciphertext": 25, "prefix": 8, "counter": 19}[where]
    frame[index] ^= 0x40
    assert _reject(opener, bytes(frame)).code is ErrorCode.AUTH_FAILED
    assert opener.open_frame(bytes(frame[:index]) + bytes([frame[index] ^ 0x40]) + bytes(frame[index + 1 :]))


@pytest.mark.req("CONS-013", "CONS-016")
def test_replays_are_refused_in_order_and_out_of_order() -> None:
    sealer, opener = _sealer(), _opener()
    frames = [sealer.seal(_pkt(seq=i)) for i in range(4)]
    for f in (frames[0], frames[2]):
        opener.open_frame(f)
    for f in (frames[0], frames[2]):
        err = _reject(opener, f)
        assert err.code is ErrorCode.REPLAY and err.requirement == "CONS-016"
    opener.open_frame(frames[1])  # the gap fills once
    assert _reject(opener, frames[1]).code is ErrorCode.REPLAY
    opener.open_frame(frames[3])  # the in-order fast path after an out-of-order commit
    assert _reject(opener, frames[3]).code is ErrorCode.REPLAY


@pytest.mark.req("CONS-015")
def test_a_counter_256_behind_is_too_old() -> None:
    opener = _opener()
    old = _sealer(start=44).seal(_pkt())
    opener.open_frame(_sealer(start=300).seal(_pkt()))
    err = _reject(opener, old)
    assert err.code is ErrorCode.TOO_OLD and err.requirement == "CONS-015"
    assert opener.open_frame(_sealer(start=45).seal(_pkt())) == _pkt()  # the oldest slot still in the window


@pytest.mark.req("SEC-027")
def test_inner_source_must_be_the_sender_on_both_fast_and_checked_paths() -> None:
    sealer, opener = _sealer(), _opener()
    err = _reject(opener, sealer.seal(_pkt(src=6)))  # first frame: the checked path (new prefix)
    assert err.code is ErrorCode.SENDER_MISMATCH and err.requirement == "SEC-027"
    opener.open_frame(sealer.seal(_pkt()))
    err = _reject(opener, sealer.seal(_pkt(src=6)))  # the next counter in order: the fast path
    assert err.code is ErrorCode.SENDER_MISMATCH
    assert opener.open_frame(sealer.seal(_pkt())) == _pkt()  # the refused counters were not consumed


@pytest.mark.req("TUN-012", "SEC-006")
def test_a_frame_labelled_with_another_sender_is_refused() -> None:
    """The cleartext sender must be this opener's; re-labelled, even a real frame is not opened."""
    sealer, opener = _sealer(), _opener()
    opener.open_frame(sealer.seal(_pkt()))
    frame = sealer.seal(_pkt(seq=1))  # the next in order: would take the fast path
    err = _reject(opener, frame[:4] + (6).to_bytes(4, "big") + frame[8:])
    assert err.code is ErrorCode.NO_SESSION_KEY and err.field == "pils.sender"
    other = _sealer(start=1, sender=6).seal(_pkt(src=6))  # node 6's own frame under the same key: AAD differs too
    assert _reject(opener, other[:4] + SENDER.to_bytes(4, "big") + other[8:]).code is ErrorCode.AUTH_FAILED
    assert opener.open_frame(frame) == _pkt(seq=1)


@pytest.mark.req("TUN-003")
def test_short_frames_and_other_magics_are_refused_like_decode_frame_refuses_them() -> None:
    sealer, opener = _sealer(), _opener()
    opener.open_frame(sealer.seal(_pkt()))
    frame = sealer.seal(_pkt(seq=1))
    for n in range(36):  # every cut of the next in-order frame, fast path included (its head matches from 20)
        err = _reject(opener, frame[:n])
        assert isinstance(err, DecodeError if n < 4 or frame[:4] == b"PILS" else RemoteProtocolError)
        assert err.code is ErrorCode.TRUNCATED, n
    for magic in (b"PILT", b"PILK", b"PILA", b"PILP", b"pils"):
        err = _reject(opener, magic + frame[4:])
        assert err.code is ErrorCode.BAD_MAGIC and err.field == "magic"
    assert opener.open_frame(frame) == _pkt(seq=1)


@pytest.mark.req("CONS-013", "NONCE-005")
def test_new_and_retired_prefixes_through_open_frame() -> None:
    opener = _opener(max_prefixes=2)
    sealers = [_sealer(bytes([i]) * 4, start=1) for i in range(3)]
    first = sealers[0].seal(_pkt())
    opener.open_frame(first)
    for s in sealers[1:]:
        assert opener.open_frame(s.seal(_pkt())) == _pkt()  # counter 1 again under a new prefix: accepted
    assert list(opener.windows) == [b"\x01" * 4, b"\x02" * 4]
    err = _reject(opener, sealers[0].seal(_pkt()))  # prefix 0 was evicted: retired, never re-opened
    assert err.code is ErrorCode.REPLAY and err.field == "pils.nonce.prefix"


@pytest.mark.req("CONS-013", "CONS-016")
def test_open_and_open_frame_share_one_replay_state() -> None:
    sealer, opener = _sealer(), _opener()
    a, b = sealer.seal(_pkt(seq=0)), sealer.seal(_pkt(seq=1))
    opener.open(a[8:20], a[20:])
    assert _reject(opener, a).code is ErrorCode.REPLAY
    opener.open_frame(b)
    with pytest.raises(RemoteProtocolError) as info:
        opener.open(b[8:20], b[20:])
    assert info.value.code is ErrorCode.REPLAY


@pytest.mark.req("SEC-006")
def test_a_frame_under_another_key_is_refused() -> None:
    opener = _opener()
    frame = _sealer(key=bytes(32)).seal(_pkt())
    assert _reject(opener, frame).code is ErrorCode.AUTH_FAILED
    assert opener.snapshot() == ((), ())
