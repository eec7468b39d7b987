"""The fused C packet path of the PILS accelerator: header encode/decode + CRC-32 + seal/open in one call.

``PilsSealer.seal_packet(p)`` must give exactly ``seal(encode_packet(p))`` or ``None`` (nothing sealed), and
``PilsOpener.open_packet(f)`` exactly ``decode_packet(open_frame(f), check_version=False)`` or ``None``
(nothing changed); ``None`` must come whenever the Python path would raise, so the caller's general path
reports the precise error (draft 6.2, 6.5, 7.2, 10.2, 19.9).  And for the ordinary packet the C path must
actually be taken, or the speed claimed for it would be the Python path's.  The CRC-32 both use (PCLMULQDQ
folding where the CPU has it, a table otherwise) is checked against zlib at every length around its block
boundaries.  Tests skip when the extension is not built.
"""

from __future__ import annotations

import enum
import os
import resource
import subprocess
import sys
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import ErrorCode, LocalProtocolError, PilotError
from pilot_proto.profile import Profile
from pilot_proto.tunnel import aead
from pilot_proto.tunnel.aead import PilsOpener, PilsSealer, SessionCipher
from pilot_proto.wire.address import Addr
from pilot_proto.wire.header import Flags, Packet, decode_packet, encode_packet

needs_c = pytest.mark.skipif(not aead.ACCELERATOR_AVAILABLE, reason="the C accelerator _pilsc is not built")
pytestmark = needs_c

KEY = bytes(range(32))
SENDER = 0x0A0B0C0D
PREFIX = b"\x01\x02\x03\x04"
FAST = settings(max_examples=300, derandomize=True, deadline=None)


def _c() -> Any:
    assert aead._pilsc is not None
    return aead._pilsc


# -- CRC-32 ---------------------------------------------------------------------------------------------------


@pytest.mark.req("PKT-010")
def test_crc32_matches_zlib_at_every_length_and_seed() -> None:
    """Both C implementations against zlib: every length 0..1100 (all fold-loop and tail cases), odd offsets,
    chained seeds, and the sizes of real packets."""
    c = _c()
    assert c.CRC32_IMPLEMENTATION in ("vpclmulqdq", "pclmul", "table")
    data = os.urandom(70_000)
    for n in [*range(1101), 4096, 4130, 4096 + 34, 65535, 65535 + 34]:
        for off in (0, 1, 7) if n < 300 else (0, 3):
            chunk = data[off : off + n]
            for seed in (0, 0xFFFFFFFF, 0x1234ABCD):
                want = zlib.crc32(chunk, seed)
                assert c.crc32(chunk, seed) == want, (n, off, seed)
                assert c.crc32_table(chunk, seed) == want, (n, off, seed)
    assert c.crc32(memoryview(data)[5:4101]) == zlib.crc32(data[5:4101])  # any contiguous buffer
    assert c.crc32(b"") == 0 and c.crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value


@pytest.mark.req("PKT-010")
def test_crc32_without_avx512_is_the_same() -> None:
    """The 128-bit PCLMULQDQ path on its own (what CPUs without VPCLMULQDQ run; forced here by
    PILOT_PROTO_NO_AVX512 in a fresh interpreter) against zlib at every length 0..1100 and at packet sizes."""
    code = (
        "import os, zlib\n"
        "from pilot_proto.tunnel import _pilsc as c\n"
        "print(c.CRC32_IMPLEMENTATION)\n"
        "d = os.urandom(70000)\n"
        "bad = [n for n in [*range(1101), 4096, 4130, 65535] for o in (0, 5) for v in (0, 0xFFFFFFFF)\n"
        "       if c.crc32(d[o:o + n], v) != zlib.crc32(d[o:o + n], v)]\n"
        "print(len(bad))\n"
    )
    env = {**os.environ, "PILOT_PROTO_NO_AVX512": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    implementation, bad = out.stdout.split()
    assert implementation in ("pclmul", "table") and bad == "0", out.stdout


@pytest.mark.req("PKT-010")
@FAST
@given(st.binary(max_size=3000), st.integers(0, 0xFFFFFFFF))
def test_crc32_property(data: bytes, seed: int) -> None:
    c = _c()
    assert c.crc32(data, seed) == c.crc32_table(data, seed) == zlib.crc32(data, seed)


# -- seal_packet --------------------------------------------------------------------------------------------------


def _sealers(start: int = 0) -> tuple[PilsSealer, PilsSealer]:
    fast = PilsSealer(SessionCipher(bytearray(KEY), accelerated=True), SENDER, PREFIX, counter_start=start)
    pure = PilsSealer(SessionCipher(bytearray(KEY), accelerated=False), SENDER, PREFIX, counter_start=start)
    return fast, pure


class _Odd(enum.IntEnum):
    TWO = 2


_ints = st.one_of(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from([-1, 16, 256, 0x10000, 1 << 32, 1 << 64, -(1 << 70), True, False, _Odd.TWO, Flags.ACK]),
    st.sampled_from([1.0, "1", None, b"\x01"]),
)


#: The largest value of each field (by Packet index; 12..15: src network, src node, dst network, dst node).
_LIMITS = {0: 15, 1: 0xFF, 4: 0xFFFF, 5: 0xFFFF, 6: 0xFFFFFFFF, 7: 0xFFFFFFFF, 8: 0xFFFF, 10: 15, 11: 0xFFFFFFFF,
           12: 0xFFFF, 13: 0xFFFFFFFF, 14: 0xFFFF, 15: 0xFFFFFFFF}  # fmt: skip
_BAD = st.sampled_from([-1, 16, 256, 0x10000, 1 << 32, 1 << 64, -(1 << 70), 1.0, "1", None, b"\x01", _Odd.TWO, True])


@st.composite
def _packets(draw: st.DrawFn) -> tuple[object, bool]:
    """A packet-like object and whether it is the plain case the C encoder must take: a plain packet, a plain
    packet with one field (or one address half) replaced by an odd or out-of-range value, or wild fields."""
    kind = draw(st.sampled_from(["plain", "one", "one", "wild"]))
    if kind != "wild":
        small = st.integers(0, 0xFFFF)
        word = st.integers(0, 0xFFFFFFFF)
        pkt = Packet(draw(st.integers(0, 15)), draw(st.integers(0, 255)), Addr(draw(small), SENDER),
                     Addr(draw(small), draw(word)), draw(small), draw(small), draw(word), draw(word), draw(small),
                     draw(st.binary(max_size=200)), draw(st.integers(0, 15)), draw(word))  # fmt: skip
        if kind == "plain":
            return pkt, True
        fields: list[Any] = list(pkt)
        i = draw(st.sampled_from([0, 1, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15]))
        bad = draw(st.one_of(st.just(_LIMITS[i] + 1), _BAD))  # just past the field's range, or an odd value
        if i >= 12:  # one half of an address (12, 13: source network, node; 14, 15: destination)
            which, half = (2 if i < 14 else 3), i % 2
            addr = list(fields[which])
            addr[half] = bad
            fields[which] = Addr(*addr)
        else:
            fields[i] = bad
        return Packet(*fields), False
    fields: list[Any] = [draw(_ints) for _ in range(12)]
    fields[2] = draw(st.sampled_from([Addr(0, SENDER), Addr(1, SENDER + 1), (3, SENDER), [0, SENDER], (0, SENDER, 1),
                                      Addr(-1, SENDER), Addr(0, 1 << 32), "ab"]))  # fmt: skip
    fields[3] = draw(st.sampled_from([Addr(0, 9), (70000, 9), (0,), Addr(0, True)]))
    fields[9] = draw(st.sampled_from([b"", b"abc", bytearray(b"abc"), memoryview(b"abcd"), "abc", bytes(0x10000)]))
    shape = draw(st.sampled_from(["packet", "tuple", "short", "long"]))
    if shape == "packet":
        return Packet(*fields), False
    if shape == "tuple":
        return tuple(fields), False
    return tuple(fields[:11]) if shape == "short" else (*fields, 0), False


def _pure_frame(sealer: PilsSealer, packet: object) -> object:
    """What the general path makes of ``packet``: the frame, or the error it raises (as TunnelEndpoint.send)."""
    try:
        data = encode_packet(packet)  # type: ignore[arg-type]
        if packet[2][1] != SENDER:  # type: ignore[index]
            raise LocalProtocolError(ErrorCode.SENDER_MISMATCH, "not ours", field="packet.src.node")
    except (PilotError, TypeError, ValueError, IndexError) as exc:
        return ("raises", type(exc))
    return sealer.seal(data)


@pytest.mark.req("PKT-003", "PKT-010", "SEC-027", "TUN-003")
@FAST
@given(_packets(), st.sampled_from([0, 1, 999, (1 << 64) - 5]))
def test_seal_packet_is_seal_of_encode_packet_or_none(case: tuple[object, bool], start: int) -> None:
    packet, plain = case
    fast, pure = _sealers(start)
    want = _pure_frame(pure, packet)
    got = fast.seal_packet(packet)  # type: ignore[arg-type]
    if got is None:
        assert fast.counter == start  # nothing sealed
        assert not plain, packet  # the ordinary packet must take the C path
        return
    assert want == got  # the same bytes the general path would have sent
    assert fast.counter == pure.counter == start + 1


@pytest.mark.req("PKT-003", "SEC-027")
@pytest.mark.parametrize("index", sorted(_LIMITS))
def test_each_field_at_and_past_its_limit(index: int) -> None:
    """Every field at its largest value is sealed by C exactly as by the general path; one past it, or -1, C
    declines and the general path raises (the payload's 65535-byte limit likewise)."""
    base = Packet(2, 1, Addr(0, SENDER), Addr(0, 9), 1, 2, 3, 4, 5, b"abc", 1, 0)

    def with_value(value: int) -> Packet:
        fields: list[Any] = list(base)
        if index >= 12:
            which = 2 if index < 14 else 3
            addr = list(fields[which])
            addr[index % 2] = value
            fields[which] = Addr(*addr)
        else:
            fields[index] = value
        return Packet(*fields)

    for value, fits in ((_LIMITS[index], True), (_LIMITS[index] + 1, False), (-1, False)):
        packet = with_value(value)
        fast, pure = _sealers()
        want, got = _pure_frame(pure, packet), fast.seal_packet(packet)
        if index == 11:  # the checksum field is ignored on encode, whatever it holds
            assert got is not None and got == want, value
        elif index == 13 or not fits:  # 13: another source node is refused (SEC-027)
            assert got is None and isinstance(want, tuple) and fast.counter == 0, value
        else:
            assert got is not None and got == want, value
    for n, fits in ((0xFFFF, True), (0x10000, False)):
        fast, pure = _sealers()
        packet = base._replace(payload=bytes(n))
        got = fast.seal_packet(packet)
        assert (got is not None and got == _pure_frame(pure, packet)) if fits else got is None


class _IntOverridden(int):
    def __int__(self) -> int:
        return 3


class _OrOverridden(int):
    def __or__(self, other: object) -> int:
        return 0


class _IterTuple(tuple):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        return iter((0, SENDER))


class _IterAddr(Addr):
    __slots__ = ()

    def __iter__(self) -> Any:
        return iter((7, SENDER))


def test_int_and_tuple_subclasses_that_behave_unlike_their_value_take_the_general_path() -> None:
    """encode_packet applies int() to flags, `|` and `<<` to version, and unpacks the packet and addresses; a
    subclass that redefines any of these is not encoded by C (it would encode the stored value instead)."""
    base = Packet(2, 1, Addr(0, SENDER), Addr(0, 9), 1, 2, 3, 4, 5, b"abc")
    fast, pure = _sealers()
    for odd in (base._replace(flags=_IntOverridden(2)), base._replace(version=_OrOverridden(1)),
                base._replace(src=_IterAddr(0, SENDER)), base._replace(dst=_IterTuple((1, 2))),
                _IterTuple(base), base._replace(version=Flags.SYN)):  # fmt: skip
        assert fast.seal_packet(odd) is None and fast.counter == 0, odd  # type: ignore[arg-type]
    for fine in (base._replace(flags=Flags.ACK), base._replace(seq=_OrOverridden(3)), base._replace(flags=True)):
        assert fast.seal_packet(fine) == _pure_frame(pure, fine)  # subclasses read by value: C takes them
    assert _pure_frame(_sealers()[1], base._replace(flags=_IntOverridden(2))) == _pure_frame(
        _sealers()[1], base._replace(flags=3)
    )  # the Python path's reading, which C would not have matched


@pytest.mark.req("TUN-003")
def test_seal_packet_needs_the_accelerator_and_refuses_a_spent_counter() -> None:
    pure = PilsSealer(SessionCipher(bytearray(KEY), accelerated=False), SENDER, PREFIX)
    pkt = Packet(2, 1, Addr(0, SENDER), Addr(0, 9), 1, 2, payload=b"x")
    assert pure.seal_packet(pkt) is None and pure.counter == 0
    spent = PilsSealer(SessionCipher(bytearray(KEY), accelerated=True), SENDER, PREFIX, counter_start=4, limit=5)
    assert spent.seal_packet(pkt) is not None
    with pytest.raises(LocalProtocolError) as info:
        spent.seal_packet(pkt)
    assert info.value.code is ErrorCode.NONCE_EXHAUSTED and spent.counter == 5


# -- open_packet --------------------------------------------------------------------------------------------------


def _openers() -> tuple[PilsOpener, PilsOpener]:
    return (PilsOpener(SessionCipher(bytearray(KEY), accelerated=True), SENDER),
            PilsOpener(SessionCipher(bytearray(KEY), accelerated=False), SENDER))  # fmt: skip


def _inner(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Inner packet bytes (mostly valid) and whether they are the plain case open_packet must take."""
    small, word = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
    pkt = Packet(draw(st.integers(0, 15)), draw(st.integers(0, 255)), Addr(draw(small), SENDER),
                 Addr(draw(small), draw(word)), draw(small), draw(small), draw(word), draw(word), draw(small),
                 draw(st.binary(max_size=120)), draw(st.sampled_from([1, 1, 1, 0, 2, 15])))  # fmt: skip
    raw = bytearray(encode_packet(pkt))
    how = draw(st.sampled_from(["as-is"] * 6 + ["crc", "body", "src", "trailing", "cut", "length", "tiny"]))
    if how == "crc":
        raw[30 + draw(st.integers(0, 3))] ^= 1 << draw(st.integers(0, 7))
    elif how == "body" and len(raw) > 34:
        raw[draw(st.integers(34, len(raw) - 1))] ^= 0x40
    elif how == "src":
        raw[6 + draw(st.integers(0, 3))] ^= 0x01
    elif how == "trailing":
        raw += draw(st.binary(min_size=1, max_size=5))
    elif how == "cut" and len(raw) > 34:
        del raw[draw(st.integers(34, len(raw) - 1)) :]
    elif how == "length":
        raw[2:4] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    elif how == "tiny":
        raw = raw[: draw(st.integers(10, 33))]
    if how != "crc" and len(raw) >= 34 and draw(st.booleans()):  # the CRC fixed up, so only the other rule can refuse
        raw[30:34] = zlib.crc32(bytes(raw[34:]), zlib.crc32(bytes(raw[:30]) + bytes(4))).to_bytes(4, "big")
    return bytes(raw), how == "as-is"


def _decoded(opener: PilsOpener, frame: bytes, profile: Profile) -> object:
    try:
        plaintext = opener.open_frame(frame)
    except PilotError as exc:
        return ("open", exc.code)
    try:
        return decode_packet(plaintext, profile, check_version=False)
    except PilotError as exc:
        return ("decode", exc.code)


@st.composite
def _deliveries(draw: st.DrawFn) -> list[tuple[bytes, bool, int, str]]:
    return [(*_inner(draw), draw(st.sampled_from([0, 0, 0, 0, 1, -1, 5])), draw(st.sampled_from(["ok"] * 5 + ["tag"])))
            for _ in range(draw(st.integers(1, 12)))]  # fmt: skip


@pytest.mark.req("PKT-002", "PKT-010", "PKT-024", "SEC-027", "CONS-013", "CONS-019", "TUN-003")
@FAST
@given(_deliveries(), st.sampled_from([Profile.DRAFT, Profile.GO_INTEROP]))
def test_open_packet_is_decode_of_open_frame_or_none(deliveries: list[tuple[bytes, bool, int, str]],
                                                     profile: Profile) -> None:  # fmt: skip
    sealer = _sealers()[1]
    fast, pure = _openers()
    for inner, plain, skew, tag in deliveries:
        counter = sealer.counter
        frame = sealer.seal(inner)
        if skew:  # an out-of-order counter: not the in-order fast case (and a replay for skew < 0)
            sealer.counter = max(0, counter + skew)
            frame = sealer.seal(inner)
        if tag == "tag":
            frame = frame[:-1] + bytes([frame[-1] ^ 1])
        before = fast.snapshot()
        in_order = fast._last_prefix == PREFIX and int.from_bytes(frame[12:20], "big") == fast._last.top + 1
        got = fast.open_packet(frame)
        if got is None:
            assert fast.snapshot() == before  # nothing committed
            assert not (plain and in_order and tag == "ok"), inner  # the ordinary frame must take the C path
            got = _decoded(fast, frame, profile)  # what the tunnel then does: the general path
        else:
            assert type(got) is Packet and type(got.src) is Addr and type(got.dst) is Addr
            assert type(got.payload) is bytes and all(type(f) is int for i, f in enumerate(got) if i not in (2, 3, 9))
        want = _decoded(pure, frame, profile)
        assert got == want, (inner.hex(), skew, tag)
        assert fast.snapshot() == pure.snapshot()


@pytest.mark.req("TUN-003")
def test_open_packet_round_trips_a_full_size_segment_and_an_ack() -> None:
    fast_s, _ = _sealers()
    fast_o, _ = _openers()
    first = fast_s.seal_packet(Packet(0, 2, Addr(0, SENDER), Addr(0, 2), 1, 2))
    assert first is not None and fast_o.open_packet(first) is None  # a new prefix: the general path takes it
    fast_o.open_frame(first)
    for payload in (os.urandom(4096), b"", os.urandom(13), os.urandom(14), os.urandom(15), os.urandom(0xFFFF)):
        pkt = Packet(int(Flags.ACK), 1, Addr(0, SENDER), Addr(0, 2), 49152, 5000, 0xFFFFFFFF, 7, 512, payload)
        frame = fast_s.seal_packet(pkt)
        assert frame is not None and len(frame) == 36 + 34 + len(payload)
        got = fast_o.open_packet(frame)
        assert got == pkt._replace(checksum=int.from_bytes(encode_packet(pkt)[30:34], "big"))


def test_open_packet_without_the_accelerator_is_none() -> None:
    pure = PilsOpener(SessionCipher(bytearray(KEY), accelerated=False), SENDER)
    frame = _sealers()[1].seal(encode_packet(Packet(2, 1, Addr(0, SENDER), Addr(0, 2), 1, 2)))
    assert pure.open_packet(frame) is None and pure.snapshot() == PilsOpener(
        SessionCipher(bytearray(KEY), accelerated=False), SENDER).snapshot()  # fmt: skip


def test_malformed_arguments_and_types() -> None:
    c = _c()
    key = c.PilsKey(KEY)
    head = b"PILS" + SENDER.to_bytes(4, "big")
    pkt = Packet(2, 1, Addr(0, SENDER), Addr(0, 2), 1, 2)
    for args, exc in (((head, PREFIX, 0), TypeError), ((head[:7], PREFIX, 0, pkt), ValueError),
                      ((head, PREFIX, -1, pkt), ValueError), ((head, PREFIX, "0", pkt), TypeError)):  # fmt: skip
        with pytest.raises(exc):
            key.seal_packet(*args)
    frame = key.seal_packet(head, PREFIX, 0, pkt)
    for bad in (bytearray(frame), memoryview(frame), frame[:69], frame + b"\x00", None):
        assert key.open_packet(bad, head, PREFIX, 0) is None
    assert key.open_packet(frame, head, PREFIX, 1 << 64) is None and key.open_packet(frame, head, PREFIX, -1) is None
    with pytest.raises(TypeError):
        key.open_packet(frame, head, PREFIX)
    with pytest.raises(TypeError):
        c.set_packet_types(Packet, dict)
    with pytest.raises(TypeError):  # a C tuple subtype (struct sequence): its own dealloc and item count
        c.set_packet_types(os.stat_result, Addr)
    with pytest.raises(TypeError):
        c.set_packet_types(Packet, type("StatAddr", (os.stat_result,), {}))
    with pytest.raises(TypeError):
        c.crc32("text")


def _rss_kib() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_no_reference_or_memory_growth() -> None:
    """Many seal_packet / open_packet calls, succeeding and every kind of None: no reference or memory growth."""
    c = _c()
    key = c.PilsKey(KEY)
    head = b"PILS" + SENDER.to_bytes(4, "big")
    payload = bytes(1000)
    pkt = Packet(2, 1, Addr(0, SENDER), Addr(0, 2), 1, 2, 5, 6, 7, payload)
    foreign = pkt._replace(src=Addr(0, 3))
    bad_crc = key.seal(head, PREFIX, 0, encode_packet(pkt)[:30] + b"\x00\x00\x00\x00" + payload)
    tracked = (head, payload, pkt, foreign, bad_crc, None)

    def rounds(n: int) -> None:
        seal, open_ = key.seal_packet, key.open_packet
        for i in range(n):
            got = open_(seal(head, PREFIX, i, pkt), head, PREFIX, i)
            assert got is not None and got.payload == payload
            assert seal(head, PREFIX, i, foreign) is None
            assert open_(bad_crc, head, PREFIX, 0) is None

    rounds(20_000)
    refs = [sys.getrefcount(o) for o in tracked]
    before = _rss_kib()
    rounds(150_000)
    assert [sys.getrefcount(o) for o in tracked] == refs
    assert _rss_kib() - before < 4096  # a leaked 1 KiB payload per call would be ~150 MiB


# -- the tunnel takes it ------------------------------------------------------------------------------------------


class _NeverEqual(int):
    def __ne__(self, other: object) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = int.__hash__


class _OddIndex(tuple):  # type: ignore[type-arg]
    def __getitem__(self, i: Any) -> Any:
        return 999


@pytest.mark.req("SEC-027")
def test_tunnel_send_judges_the_source_as_encoded_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The source node check compares the bytes that go on the wire, on the C path and on the general path, so
    an int or Addr subclass that compares or indexes unlike its value is judged alike (a reviewer's case)."""
    outcomes = []
    for declined in (False, True):
        a, _b = _keyed_tunnels()
        if declined:
            monkeypatch.setattr(PilsSealer, "seal_packet", lambda self, p: None)
        sealer = a.peers[2].sessions[0].sealer
        row = []
        for src in (Addr(0, 1), Addr(0, _NeverEqual(1)), _OddIndex((0, 1)), Addr(0, 7)):
            before = sealer.counter
            try:
                a.send(2, Packet(2, 1, src, Addr(0, 2), 1, 2, payload=b"x"), 0.0)  # type: ignore[arg-type]
                row.append(("sent", sealer.counter - before, len(a.datagrams_to_send())))
            except LocalProtocolError as exc:
                row.append((exc.code.value, sealer.counter - before, len(a.datagrams_to_send())))
        outcomes.append(row)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][-1][0] == ErrorCode.SENDER_MISMATCH.value and outcomes[0][0] == ("sent", 1, 1)


def _keyed_tunnels() -> tuple[Any, Any]:
    from pilot_proto.testing.keys import InsecureDeterministicRng, insecure_test_identity
    from pilot_proto.tunnel import TunnelConfig, TunnelEndpoint

    def tunnel(node: int) -> TunnelEndpoint:
        keys = {n: insecure_test_identity(n).public_bytes for n in (1, 2) if n != node}
        return TunnelEndpoint(node, InsecureDeterministicRng(f"pkt/{node}"), identity=insecure_test_identity(node),
                              config=TunnelConfig.for_profile("draft"), peer_keys=keys)  # fmt: skip

    a, b = tunnel(1), tunnel(2)
    a.add_peer(2, ("127.0.0.1", 2))
    b.add_peer(1, ("127.0.0.1", 1))
    a.send(2, Packet(2, 1, Addr(0, 1), Addr(0, 2), 1, 2, payload=b"hello"), 0.0)
    for _ in range(3):  # key exchange both ways, then the queued packet
        for d in a.datagrams_to_send():
            b.receive_datagram(d.data, ("127.0.0.1", 1), 0.0)
        for d in b.datagrams_to_send():
            a.receive_datagram(d.data, ("127.0.0.1", 2), 0.0)
    a.datagrams_to_send()
    return a, b


@pytest.mark.req("SEC-027")
def test_tunnel_send_still_refuses_a_foreign_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """A packet whose source is not this node is refused with SENDER_MISMATCH and nothing is sealed or queued."""
    a, _b = _keyed_tunnels()
    calls: list[int] = []
    orig: Callable[..., Any] = PilsSealer.seal_packet
    monkeypatch.setattr(PilsSealer, "seal_packet", lambda self, p: calls.append(1) or orig(self, p))
    a.send(2, Packet(2, 1, Addr(0, 1), Addr(0, 2), 1, 2, payload=b"keyed"), 0.0)
    assert calls and len(a.datagrams_to_send()) == 1  # the keyed send went through seal_packet
    counter = a.peers[2].sessions[0].sealer.counter
    with pytest.raises(LocalProtocolError) as info:
        a.send(2, Packet(2, 1, Addr(0, 7), Addr(0, 2), 1, 2, payload=b"forged"), 0.0)
    assert info.value.code is ErrorCode.SENDER_MISMATCH
    assert a.peers[2].sessions[0].sealer.counter == counter and a.datagrams_to_send() == []
