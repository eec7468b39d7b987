"""Type stub for the optional C accelerator ``_pilsc.c`` (see its header comment and pilot_proto.tunnel.aead)."""

from typing_extensions import Buffer

OPENSSL_VERSION: str
#: SHA-256 (hex) of the _pilsc.c this was built from, set by setup.py; "" when built another way.
SOURCE_SHA256: str

class PilsKey:
    """AES-256-GCM encrypt and decrypt contexts keyed once with one 32-byte PILS session key."""

    def __init__(self, key: Buffer) -> None: ...
    def seal(self, head: bytes, prefix: bytes, counter: int, packet: Buffer, /) -> bytes: ...
    def open_frame(self, frame: bytes, head: bytes, prefix: bytes, expected: int, /) -> bytes | None: ...
    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes, prefix: bytes, expected: int, /) -> bytes | None: ...
