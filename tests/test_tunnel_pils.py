"""PILS sealing/opening, nonces and the replay window (draft 7.2, 10.2, 11, 19.6, 19.9)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from pilot_proto.tunnel.aead import PilsOpener, PilsSealer, SessionCipher
from pilot_proto.tunnel.replay import ReplayWindow
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import EncryptedFrame, decode_frame
from pilot_proto.wire.header import Packet, PacketProtocol, decode_packet, encode_packet

KEY = bytes(range(32))
FAST = settings(max_examples=60, derandomize=True, deadline=None)


def _pkt(src: int, payload: bytes = b"x", seq: int = 0) -> bytes:
    return encode_packet(Packet(0, PacketProtocol.DATAGRAM, Addr(0, src), Addr(0, 9), 1, 2, seq=seq, payload=payload))


def _pair(sender: int = 5, prefix: bytes = b"\x0a\x0b\x0c\x0d", start: int = 0) -> tuple[PilsSealer, PilsOpener]:
    return (
        PilsSealer(SessionCipher(bytearray(KEY)), sender, prefix, counter_start=start),
        PilsOpener(SessionCipher(bytearray(KEY)), sender),
    )


def _open(opener: PilsOpener, frame: bytes) -> bytes:
    f = decode_frame(frame)
    assert isinstance(f, EncryptedFrame)
    return opener.open(f.nonce, f.ciphertext)


@pytest.mark.req("TUN-003", "TUN-014", "NONCE-001", "SEC-006")
def test_frame_layout_matches_an_independent_aesgcm() -> None:
    sealer, _ = _pair()
    pkt = _pkt(5, b"hello")
    frame = sealer.seal(pkt)
    assert frame[:4] == b"PILS" and frame[4:8] == (5).to_bytes(4, "big")
    nonce = frame[8:20]
    assert nonce == b"\x0a\x0b\x0c\x0d" + (0).to_bytes(8, "big")
    assert AESGCM(KEY).decrypt(nonce, frame[20:], (5).to_bytes(4, "big")) == pkt
    assert len(frame) == 4 + 4 + 12 + len(pkt) + 16


@pytest.mark.req("NONCE-003", "NONCE-004", "CONS-010")
@pytest.mark.parametrize("start", [0, 1])
def test_counter_starts_at_profile_value_and_grows_by_one(start: int) -> None:
    sealer, _ = _pair(start=start)
    counters = [int.from_bytes(sealer.seal(_pkt(5))[12:20], "big") for _ in range(5)]
    assert counters == list(range(start, start + 5))


@pytest.mark.req("NONCE-006", "CONS-011")
def test_sealer_refuses_at_the_limit_and_warns_before() -> None:
    sealer = PilsSealer(SessionCipher(bytearray(KEY)), 5, b"abcd", counter_start=0, limit=4, rekey_margin=2)
    sealer.seal(_pkt(5))
    assert not sealer.needs_rekey
    sealer.seal(_pkt(5))
    assert sealer.needs_rekey
    sealer.seal(_pkt(5))
    sealer.seal(_pkt(5))
    assert sealer.exhausted
    with pytest.raises(LocalProtocolError) as info:
        sealer.seal(_pkt(5))
    assert info.value.code is ErrorCode.NONCE_EXHAUSTED and info.value.requirement == "NONCE-006"
    assert sealer.counter == 4  # the refused call consumed nothing


@pytest.mark.req("NONCE-006")
def test_default_limit_stops_before_2_pow_64_minus_1() -> None:
    sealer = PilsSealer(SessionCipher(bytearray(KEY)), 5, b"abcd", counter_start=(1 << 64) - 2)
    frame = sealer.seal(_pkt(5))
    assert frame[12:20] == b"\xff" * 7 + b"\xfe"
    with pytest.raises(LocalProtocolError):
        sealer.seal(_pkt(5))


@pytest.mark.req("SEC-006")
def test_wrong_aad_fails_authentication() -> None:
    sealer = PilsSealer(SessionCipher(bytearray(KEY)), 6, b"abcd")
    frame = bytearray(sealer.seal(_pkt(5)))
    frame[4:8] = (5).to_bytes(4, "big")  # re-label node 6's frame as node 5's
    _, opener = _pair(sender=5)
    with pytest.raises(RemoteProtocolError) as info:
        _open(opener, bytes(frame))
    assert info.value.code is ErrorCode.AUTH_FAILED


@pytest.mark.req("SEC-027")
def test_inner_source_must_equal_sender() -> None:
    sealer, opener = _pair(sender=5)
    with pytest.raises(RemoteProtocolError) as info:
        _open(opener, sealer.seal(_pkt(6)))
    assert info.value.code is ErrorCode.SENDER_MISMATCH
    assert opener.snapshot() == ((), ())  # and the counter was not consumed
    assert decode_packet(_open(opener, sealer.seal(_pkt(5)))).src == Addr(0, 5)


@pytest.mark.req("CONS-013", "CONS-016")
def test_replayed_frame_is_rejected() -> None:
    sealer, opener = _pair()
    frame = sealer.seal(_pkt(5))
    _open(opener, frame)
    with pytest.raises(RemoteProtocolError) as info:
        _open(opener, frame)
    assert info.value.code is ErrorCode.REPLAY


@pytest.mark.req("CONS-014", "CONS-015", "CONS-017", "CONS-018")
def test_window_edges() -> None:
    w = ReplayWindow()
    assert w.size == 256
    w.commit(300)
    assert w.check(44) is ErrorCode.TOO_OLD  # 256 behind
    assert w.check(45) is None  # oldest slot in the window
    w.commit(45)
    assert w.check(45) is ErrorCode.REPLAY
    w.commit(301)  # slide by one: 45 falls out
    assert w.check(45) is ErrorCode.TOO_OLD
    w.commit(10_000)
    assert w.snapshot() == (10_000, 1)


@pytest.mark.req("CONS-017")
def test_counter_zero_is_accepted_once() -> None:
    w = ReplayWindow()
    assert w.check(0) is None
    w.commit(0)
    assert w.check(0) is ErrorCode.REPLAY


@pytest.mark.req("CONS-013", "CONS-015", "CONS-016", "CONS-017", "CONS-018")
@FAST
@given(st.lists(st.integers(min_value=0, max_value=1200), max_size=80))
def test_window_matches_a_set_model(counters: list[int]) -> None:
    w, seen = ReplayWindow(), set()
    top = -1
    for c in counters:
        expected_ok = c not in seen and c > top - 256
        assert (w.check(c) is None) == expected_ok
        if expected_ok:
            w.commit(c)
            seen.add(c)
            top = max(top, c)


@pytest.mark.req("CONS-019", "SEC-006")
@FAST
@given(
    st.lists(st.binary(min_size=0, max_size=90), max_size=12),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 50)), max_size=12),
)
def test_forged_frames_never_change_opener_state(garbage: list[bytes], forged_counters: list[tuple[int, int]]) -> None:
    sealer, opener = _pair()
    for i in range(3):
        _open(opener, sealer.seal(_pkt(5, seq=i)))
    before = opener.snapshot()
    candidates = [b"PILS" + (5).to_bytes(4, "big") + g.ljust(12, b"\0") + bytes(16) for g in garbage]
    for counter, flip in forged_counters:
        real = bytearray(sealer.seal(_pkt(5)))
        sealer.counter -= 1  # re-use the slot for the next real frame (test only)
        real[12:20] = counter.to_bytes(8, "big")  # claim another counter: tag no longer matches
        real[-1 - flip % 16] ^= 1
        candidates.append(bytes(real))
    for cand in candidates:
        f = decode_frame(cand)
        assert isinstance(f, EncryptedFrame)
        with pytest.raises(RemoteProtocolError):
            opener.open(f.nonce, f.ciphertext)
        assert opener.snapshot() == before
    assert _open(opener, sealer.seal(_pkt(5))) == _pkt(5)  # real traffic still flows


@pytest.mark.req("CONS-019")
def test_forged_huge_counter_cannot_lock_out_real_traffic() -> None:
    """GoB records the counter before the tag check; a forged 2^64-2 would make every real frame too old."""
    sealer, opener = _pair()
    _open(opener, sealer.seal(_pkt(5)))
    forged = bytearray(sealer.seal(_pkt(5)))
    sealer.counter -= 1
    forged[12:20] = ((1 << 64) - 2).to_bytes(8, "big")
    with pytest.raises(RemoteProtocolError) as info:
        _open(opener, bytes(forged))
    assert info.value.code is ErrorCode.AUTH_FAILED
    assert _open(opener, sealer.seal(_pkt(5))) == _pkt(5)


@pytest.mark.req("CONS-013", "NONCE-005")
def test_new_prefix_gets_its_own_window_and_retired_prefixes_stay_refused() -> None:
    opener = PilsOpener(SessionCipher(bytearray(KEY)), 5, max_prefixes=2)
    sealers = [PilsSealer(SessionCipher(bytearray(KEY)), 5, bytes([i]) * 4, counter_start=1) for i in range(3)]
    first = sealers[0].seal(_pkt(5))
    _open(opener, first)
    for s in sealers[1:]:
        _open(opener, s.seal(_pkt(5)))  # counter 1 again, new prefix: accepted
    assert list(opener.windows) == [b"\x01" * 4, b"\x02" * 4]
    with pytest.raises(RemoteProtocolError) as info:
        _open(opener, sealers[0].seal(_pkt(5)))  # prefix 0 was evicted: refused, not re-opened
    assert info.value.code is ErrorCode.REPLAY


@pytest.mark.req("CONS-009", "NONCE-004")
@FAST
@given(st.integers(0, 3), st.integers(1, 40))
def test_no_nonce_repeats_within_a_sealer(start: int, n: int) -> None:
    sealer, _ = _pair(start=start)
    nonces = [sealer.seal(_pkt(5))[8:20] for _ in range(n)]
    assert len(set(nonces)) == n


@pytest.mark.req("CONS-012")
def test_only_sender_id_is_visible() -> None:
    sealer, _ = _pair(sender=0xA1B2C3D4)
    pkt = _pkt(0xA1B2C3D4, b"secret payload")
    frame = sealer.seal(pkt)
    assert frame[4:8] == bytes.fromhex("a1b2c3d4")
    assert pkt[4:34] not in frame and b"secret payload" not in frame


@pytest.mark.req("CONS-013", "CONS-015", "CONS-016", "CONS-017", "CONS-018")
@FAST
@given(
    st.lists(
        st.tuples(st.integers(min_value=-300, max_value=600), st.integers(min_value=1, max_value=300)), max_size=12
    )
)
def test_window_with_in_order_runs_matches_a_set_model(runs: list[tuple[int, int]]) -> None:
    """Runs of consecutive counters (the lazy fast path) interleaved with jumps back and forward."""
    w, seen = ReplayWindow(), set()
    top = -1
    for jump, length in runs:
        start = max(0, top + jump)
        for c in range(start, start + length):
            expected_ok = c not in seen and c > top - 256
            assert (w.check(c) is None) == expected_ok, (c, top)
            if expected_ok:
                w.commit(c)
                seen.add(c)
                top = max(top, c)
            assert w.top == top
            assert w.snapshot() == (top, sum(1 << (top - s) for s in seen if top - s < 256))
