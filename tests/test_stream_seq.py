"""RFC 1982 sequence arithmetic (draft 8.4) and wrap-safe connections across 2^32."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.stream import StreamConfig
from pilot_proto.stream.seq import MASK, seq_add, seq_after, seq_before, seq_diff, seq_ge, seq_le, unwrap, wrap
from pilot_proto.testing.link import LinkConfig
from pilot_proto.testing.pair import StreamPair

u32 = st.integers(0, MASK)
delta = st.integers(-(2**31) + 1, 2**31 - 1)


@pytest.mark.req("SES-031")
def test_draft_formula_examples() -> None:
    assert seq_after(1, 0) and not seq_after(0, 1)
    assert seq_after(0, MASK)  # 0 follows 0xFFFFFFFF
    assert seq_before(MASK, 0)
    assert seq_after(5, 0xFFFFFFF0)
    assert not seq_after(7, 7) and seq_ge(7, 7) and seq_le(7, 7)
    assert seq_diff(0, MASK) == 1 and seq_diff(MASK, 0) == -1
    assert seq_diff(0x80000000, 0) == -(2**31)  # the undefined antipode maps to "before"


@pytest.mark.req("SES-030", "SES-031")
@settings(max_examples=300, derandomize=True, deadline=None)
@given(a=u32, d=delta)
def test_serial_comparison_matches_int32(a: int, d: int) -> None:
    b = seq_add(a, d)
    assert seq_diff(b, a) == d
    assert seq_after(b, a) == (d > 0)
    assert seq_before(b, a) == (d < 0)
    assert seq_ge(b, a) == (d >= 0) and seq_le(b, a) == (d <= 0)
    # int32(a - b) > 0, literally as the draft writes it
    raw = (b - a) & MASK
    as_int32 = raw - 2**32 if raw >= 2**31 else raw
    assert seq_after(b, a) == (as_int32 > 0)


@pytest.mark.req("SES-030")
@settings(max_examples=300, derandomize=True, deadline=None)
@given(near=st.integers(0, 2**48), d=delta)
def test_unwrap_inverts_wrap(near: int, d: int) -> None:
    pos = near + d
    assert unwrap(wrap(pos), near) == pos


@pytest.mark.req("SES-030", "SES-031", "SES-040")
@pytest.mark.parametrize("loss", [0.0, 0.05])
def test_transfer_across_the_wrap(loss: float) -> None:
    """ISNs just below 2^32 on both sides: 300 kB with loss crosses the wrap and arrives intact."""
    cfg = StreamConfig.for_profile()
    pair = StreamPair(cfg, link=LinkConfig(delay=0.005, loss=loss), seed=3)
    for side in (pair.a, pair.b):
        side._isn = lambda: MASK - 1000
    ca, cb = pair.connect()
    data = bytes(i * 7 % 251 for i in range(300_000))
    pair.send("a", ca, data)
    pair.send("b", cb, data[::-1])
    assert pair.run_until(lambda: len(pair.sides["b"].data(cb)) == len(data) and
                          len(pair.sides["a"].data(ca)) == len(data), max_time=120)  # fmt: skip
    assert pair.sides["b"].data(cb) == data and pair.sides["a"].data(ca) == data[::-1]
    assert pair.a.connection(ca).snd_nxt > 1000  # positions went past the wire wrap point
