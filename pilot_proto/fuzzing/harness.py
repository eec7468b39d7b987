"""Harness registry and the finding type every oracle raises."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["Finding", "Harness", "all_harnesses", "select"]


class Finding(AssertionError):
    """An oracle was broken.  ``kind`` is a short stable label (``crash``, ``roundtrip``, ``twin`` ...)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"[{kind}] {message}")


@dataclass(frozen=True)
class Harness:
    """One fuzz target.

    Attributes:
        name: ``family:target`` (``decoder:header:packet@draft``, ``machine:tunnel@draft`` ...).
        fuzz_one_input: runs one input; raises :class:`Finding` when an oracle breaks.  It may return a
            hashable *outcome* (an error code and field, or the accepted message type) that the
            built-in engine uses to keep inputs that reach new behaviour.
        seeds: a callable giving the seed corpus (valid or near-valid inputs).
        family: ``decoder``, ``diff`` or ``machine``.
        doc: one line for ``--list``.
    """

    name: str
    fuzz_one_input: Callable[[bytes], object]
    seeds: Callable[[], list[bytes]] = field(default=lambda: [b""], compare=False)
    family: str = "decoder"
    doc: str = ""

    @property
    def slug(self) -> str:
        """A file-name-safe form of the name (``decoder_header_packet_draft``)."""
        out = []
        for ch in self.name:
            out.append(ch if ch.isalnum() else "_")
        return "_".join(part for part in "".join(out).split("_") if part)


_CACHE: dict[str, Harness] | None = None


def all_harnesses() -> dict[str, Harness]:
    """Every harness, keyed by name (built once; decoders are discovered, so new formats join by themselves)."""
    global _CACHE
    if _CACHE is None:
        from pilot_proto.fuzzing import decoders, differential, machines

        found: dict[str, Harness] = {}
        for family in (decoders.harnesses(), differential.harnesses(), machines.harnesses()):
            for h in family:
                if h.name in found:
                    raise RuntimeError(f"two harnesses named {h.name}")
                found[h.name] = h
        _CACHE = found
    return _CACHE


def select(patterns: Iterable[str]) -> list[Harness]:
    """Harnesses whose name matches any glob (``decoder:*``, ``machine:tunnel*``) or equals a name / slug."""
    table = all_harnesses()
    out: list[Harness] = []
    for pattern in patterns:
        hits = [h for n, h in table.items() if fnmatch.fnmatchcase(n, pattern) or h.slug == pattern]
        if not hits:
            raise KeyError(pattern)
        out.extend(h for h in hits if h not in out)
    return out
