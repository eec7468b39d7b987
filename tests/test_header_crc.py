"""The header codec's CRC-32 (draft 6.5) is zlib's CRC-32 whichever implementation computes it (PKT-010)."""

from __future__ import annotations

import random
import zlib

import pytest

from pilot_proto.wire import header
from pilot_proto.wire.header import CRC32_IMPLEMENTATION, checksum


@pytest.mark.req("PKT-010")
def test_hot_path_crc_equals_zlib() -> None:
    rng = random.Random(11)
    crc = header._crc32
    for size in [0, 1, 3, 4, 15, 16, 17, 30, 31, 63, 64, 65, 255, 256, 1500, 4096, 4130, 65535]:
        data = rng.randbytes(size)
        seed = rng.getrandbits(32)
        assert crc(data) == zlib.crc32(data)
        assert crc(data, seed) == zlib.crc32(data, seed)  # chained, as the codec chains header, zeros, payload
        assert crc(memoryview(data)) == zlib.crc32(data)
        assert crc(bytearray(data), seed) == zlib.crc32(data, seed)
    head, payload = rng.randbytes(30), rng.randbytes(4096)
    assert checksum(head, payload) == zlib.crc32(payload, zlib.crc32(b"\0\0\0\0", zlib.crc32(head)))


def test_the_implementation_is_named() -> None:
    assert CRC32_IMPLEMENTATION in ("isal", "zlib")
    assert (header._crc32 is zlib.crc32) == (CRC32_IMPLEMENTATION == "zlib")
