"""Receive-side reassembly: in-order fast path plus a bounded out-of-order store (draft 8.5.2, 8.6).

Positions are absolute (unwrapped) byte positions, see :mod:`pilot_proto.stream.seq`.
Out-of-order data is kept as sorted, non-overlapping ranges; overlapping or
duplicate input is trimmed so a byte is stored (and later delivered) once.
The caller bounds what it inserts by the advertised window.

Beside the stored pieces, the merged runs they form (what SACK reports) are kept up
to date on every insert and drain, so building an ACK's SACK blocks costs O(blocks)
rather than a walk over every held segment.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

__all__ = ["Reassembly"]


class Reassembly:
    __slots__ = ("_data", "_run_ends", "_run_starts", "_starts", "ooo_bytes", "rcv_nxt")

    def __init__(self, rcv_nxt: int) -> None:
        self.rcv_nxt = rcv_nxt
        self._starts: list[int] = []
        self._data: list[bytes] = []
        # the union of the stored pieces as sorted, disjoint, non-adjacent runs [start, end)
        self._run_starts: list[int] = []
        self._run_ends: list[int] = []
        self.ooo_bytes = 0

    @property
    def ooo_segments(self) -> int:
        return len(self._starts)

    @property
    def has_gap(self) -> bool:
        return bool(self._starts)

    def add(self, start: int, data: bytes) -> bytes:
        """Insert ``data`` at ``start``; return the bytes that became deliverable in order (maybe empty)."""
        end = start + len(data)
        nxt = self.rcv_nxt
        if end <= nxt:
            return b""
        if start < nxt:
            data = data[nxt - start :]
            start = nxt
        if start == nxt:
            if not self._starts:
                self.rcv_nxt = end
                return data
            return self._drain(data, end)
        self._insert(start, end, data)
        return b""

    def _drain(self, data: bytes, end: int) -> bytes:
        chunks = [data]
        starts, datas = self._starts, self._data
        i = 0
        while i < len(starts) and starts[i] <= end:
            s, d = starts[i], datas[i]
            e = s + len(d)
            self.ooo_bytes -= len(d)
            if e > end:
                chunks.append(d[end - s :])
                end = e
            i += 1
        del starts[:i]
        del datas[:i]
        # every run that starts at or before the new rcv_nxt was consumed whole (its pieces are contiguous)
        k = bisect_right(self._run_starts, end)
        del self._run_starts[:k]
        del self._run_ends[:k]
        self.rcv_nxt = end
        return b"".join(chunks)

    def _insert(self, start: int, end: int, data: bytes) -> None:
        starts, datas = self._starts, self._data
        i = bisect_right(starts, start)
        if i:
            ps = starts[i - 1]
            pe = ps + len(datas[i - 1])
            if pe >= end:
                return  # fully covered already
            if pe > start:
                data = data[pe - start :]
                start = pe
        # drop or trim following ranges that the new one overlaps
        while i < len(starts) and starts[i] < end:
            ns = starts[i]
            ne = ns + len(datas[i])
            if ne <= end:
                self.ooo_bytes -= ne - ns
                del starts[i]
                del datas[i]
            else:
                data = data[: ns - start]
                end = ns
                break
        if end > start:
            starts.insert(i, start)
            datas.insert(i, data)
            self.ooo_bytes += end - start
            self._add_run(start, end)

    def _add_run(self, start: int, end: int) -> None:
        """Union ``[start, end)`` into the runs, merging every run it overlaps or touches."""
        rs, re_ = self._run_starts, self._run_ends
        j = bisect_left(re_, start)  # first run ending at or after start
        k = bisect_right(rs, end)  # runs from j up to k touch [start, end)
        if j < k:
            rs[j:k] = [min(start, rs[j])]
            re_[j:k] = [max(end, re_[k - 1])]
        else:
            rs.insert(j, start)
            re_.insert(j, end)

    def blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` merged ``(left, right_exclusive)`` ranges, lowest first (Go's choice)."""
        return list(zip(self._run_starts[:limit], self._run_ends[:limit], strict=True))
