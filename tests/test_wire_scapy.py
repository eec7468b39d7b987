"""Scapy layers derived from the construct schemas agree with our codecs byte for byte and field for field."""

from __future__ import annotations

import construct as c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.wire import schemas
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import (
    AuthKeyExchangeFrame,
    EncryptedFrame,
    Frame,
    KeyExchangeFrame,
    PlaintextFrame,
    PunchFrame,
    encode_frame,
)
from pilot_proto.wire.header import Packet, decode_packet, encode_packet
from pilot_proto.wire.scapy_layers import PILA, PILK, PILP, PILS, PILT, Pilot, TunnelFrame, fields_from_schema

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
k32 = st.binary(min_size=32, max_size=32)

packets = st.builds(
    Packet,
    flags=st.integers(0, 15),
    protocol=st.integers(0, 255),
    src=st.builds(Addr, u16, u32),
    dst=st.builds(Addr, u16, u32),
    src_port=u16,
    dst_port=u16,
    seq=u32,
    ack=u32,
    window=u16,
    payload=st.binary(max_size=300),
    version=st.integers(0, 15),
)


def _scapy_fields(pkt: Packet) -> dict[str, int]:
    return {
        "version": pkt.version,
        "flags": pkt.flags,
        "protocol": pkt.protocol,
        "src_network": pkt.src.network,
        "src_node": pkt.src.node,
        "dst_network": pkt.dst.network,
        "dst_node": pkt.dst.node,
        "src_port": pkt.src_port,
        "dst_port": pkt.dst_port,
        "seq": pkt.seq,
        "ack": pkt.ack,
        "window": pkt.window,
    }


@pytest.mark.req("PKT-005", "PKT-006", "PKT-020", "PKT-021", "PKT-002")
@SETTINGS
@given(packets)
def test_scapy_build_equals_codec(pkt: Packet) -> None:
    layer = Pilot(**_scapy_fields(pkt))
    if pkt.payload:
        layer = layer / pkt.payload
    assert bytes(layer) == encode_packet(pkt)


@pytest.mark.req("PKT-005", "PKT-006")
@SETTINGS
@given(packets)
def test_scapy_dissection_equals_codec(pkt: Packet) -> None:
    raw = encode_packet(pkt)
    ours = decode_packet(raw, check_version=False)
    layer = Pilot(raw)
    got = {k: int(layer.getfieldval(k)) for k in _scapy_fields(pkt)}
    assert got == _scapy_fields(ours)
    assert (layer.length, layer.checksum) == (len(ours.payload), ours.checksum)
    assert bytes(layer.payload) == ours.payload


frames = st.one_of(
    st.builds(EncryptedFrame, u32, st.binary(min_size=12, max_size=12), st.binary(min_size=16, max_size=100)),
    st.builds(KeyExchangeFrame, u32, k32),
    st.builds(AuthKeyExchangeFrame, u32, k32, k32, st.binary(min_size=64, max_size=64), st.binary(max_size=8)),
    st.builds(PunchFrame, st.one_of(st.none(), u32)),
)


@pytest.mark.req("TUN-003", "TUN-004", "TUN-005", "TUN-006", "TUN-027", "TUN-023")
@SETTINGS
@given(frames)
def test_scapy_frames_build_and_dissect(frame: Frame) -> None:
    raw = encode_frame(frame)
    cls = {EncryptedFrame: PILS, KeyExchangeFrame: PILK, AuthKeyExchangeFrame: PILA, PunchFrame: PILP}[type(frame)]
    assert bytes(cls(**frame._asdict())) == raw
    layer = TunnelFrame(raw)
    assert isinstance(layer, cls)
    assert {k: layer.getfieldval(k) for k in frame._fields} == frame._asdict()


@pytest.mark.req("TUN-002", "TUN-011")
@SETTINGS
@given(packets)
def test_scapy_pilt_carries_a_pilot_layer(pkt: Packet) -> None:
    raw = encode_frame(PlaintextFrame(encode_packet(pkt)))
    assert bytes(PILT() / Pilot(**_scapy_fields(pkt)) / pkt.payload) == raw
    layer = TunnelFrame(raw)
    assert isinstance(layer, PILT) and layer.magic == b"PILT"
    assert int(layer[Pilot].dst_node) == pkt.dst.node


def test_layers_follow_the_schemas() -> None:
    """The field names come from the schemas; an unknown construct is refused rather than guessed."""
    assert [f.name for f in Pilot.fields_desc] == [
        "version", "flags", "protocol", "length", "src_network", "src_node", "dst_network", "dst_node",
        "src_port", "dst_port", "seq", "ack", "window", "checksum",
    ]  # fmt: skip
    assert [f.name for f in PILA.fields_desc] == [
        "magic",
        "sender",
        "x25519_public",
        "ed25519_public",
        "signature",
        "trailer",
    ]
    with pytest.raises(TypeError):
        fields_from_schema(c.Struct("x" / c.Float32b))
    assert len(fields_from_schema(schemas.ADDRESS)) == 2
