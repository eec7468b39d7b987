"""Receive-side reassembly: in-order fast path plus a bounded out-of-order store (draft 8.5.2, 8.6).

Positions are absolute (unwrapped) byte positions, see :mod:`pilot_proto.stream.seq`.
Out-of-order data is kept as sorted, non-overlapping ranges; overlapping or
duplicate input is trimmed so a byte is stored (and later delivered) once.
The caller bounds what it inserts by the advertised window.
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["Reassembly"]


class Reassembly:
    __slots__ = ("_data", "_starts", "ooo_bytes", "rcv_nxt")

    def __init__(self, rcv_nxt: int) -> None:
        self.rcv_nxt = rcv_nxt
        self._starts: list[int] = []
        self._data: list[bytes] = []
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

    def blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` merged ``(left, right_exclusive)`` ranges, lowest first (Go's choice)."""
        out: list[tuple[int, int]] = []
        cur_s = cur_e = -1
        for s, d in zip(self._starts, self._data, strict=True):
            e = s + len(d)
            if s == cur_e:
                cur_e = e
                continue
            if cur_e >= 0:
                out.append((cur_s, cur_e))
                if len(out) == limit:
                    return out
            cur_s, cur_e = s, e
        if cur_e >= 0:
            out.append((cur_s, cur_e))
        return out[:limit]
