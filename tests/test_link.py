"""The in-memory impaired link and fake clock (pilot_proto.testing).

The link manufactures the conditions the session layer must survive (loss,
reordering, duplication, corruption, a bandwidth cap); these tests pin down
that each impairment does what it says, reproducibly from a seed.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import DecodeError, ErrorCode
from pilot_proto.testing.clock import FakeClock
from pilot_proto.testing.link import ImpairedLink, LinkConfig, flip_random_bit
from pilot_proto.wire import Addr, Flags, Packet, PacketProtocol, decode_packet

A, B = "a", "b"


def _drain(link: ImpairedLink[bytes, str]) -> list[tuple[float, bytes]]:
    out: list[tuple[float, bytes]] = []
    while (t := link.next_delivery_time()) is not None:
        out.extend((d.time, d.datagram) for d in link.deliverable(t))
    return out


@pytest.mark.req("SES-040")
def test_fake_clock_is_monotonic() -> None:
    clock = FakeClock(5.0)
    assert clock() == 5.0
    assert clock.advance(0.25) == 5.25
    assert clock.advance_to(5.0) == 5.25  # a past deadline does not move it back
    assert clock.advance_to(7.0) == 7.0 and clock.now == 7.0
    with pytest.raises(ValueError):
        clock.advance(-0.001)
    with pytest.raises(ValueError):
        clock.advance_to(float("nan"))
    with pytest.raises(ValueError):
        FakeClock(float("inf"))


@pytest.mark.req("SES-040")
def test_ideal_link_delivers_in_order_after_delay() -> None:
    link: ImpairedLink[bytes, str] = ImpairedLink(LinkConfig(delay=0.05))
    for i in range(5):
        assert link.send(A, B, bytes([i]), now=i * 0.001)
    assert link.next_delivery_time() == pytest.approx(0.05)
    assert link.deliverable(0.0499) == []
    first = link.deliverable(0.05)
    assert [(d.src, d.dst, d.datagram) for d in first] == [(A, B, b"\x00")]
    rest = link.deliverable(1.0)
    assert [d.datagram for d in rest] == [bytes([i]) for i in range(1, 5)]
    assert [d.time for d in rest] == pytest.approx([0.051, 0.052, 0.053, 0.054])
    assert link.next_delivery_time() is None and link.in_flight == 0
    assert link.stats.sent == link.stats.delivered == 5 and link.stats.bytes_delivered == 5


@pytest.mark.req("SES-040", "SES-046")
def test_loss_rate_is_roughly_the_configured_probability() -> None:
    link: ImpairedLink[bytes, str] = ImpairedLink(LinkConfig(loss=0.3), rng=random.Random(7))
    for i in range(10_000):
        link.send(A, B, b"x", now=i * 1e-6)
    got = _drain(link)
    assert link.stats.lost + len(got) == 10_000
    assert 0.27 < link.stats.lost / 10_000 < 0.33
    assert link.direction_stats(A, B).lost == link.stats.lost
    assert link.direction_stats(B, A).sent == 0


@pytest.mark.req("SES-050")
def test_reordering_moves_some_datagrams_later() -> None:
    link: ImpairedLink[bytes, str] = ImpairedLink(
        LinkConfig(delay=0.01, reorder=0.2, reorder_delay=0.005), rng=random.Random(3)
    )
    sent = [i.to_bytes(2, "big") for i in range(1000)]
    for i, d in enumerate(sent):
        link.send(A, B, d, now=i * 0.001)
    got = [d for _, d in _drain(link)]
    assert sorted(got) == sent  # nothing lost or duplicated
    assert got != sent  # but order changed
    assert 150 < link.stats.reordered < 250


@pytest.mark.req("SES-052")
def test_duplication_delivers_extra_copies() -> None:
    link: ImpairedLink[bytes, str] = ImpairedLink(LinkConfig(duplicate=0.5, jitter=0.002), rng=random.Random(1))
    for i in range(1000):
        link.send(A, B, i.to_bytes(2, "big"), now=i * 0.01)
    got = [d for _, d in _drain(link)]
    assert len(got) == 1000 + link.stats.duplicated
    assert set(got) == {i.to_bytes(2, "big") for i in range(1000)}
    assert 400 < link.stats.duplicated < 600


@pytest.mark.req("PKT-010")
def test_corruption_flips_one_bit_and_the_crc_catches_it() -> None:
    pkt = Packet(Flags.ACK, PacketProtocol.STREAM, Addr(0, 1), Addr(0, 2), 1000, 2000, 5, 6, 7, b"payload")
    raw = pkt.encode()
    link: ImpairedLink[bytes, str] = ImpairedLink(LinkConfig(corrupt=1.0), rng=random.Random(9))
    for _ in range(200):
        link.send(A, B, raw, now=0.0)
    for _, damaged in _drain(link):
        assert len(damaged) == len(raw)
        diff = int.from_bytes(damaged, "big") ^ int.from_bytes(raw, "big")
        assert diff.bit_count() == 1
        with pytest.raises(DecodeError) as info:
            decode_packet(damaged)
        # a flipped length byte may be caught as a length error before the CRC is checked
        assert info.value.code in (ErrorCode.BAD_CHECKSUM, ErrorCode.TRUNCATED, ErrorCode.TRAILING_DATA)
    assert link.stats.corrupted == 200


@pytest.mark.req("PKT-010")
def test_objects_need_a_corrupter() -> None:
    with pytest.raises(TypeError):
        flip_random_bit(object(), random.Random(0))
    link: ImpairedLink[tuple[int, ...], str] = ImpairedLink(LinkConfig(corrupt=1.0), corrupter=lambda d, rng: (*d, -1))
    link.send(A, B, (1, 2), now=0.0)
    assert [d.datagram for d in link.deliverable(0.0)] == [(1, 2, -1)]


@pytest.mark.req("SES-081")
def test_bandwidth_cap_serialises_and_queue_limit_tail_drops() -> None:
    # 1000 B/s: a 100-byte datagram takes 0.1 s on the wire
    link: ImpairedLink[bytes, str] = ImpairedLink(LinkConfig(bandwidth=1000.0, queue_limit=3))
    accepted = [link.send(A, B, bytes(100), now=0.0) for _ in range(5)]
    assert accepted == [True, True, True, False, False]
    assert link.stats.queue_dropped == 2
    assert [t for t, _ in _drain(link)] == pytest.approx([0.1, 0.2, 0.3])
    # once the queue drains, new datagrams are accepted and start at "now"
    assert link.send(A, B, bytes(100), now=1.0)
    assert link.next_delivery_time() == pytest.approx(1.1)
    # directions are independent
    assert link.send(B, A, bytes(100), now=1.0)
    assert link.deliverable(1.1)[0].src == A


@pytest.mark.req("SES-040")
def test_per_direction_config_and_partition() -> None:
    link: ImpairedLink[bytes, str] = ImpairedLink(LinkConfig(delay=0.01))
    link.configure(LinkConfig(loss=1.0), A, B)
    link.send(A, B, b"lost", now=0.0)
    link.send(B, A, b"kept", now=0.0)
    assert [d.datagram for d in link.deliverable(1.0)] == [b"kept"]
    assert link.config_for(A, B).loss == 1.0 and link.config_for(B, A).delay == 0.01
    link.configure(LinkConfig())  # back to ideal in both directions
    link.send(A, B, b"x", now=2.0)
    link.send(A, B, b"y", now=2.0)
    assert link.clear() == 2 and link.next_delivery_time() is None
    with pytest.raises(ValueError):
        link.configure(LinkConfig(), A, None)


@pytest.mark.req("SES-040")
@pytest.mark.parametrize(
    "bad",
    [{"loss": 1.5}, {"delay": -1.0}, {"jitter": float("nan")}, {"bandwidth": 0.0}, {"queue_limit": 0}],
)
def test_config_validation(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LinkConfig(**bad)  # type: ignore[arg-type]
    assert LinkConfig().lossless and not LinkConfig().with_(loss=0.1).lossless


@pytest.mark.req("SES-040", "SES-050", "SES-052")
@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.floats(0, 0.5),
    reorder=st.floats(0, 0.5),
    dup=st.floats(0, 0.5),
    jitter=st.floats(0, 0.05),
)
def test_same_seed_same_run_and_conservation(seed: int, loss: float, reorder: float, dup: float, jitter: float) -> None:
    cfg = LinkConfig(delay=0.02, jitter=jitter, loss=loss, reorder=reorder, duplicate=dup, bandwidth=1e6)
    runs = []
    for _ in range(2):
        link: ImpairedLink[bytes, str] = ImpairedLink(cfg, rng=random.Random(seed))
        for i in range(200):
            link.send(A, B, i.to_bytes(2, "big"), now=i * 1e-4)
        got = _drain(link)
        times = [t for t, _ in got]
        assert times == sorted(times)
        s = link.stats
        assert s.sent == 200 and s.delivered == len(got) == 200 - s.lost + s.duplicated
        runs.append(got)
    assert runs[0] == runs[1]


@pytest.mark.req("SES-040", "PKT-010")
def test_stream_pair_over_corrupting_lossy_link() -> None:
    """Corrupted packets cross the link as bytes and die at the CRC; loss is repaired; the stream is exact."""
    from pilot_proto.stream import StreamConfig
    from pilot_proto.testing.pair import StreamPair

    cfg = StreamConfig.for_profile("draft", mss=1000)
    pair = StreamPair(cfg, link=LinkConfig(delay=0.01, jitter=0.005, loss=0.1, duplicate=0.05, corrupt=0.05), seed=11)
    ca, cb = pair.connect()
    data = bytes(range(256)) * 400
    pair.send("a", ca, data)
    assert pair.run_until(lambda: pair.sides["b"].data(cb) == data, max_time=300.0)
    assert pair.rejected > 0 and pair.rejected <= pair.link.stats.corrupted
    assert pair.link.stats.lost > 0
    before = pair.now
    pair.advance(1.5)
    assert pair.now == before + 1.5  # advance() lands exactly on the requested time
    pair.close("a", ca)
    pair.close("b", cb)
    assert pair.run_until(lambda: ca in pair.sides["a"].closed and cb in pair.sides["b"].closed, max_time=pair.now + 60)
