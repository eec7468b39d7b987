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

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pilot_proto import DRAFT_NAME, __version__
from pilot_proto.errors import PilotError
from pilot_proto.profile import Profile

__all__ = ["Doc", "ExpectationMismatch", "expect", "group_profiles", "iter_tests", "make_doc", "run_vector"]

T = TypeVar("T")

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


class ExpectationMismatch(AssertionError):
    """The implementation's verdict on a vector differs from the verdict its generator states.

    Generators state every case's intended outcome (valid, or invalid with an error code) and
    refuse to write a file the implementation disagrees with, so a broken check can never
    rewrite an expectation (issue 13).
    """


def expect(label: str, run: Callable[[], T], error: str | None) -> T | None:
    """Run ``run`` for the vector ``label`` and insist on the stated outcome.

    ``error`` is ``None`` for a case meant to be accepted (the value is returned), else the
    :class:`~pilot_proto.errors.ErrorCode` value it must be refused with (``None`` is returned).
    Raises :class:`ExpectationMismatch` otherwise.
    """
    try:
        value = run()
    except PilotError as exc:
        if error is None:
            raise ExpectationMismatch(f"vector {label!r}: meant valid, implementation raises {exc.code.value}") from exc
        if exc.code.value != error:
            raise ExpectationMismatch(
                f"vector {label!r}: meant invalid ({error}), implementation raises {exc.code.value}"
            ) from exc
        return None
    if error is not None:
        raise ExpectationMismatch(f"vector {label!r}: meant invalid ({error}), implementation accepts it")
    return value


def iter_tests(doc: Doc) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Yield ``(group, test)`` pairs."""
    for group in doc.get("testGroups", []):
        for test in group.get("tests", []):
            yield group, test


def group_profiles(group: dict[str, Any]) -> list[Profile]:
    """The profiles a test group applies to: its ``"profile"`` param, or both when it is ``"any"``/absent."""
    name = group.get("profile", "any")
    return list(Profile) if name == "any" else [Profile.parse(name)]


def run_vector(test: dict[str, Any], label: str, decode: Callable[[], T]) -> tuple[T | None, list[str]]:
    """Run ``decode`` for one vector and judge the outcome against its ``result``/``error``.

    Returns ``(value, problems)``: ``value`` is ``None`` when the input was rejected (as
    expected or not); the caller compares a decoded ``value`` with the vector's fields.
    """
    tc = test["tcId"]
    try:
        value = decode()
    except PilotError as exc:
        if test["result"] != "invalid" or exc.code.value != test.get("error"):
            return None, [f"tcId {tc} ({label}): raised {exc.code.value}, expected {test['result']}"]
        return None, []
    if test["result"] == "invalid":
        return None, [f"tcId {tc} ({label}): accepted, expected {test['error']}"]
    return value, []
