"""Send buffer: the application's writes as a list of chunks addressed by absolute position (draft 8.5, 8.10).

Writes are kept as the ``bytes`` objects the application passed (small writes are
merged), so queuing is O(1) and cutting a segment copies at most one segment.
Reads locate a chunk by bisection; acknowledged chunks are released from the
front and the index lists are compacted rarely (amortised O(1)).
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["SendBuffer"]

_MERGE_BELOW = 16384


def _immutable_view(data: memoryview) -> bool:
    """A flat byte view of an immutable ``bytes`` object: safe to keep without copying."""
    return type(data.obj) is bytes and data.ndim == 1 and data.itemsize == 1 and data.contiguous


class SendBuffer:
    __slots__ = ("_chunks", "_head", "_starts", "end", "start")

    def __init__(self, start: int) -> None:
        self.start = start  # position of the first byte still held
        self.end = start  # position after the last byte written
        self._chunks: list[bytes | memoryview] = []
        self._starts: list[int] = []
        self._head = 0  # index of the first live chunk

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if not n:
            return
        chunks = self._chunks
        if len(chunks) > self._head and len(chunks[-1]) < _MERGE_BELOW and n < _MERGE_BELOW:
            chunks[-1] = bytes(chunks[-1]) + bytes(data)
        else:
            kept: bytes | memoryview
            if isinstance(data, memoryview) and _immutable_view(data):
                kept = data  # a view of bytes: a large write's piece is not copied (read() slices it)
            elif type(data) is bytes:
                kept = data
            else:
                kept = bytes(data)  # the application may reuse a mutable buffer: keep a copy
            chunks.append(kept)
            self._starts.append(self.end)
        self.end += n

    def read(self, pos: int, n: int) -> bytes:
        """``n`` bytes from absolute position ``pos`` (which must lie in ``[start, end - n]``)."""
        starts, chunks = self._starts, self._chunks
        i = bisect_right(starts, pos, self._head) - 1
        c = chunks[i]
        off = pos - starts[i]
        if off + n <= len(c):
            if isinstance(c, memoryview):
                return c[off : off + n].tobytes()
            return c if off == 0 and n == len(c) else c[off : off + n]
        parts = [c[off:]]
        got = len(c) - off
        while got < n:
            i += 1
            c = chunks[i]
            take = n - got
            parts.append(c if take >= len(c) else c[:take])
            got += len(parts[-1])
        return b"".join(parts)

    def release(self, upto: int) -> None:
        """Forget bytes before ``upto`` (they were acknowledged)."""
        if upto <= self.start:
            return
        upto = min(upto, self.end)
        self.start = upto
        starts, chunks = self._starts, self._chunks
        h = self._head
        last = len(chunks) - 1
        while h < last and starts[h + 1] <= upto:
            chunks[h] = b""
            h += 1
        if h == last and upto == self.end:
            chunks.clear()
            starts.clear()
            h = 0
        elif h > 64 and h * 2 > len(chunks):
            del chunks[:h]
            del starts[:h]
            h = 0
        self._head = h
