"""Registry of every wire decoder, found by convention.

Each public module of :mod:`pilot_proto.wire` that exports
``DECODERS: dict[str, Callable[[bytes], object]]`` contributes its decoders,
named ``"<module>:<key>"``.  A key names one reading of bytes, with the profile
after ``@`` where it matters (``"ipc:frame@go-interop"``).  A decoder takes
arbitrary bytes and either returns a value or raises a
:class:`~pilot_proto.errors.PilotError` -- the fuzz test
(``tests/test_decoders_fuzz.py``) holds every registered decoder to that.

New modules need no registration here.  A module whose ``DECODERS`` is some
other table (``beacon`` keeps a type-byte dispatch table under that name) is
adapted through its ``decode_<module>(data, profile)`` entry point, once per
profile, and listed by :func:`nonconforming_modules`; such a module without
that entry point is an error, so nothing is silently left out.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
import pkgutil
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pilot_proto.wire as _wire
from pilot_proto.profile import Profile
from pilot_proto.wire.address import Addr

__all__ = [
    "Decoder",
    "add_decode_command",
    "discover",
    "jsonable",
    "modules_without_decoders",
    "nonconforming_modules",
    "wire_modules",
]

Decoder = Callable[[bytes], object]


def wire_modules() -> dict[str, ModuleType]:
    """Every public module of :mod:`pilot_proto.wire` (private ``_*`` helpers and this registry excluded)."""
    out = {}
    for info in sorted(pkgutil.iter_modules(_wire.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "formats" or info.ispkg:
            continue
        out[info.name] = importlib.import_module(f"{_wire.__name__}.{info.name}")
    return out


def _conforms(table: object) -> bool:
    return isinstance(table, dict) and all(isinstance(k, str) and callable(v) for k, v in table.items())


def _adapt(name: str, module: ModuleType) -> dict[str, Decoder]:
    entry = getattr(module, f"decode_{name}", None)
    if not callable(entry):
        raise TypeError(
            f"pilot_proto.wire.{name}.DECODERS is not a dict[str, Callable[[bytes], object]] "
            f"and the module has no decode_{name}(data, profile) to adapt"
        )
    return {f"{name}@{p.value}": functools.partial(entry, profile=p) for p in Profile}


def _decoders_of(name: str, module: ModuleType) -> dict[str, Decoder]:
    table = getattr(module, "DECODERS", None)
    if table is None:
        return {}
    if _conforms(table):
        return dict(table)
    return _adapt(name, module)


def discover() -> dict[str, Decoder]:
    """All decoders, keyed ``"<module>:<key>"``, in module order."""
    out: dict[str, Decoder] = {}
    for name, module in wire_modules().items():
        for key, fn in _decoders_of(name, module).items():
            out[f"{name}:{key}"] = fn
    return out


def modules_without_decoders() -> list[str]:
    """Public wire modules that contribute nothing (helpers such as ``address`` or ``schemas``)."""
    return [name for name, module in wire_modules().items() if not _decoders_of(name, module)]


def nonconforming_modules() -> list[str]:
    """Modules whose ``DECODERS`` breaks the convention and are adapted via ``decode_<module>``."""
    return [name for name, module in wire_modules().items()
            if getattr(module, "DECODERS", None) is not None and not _conforms(module.DECODERS)]  # fmt: skip


def jsonable(value: Any) -> Any:
    """Neutral JSON form of a decoded message (bytes -> hex, Addr -> text, enums -> name)."""
    if isinstance(value, Addr):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {"type": type(value).__name__, **{k: jsonable(v) for k, v in value._asdict().items()}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def add_decode_command(sub: Any) -> None:
    """``pilot-proto decode NAME HEX`` (or ``pilot-proto decode --list``): run one registered decoder."""
    cmd = sub.add_parser("decode", help="decode hex bytes with any registered wire decoder")
    cmd.add_argument("name", nargs="?", help="decoder name, e.g. ipc:frame@go-interop (see --list)")
    cmd.add_argument("hex", nargs="?", default="", help="the bytes, in hex")
    cmd.add_argument("--list", action="store_true", help="list decoder names")
    cmd.set_defaults(func=_run_decode)


def _run_decode(args: Any) -> int:
    import json

    from pilot_proto.errors import PilotError

    decoders = discover()
    if args.list or not args.name:
        print("\n".join(decoders))
        return 0
    if args.name not in decoders:
        print(f"unknown decoder {args.name!r}; try --list")
        return 2
    try:
        value = decoders[args.name](bytes.fromhex(args.hex))
    except ValueError as exc:  # bad hex on the command line
        print(f"not hex: {exc}")
        return 2
    except PilotError as exc:
        print(json.dumps({"error": exc.to_dict()}, indent=2))
        return 1
    print(json.dumps(jsonable(value), indent=2, default=repr))
    return 0
