"""Scapy layers for the Pilot header and the tunnel frames, derived from the ``construct`` schemas.

The field lists are not written by hand: :func:`fields_from_schema` walks a schema of
:mod:`pilot_proto.wire.schemas` and maps each construct to a scapy field (``Int16ub`` ->
``ShortField``, the version/flags ``BitStruct`` -> ``BitField`` + ``FlagsField``, ``Enum`` ->
``ByteEnumField``, ``Bytes(n)`` -> ``StrFixedLenField``, nested address structs -> ``<name>_network`` /
``<name>_node`` ...).  Zero-width rules (profile checks, ``Require``) have no scapy counterpart.

* :class:`Pilot` -- the 34-byte header (draft 6); ``length`` and ``checksum`` left as ``None`` are filled
  in by ``post_build`` (Payload Length, CRC-32 over header-with-zeroed-checksum || payload).
* :class:`PILT`, :class:`PILS`, :class:`PILK`, :class:`PILA`, :class:`PILP` -- tunnel frames (draft 7);
  a PILT's payload dissects as :class:`Pilot`.  :class:`TunnelFrame` picks the class by magic.

Only ``scapy.packet`` and ``scapy.fields`` are imported (no ``scapy.all``: no sockets, no routes).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, ClassVar

import construct as c
from scapy.fields import (
    BitField,
    ByteEnumField,
    ByteField,
    FlagsField,
    IntField,
    ShortField,
    StrField,
    StrFixedLenField,
    XIntField,
)
from scapy.packet import Packet, Raw, bind_layers

from pilot_proto.wire import schemas

__all__ = [
    "FRAME_LAYERS",
    "PILA",
    "PILK",
    "PILP",
    "PILS",
    "PILT",
    "Pilot",
    "TunnelFrame",
    "fields_from_schema",
]


class _OptionalIntField(IntField):
    """A u32 that may be absent at the end of the frame (Go's 4-byte PILP, erratum E-PILP-1)."""

    def addfield(self, pkt: Any, s: bytes, val: Any) -> bytes:
        return s if val is None else bytes(super().addfield(pkt, s, val))

    def getfield(self, pkt: Any, s: bytes) -> tuple[bytes, Any]:
        if len(s) < 4:
            return s, None
        return super().getfield(pkt, s)


_FORMATS = {">B": ByteField, ">H": ShortField, ">L": IntField, ">I": IntField}
#: Fields whose default is ``None`` so ``post_build`` computes them.
_COMPUTED = {"length", "checksum"}


def _unwrap(sc: c.Construct) -> tuple[str | None, c.Construct]:
    name = None
    while isinstance(sc, c.Renamed):
        name = name or sc.name
        sc = sc.subcon
    return name, sc


def fields_from_schema(schema: c.Construct, *, skip: frozenset[str] = frozenset(), prefix: str = "") -> list[Any]:
    """Scapy ``fields_desc`` for a construct ``Struct`` (or ``BitStruct``), in wire order.

    ``skip`` names fields to leave out (e.g. a greedy field that becomes the scapy payload).
    Raises ``TypeError`` for a construct this mapping does not know, so a schema change cannot
    silently produce a wrong layer.
    """
    _, struct_ = _unwrap(schema)
    if isinstance(struct_, c.Transformed | c.Restreamed):  # BitStruct
        struct_ = struct_.subcon
    out: list[Any] = []
    for sub in struct_.subcons:
        name, sc = _unwrap(sub)
        if name is None or name.startswith("_") or name in skip:
            continue  # zero-width rules (If/Require/Checksum) and internal markers
        full = prefix + name
        default = None if name in _COMPUTED else 0
        out.extend(_field(full, sc, default))
    return out


def _field(name: str, sc: c.Construct, default: Any) -> list[Any]:
    if isinstance(sc, c.Rebuild | c.Default):
        return _field(name, sc.subcon, None)
    if isinstance(sc, c.FormatField) and sc.fmtstr in _FORMATS:
        if name.endswith("checksum"):
            return [XIntField(name, default)]
        return [_FORMATS[sc.fmtstr](name, default)]
    if isinstance(sc, c.Enum) and isinstance(sc.subcon, c.FormatField) and sc.subcon.fmtstr == ">B":
        return [ByteEnumField(name, default if default is not None else 0, dict(sc.decmapping))]
    if isinstance(sc, c.FlagsEnum) and isinstance(sc.subcon, c.BitsInteger):
        width = sc.subcon.length
        names = [next((k for k, v in sc.flags.items() if v == 1 << i), f"bit{i}") for i in range(width)]
        return [FlagsField(name, 0, width, names)]
    if isinstance(sc, c.BitsInteger) and isinstance(sc.length, int):
        return [BitField(name, 1 if name.endswith("version") else 0, sc.length)]
    if isinstance(sc, c.Transformed | c.Restreamed | c.Struct):
        return fields_from_schema(sc, prefix="" if isinstance(sc, c.Transformed | c.Restreamed) else name + "_")
    if isinstance(sc, c.Bytes) and isinstance(sc.length, int):
        return [StrFixedLenField(name, b"\x00" * sc.length, sc.length)]
    if sc is c.GreedyBytes:
        return [StrField(name, b"")]
    if isinstance(sc, c.IfThenElse):  # profile-dependent: the go-interop branch accepts both forms
        return _field(name, sc.elsesubcon, default)
    if isinstance(sc, c.Select) and len(sc.subcons) == 2 and isinstance(sc.subcons[1], c.Terminated.__class__):
        inner = sc.subcons[0]
        if isinstance(inner, c.FormatField) and inner.fmtstr in (">I", ">L"):
            return [_OptionalIntField(name, None)]
    raise TypeError(f"no scapy mapping for {name}: {sc!r}")


# -- the Pilot header ------------------------------------------------------------------------------------------


def _pilot_post_build(self: Any, pkt: bytes, pay: bytes) -> bytes:
    if self.length is None:
        pkt = pkt[:2] + struct.pack(">H", len(pay)) + pkt[4:]
    if self.checksum is None:
        crc = zlib.crc32(pay, zlib.crc32(b"\x00\x00\x00\x00", zlib.crc32(pkt[:30])))
        pkt = pkt[:30] + struct.pack(">I", crc) + pkt[34:]
    return pkt + pay


def _pilot_extract_padding(self: Any, s: bytes) -> tuple[bytes, bytes]:
    n = self.length if self.length is not None else len(s)
    return s[:n], s[n:]


Pilot: Any = type(
    "Pilot",
    (Packet,),
    {
        "__doc__": "Pilot Protocol header (draft 6), fields derived from schemas.HEADER.",
        "name": "Pilot",
        "fields_desc": fields_from_schema(schemas.HEADER),
        "post_build": _pilot_post_build,
        "extract_padding": _pilot_extract_padding,
    },
)

# -- tunnel frames ------------------------------------------------------------------------------------------------


class _FrameDispatch(Packet):
    """Base of the frame layers: ``TunnelFrame(raw)`` dissects with the class named by the magic."""

    name = "TunnelFrame"
    fields_desc: ClassVar[list[Any]] = [StrFixedLenField("magic", b"PILT", 4)]

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> Any:
        if _pkt and len(_pkt) >= 4:
            return FRAME_LAYERS.get(bytes(_pkt[:4]), cls)
        return cls


TunnelFrame: Any = _FrameDispatch


def _frame_layer(magic: str, body: c.Construct, skip: frozenset[str] = frozenset()) -> Any:
    fields = [StrFixedLenField("magic", magic.encode(), 4), *fields_from_schema(body, skip=skip)]
    return type(
        magic,
        (Packet,),
        {
            "__doc__": f"{magic} tunnel frame, fields derived from schemas.{magic}.",
            "name": magic,
            "fields_desc": fields,
        },
    )


PILT: Any = _frame_layer("PILT", schemas.PILT, skip=frozenset({"packet"}))
PILS: Any = _frame_layer("PILS", schemas.PILS)
PILK: Any = _frame_layer("PILK", schemas.PILK)
PILA: Any = _frame_layer("PILA", schemas.PILA)
PILP: Any = _frame_layer("PILP", schemas.PILP)

#: Frame class by 4-byte magic.
FRAME_LAYERS: dict[bytes, Any] = {b"PILT": PILT, b"PILS": PILS, b"PILK": PILK, b"PILA": PILA, b"PILP": PILP}

bind_layers(PILT, Pilot)
bind_layers(Pilot, Raw)
