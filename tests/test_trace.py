"""Structured session traces (pilot_proto.trace) and ``pilot-proto trace plot``.

Traces record the section 8 congestion and RTT state (cwnd, ssthresh, srtt,
rto, bytes in flight) per event, so the requirements cited are the ones whose
state a trace must carry faithfully.
"""

from __future__ import annotations

import enum
import io
import itertools
import json
from pathlib import Path

import pytest

from pilot_proto.cli import main
from pilot_proto.errors import DecodeError, ErrorCode
from pilot_proto.trace import (
    PACKET_RECEIVED,
    PACKET_SENT,
    JsonLinesWriter,
    TraceCollector,
    read_trace,
    read_trace_file,
    validate_record,
)
from pilot_proto.wire import Flags

TRACE_REQS = ("SES-041", "SES-043", "SES-070", "SES-075")


class _State(enum.Enum):
    ESTABLISHED = 1


def _synthetic(writer: JsonLinesWriter) -> None:
    """A little slow-start run: 10 segments, acked one by one, cwnd growing by one MSS per ACK."""
    mss, cwnd, isn = 4096, 40960, 4_294_967_000  # wraps across 2^32
    for i in range(10):
        seq = (isn + i * mss) % 2**32
        writer({"time": i * 0.001, "name": PACKET_SENT, "conn": 1, "side": "a", "seq": seq, "ack": 1,
                "len": mss, "flags": Flags.ACK, "cwnd": cwnd, "ssthresh": 2**32 - 1,
                "bytes_in_flight": (i + 1) * mss})  # fmt: skip
    for i in range(10):
        cwnd += mss
        writer({"time": 0.05 + i * 0.001, "name": PACKET_RECEIVED, "conn": 1, "side": "a",
                "ack": (isn + (i + 1) * mss) % 2**32, "flags": Flags.ACK, "cwnd": cwnd, "srtt": 0.05,
                "rto": 0.25, "state": _State.ESTABLISHED, "bytes_in_flight": (9 - i) * mss})  # fmt: skip


@pytest.mark.req(*TRACE_REQS)
def test_writer_reader_roundtrip() -> None:
    buf = io.StringIO()
    writer = JsonLinesWriter(buf, title="slow start", profile="draft")
    _synthetic(writer)
    assert writer.count == 20
    lines = buf.getvalue().splitlines()
    assert len(lines) == 21 and all(json.loads(line) for line in lines)
    trace = read_trace(lines)
    assert trace.header["title"] == "slow start" and trace.header["profile"] == "draft"
    assert len(trace.records) == 20 and trace.connections() == [1]
    first = trace.records[0]
    assert first["flags"] == "ACK" and first["seq"] == 4_294_967_000  # enums written by name
    assert trace.records[-1]["state"] == "ESTABLISHED"
    cwnd = trace.series("cwnd", name=PACKET_RECEIVED)
    assert [v for _, v in cwnd] == [40960 + 4096 * (i + 1) for i in range(10)]
    assert trace.series("srtt")[0] == (0.05, 0.05)


@pytest.mark.req(*TRACE_REQS)
def test_collector_is_a_tracer() -> None:
    sink = TraceCollector()
    rec = {"time": 1.0, "name": "rto_fired", "conn": "x", "rto": 0.4}
    sink(rec)
    rec["rto"] = 9.0  # the collector keeps a copy, not the producer's dict
    assert sink.named("rto_fired") == [{"time": 1.0, "name": "rto_fired", "conn": "x", "rto": 0.4}]


@pytest.mark.req(*TRACE_REQS)
@pytest.mark.parametrize(
    ("record", "why"),
    [
        ([], "JSON object"),
        ({"name": "x", "conn": 1}, "'time'"),
        ({"time": float("inf"), "name": "x", "conn": 1}, "'time'"),
        ({"time": True, "name": "x", "conn": 1}, "'time'"),
        ({"time": 0, "name": "", "conn": 1}, "'name'"),
        ({"time": 0, "name": "x"}, "'conn'"),
        ({"time": 0, "name": "x", "conn": 1, "cwnd": "big"}, "'cwnd'"),
        ({"time": 0, "name": "x", "conn": 1, "seq": 1.5}, "'seq'"),
    ],
)
def test_invalid_records_are_rejected(record: object, why: str) -> None:
    with pytest.raises(DecodeError) as info:
        validate_record(record, line=3)
    assert why in info.value.rule and info.value.field == "trace.line3"


@pytest.mark.req(*TRACE_REQS)
def test_reader_errors() -> None:
    with pytest.raises(DecodeError) as info:
        read_trace(["", "  "])
    assert info.value.code is ErrorCode.TRUNCATED
    with pytest.raises(DecodeError) as info:
        read_trace(['{"trace": "other", "version": 1}'])
    assert info.value.code is ErrorCode.BAD_MAGIC
    with pytest.raises(DecodeError) as info:
        read_trace(['{"trace": "pilot-proto", "version": 99}'])
    assert info.value.code is ErrorCode.BAD_VERSION
    with pytest.raises(DecodeError) as info:
        read_trace(['{"trace": "pilot-proto", "version": 1}', "{not json"])
    assert info.value.code is ErrorCode.BAD_ENCODING and info.value.field == "trace.line2"
    # unknown extra fields are kept
    trace = read_trace(['{"trace": "pilot-proto", "version": 1}', '{"time": 0, "name": "x", "conn": 1, "zz": [1]}'])
    assert trace.records[0]["zz"] == [1]


def _write_trace(path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        _synthetic(JsonLinesWriter(fh, title="synthetic"))


@pytest.mark.req(*TRACE_REQS)
def test_cli_plot_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    src, out = tmp_path / "t.jsonl", tmp_path / "t.png"
    _write_trace(src)
    assert main(["trace", "plot", str(src), "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert "20 records" in capsys.readouterr().out
    # one connection only; a connection with no data is an error, not an empty picture
    assert main(["trace", "plot", str(src), "-o", str(tmp_path / "c.png"), "--conn", "1"]) == 0
    assert main(["trace", "plot", str(src), "-o", str(tmp_path / "none.png"), "--conn", "7"]) == 2
    assert "no sequence or congestion data" in capsys.readouterr().err
    assert not (tmp_path / "none.png").exists()


@pytest.mark.req(*TRACE_REQS)
def test_cli_plot_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("hello\n")
    assert main(["trace", "plot", str(bad), "-o", str(tmp_path / "x.png")]) == 2
    assert "not JSON" in capsys.readouterr().err
    assert main(["trace", "plot", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "x.png")]) == 2


@pytest.mark.req(*TRACE_REQS)
def test_missing_matplotlib_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from pilot_proto.trace_plot import PlotUnavailable, plot_trace

    src = tmp_path / "t.jsonl"
    _write_trace(src)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(PlotUnavailable, match=r"pilot-proto\[plot\]"):
        plot_trace(read_trace_file(src), tmp_path / "x.png")


@pytest.mark.req(*TRACE_REQS, "SES-073", "SES-076")
def test_real_session_trace_validates_and_plots(tmp_path: Path) -> None:
    """A lossy StreamPair run traced to JSON lines: every record fits the schema, losses show, and it plots."""
    from pilot_proto.stream import StreamConfig
    from pilot_proto.testing.link import LinkConfig
    from pilot_proto.testing.pair import StreamPair

    path = tmp_path / "run.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        writer = JsonLinesWriter(fh, title="200 KB at 5% loss")
        cfg = StreamConfig.for_profile("draft", mss=1024, nodelay=True)
        pair = StreamPair(cfg, link=LinkConfig(delay=0.02, loss=0.05), seed=5, tracer=writer)
        ca, cb = pair.connect()
        pair.send("a", ca, bytes(200_000))
        assert pair.run_until(lambda: len(pair.sides["b"].data(cb)) == 200_000, max_time=120.0)
    trace = read_trace_file(path)  # raises if any record breaks the schema
    names = {r["name"] for r in trace.records}
    assert {PACKET_SENT, PACKET_RECEIVED, "data_sent", "ack"} <= names
    assert names & {"retransmit", "loss_fast_retransmit", "loss_rto"}, "5% loss but no loss event traced"
    cwnd = [v for _, v in trace.series("cwnd", conn=ca) if v is not None]
    assert max(cwnd) > cwnd[0]  # it grew, and (loss) it also fell at some point
    assert any(b < a for a, b in itertools.pairwise(cwnd))
    sides = {r.get("side") for r in trace.records}
    assert sides == {"a", "b"}
    pytest.importorskip("matplotlib")
    out = tmp_path / "run.png"
    assert main(["trace", "plot", str(path), "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.req("SES-060", *TRACE_REQS)
def test_plot_series_does_not_draw_sack_acks_as_data() -> None:
    """Under loss the receiver sends SACK-bearing ACKs (a payload on the wire); they are not data."""
    import io

    from pilot_proto.testing.link import LinkConfig
    from pilot_proto.testing.pair import StreamPair
    from pilot_proto.trace import JsonLinesWriter, read_trace
    from pilot_proto.trace_plot import plot_series

    buf = io.StringIO()
    pair = StreamPair(link=LinkConfig(delay=0.01, loss=0.05), tracer=JsonLinesWriter(buf), seed=5)
    ca, cb = pair.connect()
    data = bytes(300_000)
    pair.send("a", ca, data)
    assert pair.run_until(lambda: pair.a.connection(ca).snd_una == len(data) + 1, max_time=120)
    assert pair.sides["b"].data(cb) == data
    trace = read_trace(buf.getvalue().splitlines())
    sack_acks = [r for r in trace.records if r["name"] == "packet_sent" and r.get("side") == "b" and r.get("len")]
    assert sack_acks, "5 % loss must make the receiver send SACK blocks"
    series = plot_series(trace)
    sender = next(v for k, v in series.items() if k.startswith("a/"))
    receiver = next(v for k, v in series.items() if k.startswith("b/"))
    assert "data" not in receiver
    resent = [r for r in trace.records if r["name"] == "retransmit" and r.get("side") == "a"]
    sent = [r for r in trace.records if r["name"] == "data_sent" and r.get("side") == "a"]
    assert resent and len(sender["data"]) == len(sent) + len(resent)
    assert max(v for _, v in sender["ack"]) == len(data)  # relative to the first data byte: all acknowledged
