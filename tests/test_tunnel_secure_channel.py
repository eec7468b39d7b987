"""Port-443 secure channel crypto (draft 10.5, 11.4)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import ErrorCode, PilotError, RemoteProtocolError
from pilot_proto.profile import Profile
from pilot_proto.testing.keys import InsecureDeterministicRng
from pilot_proto.tunnel.kdf import derive_secure_key, x25519_shared_secret
from pilot_proto.tunnel.secure_channel import SecureChannel, SecureState
from pilot_proto.wire.secure import Role, decode_record


def _pair(profile: Profile = Profile.DRAFT) -> tuple[SecureChannel, SecureChannel]:
    client = SecureChannel(Role.CLIENT, InsecureDeterministicRng("c"), profile)
    server = SecureChannel(Role.SERVER, InsecureDeterministicRng("s"), profile)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    return client, server


@pytest.mark.req("SVC-054", "SEC-014", "SEC-009")
def test_handshake_is_client_key_then_server_key_and_uses_secure_info() -> None:
    client = SecureChannel(Role.CLIENT, InsecureDeterministicRng("c"))
    server = SecureChannel(Role.SERVER, InsecureDeterministicRng("s"))
    assert server.data_to_send() == b""  # the server speaks second
    hello = client.data_to_send()
    assert hello == client.public_key and len(hello) == 32
    assert server.receive_data(hello) == []
    assert server.data_to_send() == server.public_key
    client.receive_data(server.public_key)
    assert client.state is server.state is SecureState.OPEN
    client.send(b"hi")
    rec = decode_record(client.data_to_send())
    c_priv = X25519PrivateKey.from_private_bytes(InsecureDeterministicRng("c")(32))
    key = bytes(derive_secure_key(x25519_shared_secret(c_priv, server.public_key)))
    assert AESGCM(key).decrypt(rec.nonce, rec.sealed, rec.nonce[:4]) == b"hi"


@pytest.mark.req("NONCE-007", "NONCE-008", "SEC-012", "SEC-013")
@pytest.mark.parametrize(("profile", "first"), [(Profile.DRAFT, 0), (Profile.GO_INTEROP, 1)])
def test_record_nonces_use_role_prefix_and_profile_counter(profile: Profile, first: int) -> None:
    client, server = _pair(profile)
    for i in range(3):
        client.send(bytes([i]))
        server.send(bytes([i]))
    c_out, s_out = client.data_to_send(), server.data_to_send()
    c_recs = [decode_record(c_out[i * 33 : (i + 1) * 33]) for i in range(3)]
    s_recs = [decode_record(s_out[i * 33 : (i + 1) * 33]) for i in range(3)]
    assert [r.nonce for r in c_recs] == [bytes.fromhex("00000002") + (first + i).to_bytes(8, "big") for i in range(3)]
    assert [r.nonce for r in s_recs] == [bytes.fromhex("00000001") + (first + i).to_bytes(8, "big") for i in range(3)]


@pytest.mark.req("SEC-013", "NONCE-007")
def test_reflected_record_is_refused() -> None:
    client, _ = _pair()
    client.send(b"to server")
    record = client.data_to_send()
    with pytest.raises(RemoteProtocolError) as info:
        client.receive_data(record)  # our own record bounced back
    assert info.value.code is ErrorCode.BAD_VALUE
    assert client.state is SecureState.FAILED


@pytest.mark.req("SEC-013", "NONCE-008")
@pytest.mark.parametrize("attack", ["tamper", "replay"])
def test_tampered_or_replayed_record_fails(attack: str) -> None:
    client, server = _pair()
    client.send(b"one")
    rec = client.data_to_send()
    assert server.receive_data(rec) == [b"one"]
    bad = bytearray(rec)
    if attack == "tamper":
        client.send(b"two")
        bad = bytearray(client.data_to_send())
        bad[-1] ^= 1
    with pytest.raises(PilotError) as info:
        server.receive_data(bytes(bad))
    assert info.value.code is (ErrorCode.AUTH_FAILED if attack == "tamper" else ErrorCode.REPLAY)


@pytest.mark.req("NONCE-009", "SEC-014")
@settings(max_examples=30, derandomize=True, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=6), st.integers(1, 50))
def test_records_survive_arbitrary_stream_chunking(messages: list[bytes], chunk: int) -> None:
    client = SecureChannel(Role.CLIENT, InsecureDeterministicRng("c2"))
    server = SecureChannel(Role.SERVER, InsecureDeterministicRng("s2"))
    stream = client.data_to_send()
    got: list[bytes] = []
    server.receive_data(stream)
    client.receive_data(server.data_to_send())
    for m in messages:
        client.send(m)
    data = client.data_to_send()
    for i in range(0, len(data), chunk):
        got += server.receive_data(data[i : i + chunk])
    assert got == messages
    other = SecureChannel(Role.CLIENT, InsecureDeterministicRng("c3"))
    assert other.public_key != client.public_key  # each connection has its own key
