"""The optional C accelerator of PILS (``pilot_proto.tunnel._pilsc``) against the pure-Python path and ``AESGCM``.

Both paths run in the same test run: ``SessionCipher(key, accelerated=False)`` is the pure path whatever was
built.  A property drives a C session and a pure session of one key side by side with the same mixed traffic
(in order, replayed, shuffled, tampered tag/ciphertext/nonce/sender/magic, cut to every length 0..36, other
key, other types) and requires byte-identical frames, the same plaintext or the same error (type, code,
field, requirement, message) and the same sealer/opener state after every step (draft 7.2, 10.2, 11, 19.9).
Frames from C are also checked against ``cryptography``'s ``AESGCM`` directly, and the C object itself
against malformed arguments, reference leaks and memory growth.  Tests that need the extension skip when
it is not built; ``test_reports_which_path_is_active`` always runs and says which path new sessions use.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import PilotError
from pilot_proto.tunnel import aead
from pilot_proto.tunnel.aead import PilsOpener, PilsSealer, SessionCipher
from pilot_proto.wire.address import Addr
from pilot_proto.wire.header import Packet, PacketProtocol, encode_packet

needs_c = pytest.mark.skipif(not aead.ACCELERATOR_AVAILABLE, reason="the C accelerator _pilsc is not built")

KEY = bytes(range(32))
OTHER_KEY = bytes(32)
SENDER = 5
PREFIXES = (b"\x0a\x0b\x0c\x0d", b"\x01\x02\x03\x04", b"\xff\xff\xff\xff")
FAST = settings(max_examples=150, derandomize=True, deadline=None)


def _pkt(src: int = SENDER, payload: bytes = b"x", seq: int = 0) -> bytes:
    return encode_packet(Packet(0, PacketProtocol.DATAGRAM, Addr(0, src), Addr(0, 9), 1, 2, seq=seq, payload=payload))


def test_reports_which_path_is_active(record_property: Callable[[str, object], None]) -> None:
    """Which path new sessions take, printed and recorded; and the switches mean what they say."""
    forced_pure = os.environ.get("PILOT_PROTO_PURE", "") not in ("", "0")
    path = "C (_pilsc, " + aead._pilsc.OPENSSL_VERSION + ")" if aead.ACCELERATED else "pure Python"
    print(f"\nPILS path: {path}; accelerator built: {aead.ACCELERATOR_AVAILABLE}; PILOT_PROTO_PURE set: {forced_pure}")
    record_property("pils_path", "c" if aead.ACCELERATED else "pure")
    want = aead.ACCELERATOR_AVAILABLE and not forced_pure
    assert want == aead.ACCELERATED
    assert (SessionCipher(bytearray(KEY)).fast is not None) == aead.ACCELERATED
    assert SessionCipher(bytearray(KEY), accelerated=False).fast is None
    if aead.ACCELERATOR_AVAILABLE:
        assert SessionCipher(bytearray(KEY), accelerated=True).fast is not None
    else:
        with pytest.raises(ValueError, match="not built"):
            SessionCipher(bytearray(KEY), accelerated=True)


# -- C and pure Python side by side ---------------------------------------------------------------------------------


class _Twin:
    """One PILS session (sealers of every prefix + an opener) on each path, under one key."""

    def __init__(self, max_prefixes: int, start: int) -> None:
        self.sides = []
        for accelerated in (True, False):
            sealers = [
                PilsSealer(SessionCipher(bytearray(KEY), accelerated=accelerated), SENDER, p, counter_start=start)
                for p in PREFIXES
            ]
            opener = PilsOpener(
                SessionCipher(bytearray(KEY), accelerated=accelerated), SENDER, max_prefixes=max_prefixes
            )
            self.sides.append((sealers, opener))
        assert self.sides[0][1]._fast_open_frame is not None and self.sides[1][1]._fast_open_frame is None

    def state(self, side: int) -> object:
        sealers, opener = self.sides[side]
        return (
            [s.counter for s in sealers],
            opener.snapshot(),
            opener._last_prefix,
            opener._last.snapshot(),
        )


def _outcome(fn: Callable[[], object]) -> tuple[object, ...]:
    try:
        return ("ok", fn())
    except PilotError as exc:
        return ("pilot", type(exc), exc.code, exc.field, exc.requirement, str(exc))
    except Exception as exc:  # misuse (wrong types, cut nonces): the same exception type on both paths
        return ("misuse", type(exc))


_ODD_INPUTS: list[object] = ["PILS", None, 7, [b"P"], memoryview(b"abcdef")[::2]]


@st.composite
def _script(draw: st.DrawFn) -> tuple[int, int, list[tuple[object, ...]]]:
    """Seal steps (prefix, inner source, payload or an odd packet object) and delivery steps (which frame, how
    tampered, through ``open_frame`` or ``open``).  Mostly one prefix, mostly delivered in sealing order right
    after sealing ("send"/"next"), so the C in-order path is taken often and its near misses are many."""
    steps: list[tuple[object, ...]] = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["seal"] + ["send"] * 8 + ["deliver", "next", "next"]))
        if kind in ("seal", "send"):
            packet: object = _pkt(draw(st.sampled_from([SENDER] * 7 + [6])), draw(st.binary(max_size=64)))
            form = draw(st.sampled_from(["bytes"] * 12 + ["bytearray", "memoryview", "short", "odd"]))
            if form == "bytearray":
                packet = bytearray(packet)  # type: ignore[arg-type]
            elif form == "memoryview":
                packet = memoryview(packet)  # type: ignore[arg-type]
            elif form == "short":  # no room for an inner source: refused as SENDER_MISMATCH on open
                packet = draw(st.binary(max_size=9))
            elif form == "odd":
                packet = draw(st.sampled_from(_ODD_INPUTS))
            steps.append(("seal", draw(st.sampled_from([0] * 12 + [1, 2])), packet))
        if kind != "seal":
            how = draw(
                st.sampled_from(
                    ["as-is"] * 16
                    + ["tag", "ciphertext", "nonce", "prefix", "sender", "magic", "cut", "key", "type", "counter"]
                )
            )
            r = draw(st.integers(0, 1 << 16))
            steps.append(
                ("last" if kind == "send" else kind, draw(st.integers(0, 1 << 16)), how, r, draw(st.booleans()))
            )
    return draw(st.integers(1, 3)), draw(st.sampled_from([0, 1, 250, (1 << 64) - 300])), steps


def _tamper(frame: bytes, how: str, r: int) -> object:
    if how == "tag":
        return frame[:-1] + bytes([frame[-1] ^ (1 << (r % 8))])
    if how == "ciphertext" and len(frame) > 36:
        i = 20 + r % (len(frame) - 36)
        return frame[:i] + bytes([frame[i] ^ 0x80]) + frame[i + 1 :]
    if how == "nonce":
        i = 8 + r % 12
        return frame[:i] + bytes([frame[i] ^ 1]) + frame[i + 1 :]
    if how == "prefix":
        return frame[:8] + PREFIXES[r % len(PREFIXES)] + frame[12:]
    if how == "counter":
        return frame[:12] + (r % 600).to_bytes(8, "big") + frame[20:]
    if how == "sender":
        return frame[:4] + (SENDER + 1 + r % 3).to_bytes(4, "big") + frame[8:]
    if how == "magic":
        return (b"PILT", b"PILK", b"XXXX", b"pils")[r % 4] + frame[4:]
    if how == "cut":
        return frame[: r % 37]
    if how == "key":  # the same frame layout sealed under another key
        nonce = frame[8:20]
        return frame[:20] + AESGCM(OTHER_KEY).encrypt(nonce, b"\x00" * (len(frame) - 36), frame[4:8])
    if how == "type":
        return (bytearray(frame), memoryview(frame), "PILS", None, 3, memoryview(frame)[::2])[r % 6]
    return frame


@pytest.mark.req("TUN-003", "SEC-006", "SEC-027", "CONS-013", "CONS-015", "CONS-016", "CONS-019", "NONCE-001")
@needs_c
@FAST
@given(_script())
def test_c_and_pure_paths_give_identical_frames_answers_and_state(
    script: tuple[int, int, list[tuple[object, ...]]],
) -> None:
    max_prefixes, start, steps = script
    twin = _Twin(max_prefixes, start)
    sealed: list[bytes] = []  # frames in sealing order (identical on both sides, checked at each seal)
    nxt = 0
    for step in steps:
        if step[0] == "seal":
            _, which, packet = step
            results = [_outcome(lambda s=side, w=which, p=packet: s[0][w].seal(p)) for side in twin.sides]  # type: ignore[misc]
            assert results[0] == results[1], step
            if results[0][0] == "ok":
                sealed.append(results[0][1])  # type: ignore[arg-type]
        elif sealed:
            kind, pick, how, r, whole = step
            if kind == "last":
                frame = sealed[-1]
            elif kind == "next":  # the oldest frame not yet taken in order
                frame, nxt = sealed[min(nxt, len(sealed) - 1)], nxt + 1
            else:
                frame = sealed[pick % len(sealed)]  # type: ignore[operator]
            data = _tamper(frame, how, r)  # type: ignore[arg-type]

            def deliver(opener: PilsOpener, data: object = data, whole: object = whole) -> object:
                if whole:
                    return opener.open_frame(data)  # type: ignore[arg-type]
                return opener.open(data[8:20], data[20:])  # type: ignore[index]

            results = [_outcome(lambda o=side[1]: deliver(o)) for side in twin.sides]  # type: ignore[misc]
            assert results[0] == results[1], (how, whole)
        assert twin.state(0) == twin.state(1), step


_HOWS = ["as-is", "tag", "ciphertext", "nonce", "prefix", "sender", "magic", "cut", "key", "type", "counter"]


@pytest.mark.req("TUN-003", "SEC-006", "SEC-027", "CONS-013", "CONS-019")
@needs_c
@pytest.mark.parametrize("whole", [True, False], ids=["open_frame", "open"])
@pytest.mark.parametrize("how", _HOWS)
def test_each_near_miss_of_the_in_order_path_is_answered_alike(how: str, whole: bool) -> None:
    """The frame right after an in-order run (the one C would open), tampered each way with several variants,
    and then the intact frame: the same answer and state on both paths, and the intact frame opens."""
    for r in range(12):
        twin = _Twin(2, r)
        frames = [
            [s[0][0].seal(_pkt(src=6 if (how == "as-is" and i == 2 and r % 2) else SENDER, seq=i)) for i in range(4)]
            for s in twin.sides
        ]
        assert frames[0] == frames[1]
        results = []
        for (_, opener), fr in zip(twin.sides, frames, strict=True):
            got = [opener.open_frame(fr[0]), opener.open_frame(fr[1])]  # the second one is in order
            data = _tamper(fr[2], how, r)
            got.append(_outcome(lambda o=opener, d=data: o.open_frame(d) if whole else o.open(d[8:20], d[20:])))  # type: ignore[misc]
            got.append(_outcome(lambda o=opener, f=fr[3]: o.open_frame(f)))  # type: ignore[misc]
            results.append(got)
        assert results[0] == results[1], (how, r)
        assert twin.state(0) == twin.state(1)


@pytest.mark.req("TUN-003", "SEC-006", "CONS-013")
@needs_c
def test_every_cut_of_an_in_order_frame_is_refused_alike() -> None:
    twin = _Twin(2, 0)
    frames = [twin.sides[0][0][0].seal(_pkt(seq=i)) for i in range(2)]
    assert frames == [twin.sides[1][0][0].seal(_pkt(seq=i)) for i in range(2)]
    for _, opener in twin.sides:
        assert opener.open_frame(frames[0]) == _pkt(seq=0)
    for n in range(len(frames[1])):  # 0..36 and on: only the whole frame opens
        c, py = (_outcome(lambda o=side[1], n=n: o.open_frame(frames[1][:n])) for side in twin.sides)  # type: ignore[misc]
        assert c == py and c[0] == "pilot", n
        assert twin.state(0) == twin.state(1)
    assert [o.open_frame(frames[1]) for _, o in twin.sides] == [_pkt(seq=1)] * 2


# -- the C object against AESGCM, an independent oracle ------------------------------------------------------------


@pytest.mark.req("TUN-003", "NONCE-001", "SEC-006")
@needs_c
@settings(max_examples=120, derandomize=True, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=4, max_size=4),
    st.sampled_from([0, 1, 255, 1 << 32, (1 << 64) - 2, (1 << 64) - 1]) | st.integers(0, (1 << 64) - 1),
    st.integers(0, (1 << 32) - 1),
    st.binary(max_size=5000),
)
def test_c_frames_are_aesgcm_frames(key: bytes, prefix: bytes, counter: int, sender: int, body: bytes) -> None:
    """``seal`` is magic | sender | prefix | counter BE | AESGCM.encrypt(nonce, packet, AAD = sender), and the
    C open gives back what ``AESGCM.decrypt`` does, exactly when the inner source is the sender."""
    assert aead._pilsc is not None
    fast, oracle = aead._pilsc.PilsKey(key), AESGCM(key)
    aad = sender.to_bytes(4, "big")
    head = b"PILS" + aad
    for packet in (body, body[:6] + aad + body[10:]):
        nonce = prefix + counter.to_bytes(8, "big")
        frame = fast.seal(head, prefix, counter, packet)
        assert frame == head + nonce + oracle.encrypt(nonce, packet, aad)
        assert oracle.decrypt(nonce, frame[20:], aad) == packet
        opens = len(packet) >= 10 and packet[6:10] == aad
        assert fast.open_frame(frame, head, prefix, counter) == (packet if opens else None)
        assert fast.open(nonce, frame[20:], aad, prefix, counter) == (packet if opens else None)
        # anything but the expected nonce, head or an intact tag: no plaintext from C
        assert fast.open_frame(frame, head, prefix, counter + 1) is None
        assert fast.open_frame(frame, b"PILS" + bytes(a ^ 1 for a in aad), prefix, counter) is None
        assert fast.open_frame(frame[:-1] + bytes([frame[-1] ^ 1]), head, prefix, counter) is None
        assert (
            fast.open(nonce, frame[20:], bytes(4) if aad != bytes(4) else b"\x00\x00\x00\x01", prefix, counter) is None
        )


@pytest.mark.req("TUN-003", "SEC-006")
@needs_c
def test_large_packets_round_trip() -> None:
    assert aead._pilsc is not None
    fast, oracle = aead._pilsc.PilsKey(KEY), AESGCM(KEY)
    head, prefix = b"PILS" + SENDER.to_bytes(4, "big"), PREFIXES[0]
    for size in (1 << 16, 1 << 20, 3 << 20):
        packet = bytes(6) + head[4:] + bytes(size)  # inner source = sender; larger than any real inner packet
        frame = fast.seal(head, prefix, 9, packet)
        assert frame[20:] == oracle.encrypt(prefix + (9).to_bytes(8, "big"), packet, head[4:])
        assert fast.open_frame(frame, head, prefix, 9) == packet


# -- the C object's own arguments -----------------------------------------------------------------------------------


@needs_c
def test_malformed_arguments_raise_type_or_value_errors() -> None:
    assert aead._pilsc is not None
    pk = aead._pilsc.PilsKey
    for bad_key in (b"", bytes(31), bytes(33), bytes(64)):
        with pytest.raises(ValueError):
            pk(bad_key)
    for bad_type in ("k" * 32, None, 32, [0] * 32):
        with pytest.raises(TypeError):
            pk(bad_type)  # type: ignore[arg-type]
    assert pk(bytearray(KEY)) is not None and pk(memoryview(KEY)) is not None
    fast = pk(KEY)
    head, prefix = b"PILS" + bytes(4), bytes(4)
    seal: Callable[..., object] = fast.seal
    for args, exc in (
        ((head[:7], prefix, 0, b""), ValueError),
        ((head + b"x", prefix, 0, b""), ValueError),
        ((head, b"", 0, b""), ValueError),
        ((head, prefix * 2, 0, b""), ValueError),
        ((head, prefix, -1, b""), ValueError),
        ((head, prefix, 1 << 64, b""), ValueError),
        ((head, prefix, 1 << 200, b""), ValueError),
        ((bytearray(head), prefix, 0, b""), TypeError),
        ((head, "abcd", 0, b""), TypeError),
        ((head, prefix, 1.0, b""), TypeError),
        ((head, prefix, "0", b""), TypeError),
        ((head, prefix, 0, "text"), TypeError),
        ((head, prefix, 0, None), TypeError),
        ((head, prefix, 0, 12), TypeError),
        ((head, prefix, 0), TypeError),
        ((head, prefix, 0, b"", b""), TypeError),
        ((), TypeError),
    ):
        with pytest.raises(exc):
            seal(*args)
    opener: Callable[..., object] = fast.open_frame
    parts: Callable[..., object] = fast.open
    frame = fast.seal(head, prefix, 0, _pkt(src=0))
    assert opener(frame, head, prefix, 0) == _pkt(src=0)
    for args in (  # never the plaintext, never an exception: the Python path decides
        (bytearray(frame), head, prefix, 0),
        (memoryview(frame), head, prefix, 0),
        (frame, bytearray(head), prefix, 0),
        (frame, head, bytearray(prefix), 0),
        (frame, head, b"", 0),
        (frame, head[:4], prefix, 0),
        (frame, head, prefix, -1),
        (frame, head, prefix, 1 << 64),
        (frame, head, prefix, "0"),
        (frame, head, prefix, None),
        (None, head, prefix, 0),
        ("PILS", head, prefix, 0),
        (b"", head, prefix, 0),
        (frame[:35], head, prefix, 0),
    ):
        assert opener(*args) is None, args
    for args in (
        (frame[8:20], frame[20:], head[4:], prefix, 1 << 70),
        (frame[8:20], frame[20:35], head[4:], prefix, 0),
        (frame[8:19], frame[20:], head[4:], prefix, 0),
        (frame[8:20], bytearray(frame[20:]), head[4:], prefix, 0),
        (frame[8:20], frame[20:], head[4:] + b"x", prefix, 0),
        (None, None, None, None, None),
    ):
        assert parts(*args) is None, args
    for call, n in ((opener, 4), (parts, 5)):
        for wrong in (n - 1, n + 1, 0):
            with pytest.raises(TypeError):
                call(*([frame] * wrong))
    bare = pk.__new__(pk)  # never initialised: refused, not a crash
    with pytest.raises(RuntimeError):
        bare.seal(head, prefix, 0, b"")
    with pytest.raises(RuntimeError):
        bare.open_frame(frame, head, prefix, 0)
    with pytest.raises(RuntimeError):
        pk.__init__(fast, KEY)  # no second initialisation over live contexts
    del bare


# -- leaks ----------------------------------------------------------------------------------------------------------


def _rss_kib() -> int:
    """Current resident set (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@needs_c
def test_no_reference_or_memory_growth_over_many_calls() -> None:
    """Hundreds of thousands of seals and opens (success, every None case, every raised error): the reference
    counts of the arguments and the process's memory stay put (tracemalloc cannot see OpenSSL's allocations)."""
    assert aead._pilsc is not None
    fast = aead._pilsc.PilsKey(KEY)
    head, prefix = b"PILS" + SENDER.to_bytes(4, "big"), PREFIXES[0]
    small, big = _pkt(payload=bytes(30)), _pkt(payload=bytes(1000))
    bad = fast.seal(head, prefix, 0, big)[:-1] + b"\x00"
    nonce, ct = bad[8:20], bad[20:]
    tracked = (head, prefix, small, big, bad, nonce, ct, None)

    def rounds(n: int) -> None:
        seal, open_frame, open_ = fast.seal, fast.open_frame, fast.open
        for i in range(n):
            assert open_frame(seal(head, prefix, i, small), head, prefix, i) is not None
        for i in range(n // 10):
            assert open_frame(seal(head, prefix, i, big), head, prefix, i) is not None
            assert open_(nonce, ct, head[4:], prefix, 0) is None  # tag fails after the plaintext was allocated
            assert open_frame(bad, head, prefix, 0) is None
            assert open_frame(bad, head, prefix, i + 1) is None
            for args, exc in ((-1, big), ValueError), ((0, None), TypeError):
                try:
                    seal(head, prefix, *args)
                except exc:
                    continue
                raise AssertionError(args)
        for _ in range(n // 100):
            aead._pilsc.PilsKey(KEY)  # contexts created and freed

    rounds(20_000)  # warm up allocator pools and caches
    refs = [sys.getrefcount(o) for o in tracked]
    before, peak_before = _rss_kib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rounds(300_000)
    after, peak_after = _rss_kib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert [sys.getrefcount(o) for o in tracked] == refs
    # one leaked 64-byte plaintext per call would be ~20 MiB here, one leaked 1 KiB frame per tenth call ~30 MiB
    assert after - before < 4096, (before, after)
    assert peak_after - peak_before < 4096, (peak_before, peak_after)
