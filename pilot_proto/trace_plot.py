"""Draw a session trace: sequence numbers and congestion window over time.

Needs matplotlib, the optional ``plot`` extra (``pip install "pilot-proto[plot]"``);
it is imported only when a plot is drawn, so the rest of the package never
depends on it.  Uses the non-interactive Agg backend and writes a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pilot_proto.trace import PACKET_RECEIVED, PACKET_SENT, Trace

__all__ = ["PlotUnavailable", "plot_trace"]


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


_DATA_RECORDS = frozenset({"data_sent", "retransmit"})


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(
            'trace plotting needs matplotlib: pip install "pilot-proto[plot]" (or pip install matplotlib)'
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


Points = list[tuple[float, float]]


def plot_series(trace: Trace, conn: int | str | None = None) -> dict[str, dict[str, Points]]:
    """What :func:`plot_trace` draws, without matplotlib: ``{"side/conn": {"data": ..., "ack": ..., "cwnd": ...}}``.

    Sequence values are relative to the connection's first one.  The connection's own records
    (stream positions) are preferred, since a wire packet with a payload may be a SACK-bearing ACK
    rather than data; a trace of wire packets only (e.g. from another runtime) falls back to them.
    """
    groups: dict[tuple[str, int | str], list[dict[str, Any]]] = {}
    for r in trace.records:
        if conn is None or r["conn"] == conn:
            groups.setdefault((str(r.get("side") or ""), r["conn"]), []).append(r)
    wire_only = not any(r["name"] in _DATA_RECORDS or r["name"] == "ack" for r in trace.records)
    out: dict[str, dict[str, Points]] = {}
    for (side, c), records in groups.items():
        label = f"{side}/{c}" if side else f"conn {c}"
        if wire_only:
            sent = [(r["time"], r["seq"]) for r in records if r["name"] == PACKET_SENT and r.get("seq") is not None
                    and r.get("len")]  # fmt: skip
            acks = [(r["time"], r["ack"]) for r in records if r["name"] == PACKET_RECEIVED and r.get("ack") is not None
                    and r.get("flags") != "SYN|ACK"]  # fmt: skip
        else:
            sent = [(r["time"], r["seq"]) for r in records if r["name"] in _DATA_RECORDS and r.get("seq") is not None]
            acks = [(r["time"], r["snd_una"]) for r in records if r["name"] == "ack" and r.get("snd_una") is not None]
        base = sent[0][1] if sent else (acks[0][1] if acks else 0)
        series: dict[str, Points] = {}
        if sent:
            series["data"] = [(t, (v - base) % 2**32) for t, v in sent]
        if acks:
            series["ack"] = [(t, (v - base) % 2**32) for t, v in acks]
        for key in ("cwnd", "ssthresh", "bytes_in_flight"):
            points = [(r["time"], r[key]) for r in records if r.get(key) is not None and r[key] < 2**31]
            if points:
                series[key] = points
        if series:
            out[label] = series
    return out


def plot_trace(trace: Trace, out: str | Path, *, conn: int | str | None = None, title: str | None = None) -> Path:
    """Write a PNG (or any format matplotlib infers from ``out``) of ``trace``.

    Top panel: sequence numbers of sent data segments (retransmissions show as
    points below the rising line) and the cumulative ACK, per connection.
    Bottom panel: cwnd, ssthresh and bytes in flight.  ``conn`` limits the plot
    to one connection.
    """
    series = plot_series(trace, conn)
    if not series:
        raise ValueError("the trace has no sequence or congestion data to plot" + (f" for conn {conn}" if conn else ""))
    plt = _pyplot()
    fig, (ax_seq, ax_cwnd) = plt.subplots(2, 1, sharex=True, figsize=(10, 7))
    for label, lines in series.items():
        if "data" in lines:
            ax_seq.scatter(*zip(*lines["data"], strict=True), s=4, label=f"{label} data")
        if "ack" in lines:
            ax_seq.step(*zip(*lines["ack"], strict=True), where="post", linewidth=0.8, label=f"{label} ack")
        for key, style in (("cwnd", "-"), ("ssthresh", "--"), ("bytes_in_flight", ":")):
            if key in lines:
                ax_cwnd.step(*zip(*lines[key], strict=True), style, where="post", label=f"{label} {key}")
    ax_seq.set_ylabel("sequence number (relative)")
    ax_cwnd.set_ylabel("bytes")
    ax_cwnd.set_xlabel("time (s)")
    for ax in (ax_seq, ax_cwnd):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    fig.suptitle(title or trace.header.get("title") or "pilot-proto session trace")
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def add_trace_command(sub: Any) -> None:
    """Register ``pilot-proto trace plot TRACE -o OUT [--conn N]`` on an argparse subparsers object."""
    trace = sub.add_parser("trace", help="session traces (JSON lines)").add_subparsers(dest="action", required=True)
    plot = trace.add_parser("plot", help="draw sequence numbers and cwnd over time (needs the 'plot' extra)")
    plot.add_argument("trace", help="trace file written by pilot_proto.trace.JsonLinesWriter")
    plot.add_argument("-o", "--out", required=True, help="output image (format from the extension, e.g. .png)")
    plot.add_argument("--conn", help="only this connection ID")
    plot.add_argument("--title", help="figure title (default: the trace header's title)")
    plot.set_defaults(func=_cmd_trace_plot)


def _cmd_trace_plot(args: Any) -> int:
    import sys

    from pilot_proto.errors import PilotError
    from pilot_proto.trace import read_trace_file

    try:
        trace = read_trace_file(args.trace)
        raw: str | None = args.conn
        conn: int | str | None = int(raw) if raw is not None and raw.isdigit() else raw
        path = plot_trace(trace, args.out, conn=conn, title=args.title)
    except (OSError, PilotError, ValueError, PlotUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({len(trace.records)} records)")
    return 0
