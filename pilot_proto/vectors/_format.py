"""Wycheproof-style vector documents (any language can read them without our code).

File shape::

    {"algorithm": ..., "schema": ..., "generatorVersion": ..., "numberOfTests": N,
     "header": [...], "notes": {FLAG: {"bugType": ..., "description": ...}},
     "testGroups": [{"type": ..., ...group params, "tests": [
         {"tcId": 1, "comment": ..., "flags": [...], "result": "valid"|"invalid", ...}]}]}

Binary fields are lowercase hex strings; invalid vectors carry ``"error"``
(an :class:`~pilot_proto.errors.ErrorCode` value).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pilot_proto import DRAFT_NAME, __version__

__all__ = ["Doc", "iter_tests", "make_doc"]

Doc = dict[str, Any]


def make_doc(
    algorithm: str,
    schema: str,
    groups: list[dict[str, Any]],
    *,
    header: list[str] | None = None,
    notes: dict[str, dict[str, str]] | None = None,
) -> Doc:
    """Assemble a vector document; tcIds are numbered 1..N across all groups."""
    tc = 0
    for group in groups:
        for test in group["tests"]:
            tc += 1
            test["tcId"] = tc
            test.setdefault("flags", [])
            # stable key order: tcId first, result last
            ordered = {"tcId": tc, "comment": test.pop("comment", "")}
            ordered.update({k: v for k, v in test.items() if k not in ("tcId", "result")})
            ordered["result"] = test["result"]
            test.clear()
            test.update(ordered)
    return {
        "algorithm": algorithm,
        "schema": schema,
        "generatorVersion": f"pilot-proto {__version__}",
        "source": DRAFT_NAME,
        "numberOfTests": tc,
        "header": header or [],
        "notes": notes or {},
        "testGroups": groups,
    }


def iter_tests(doc: Doc) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Yield ``(group, test)`` pairs."""
    for group in doc.get("testGroups", []):
        for test in group.get("tests", []):
            yield group, test
