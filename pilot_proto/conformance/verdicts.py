"""Conformance verdicts: pass / fail / unsupported / inconclusive (a skip is never a pass).

A test raises :class:`Unsupported` when the target lacks an optional feature the test needs (no echo
service, no answer to pings, no PILA identity to test with) and :class:`Inconclusive` when the
observation could not be made (the target went quiet, a precondition could not be set up); an ordinary
assertion failure is ``fail``.  Both are pytest skips underneath (so pytest stops the test cleanly);
the plugin records them with their own verdict and never counts them as passes.
"""

from __future__ import annotations

import enum

import pytest

__all__ = ["Inconclusive", "NotApplicable", "Unsupported", "Verdict"]

_Skipped: type[BaseException] = pytest.skip.Exception


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    UNSUPPORTED = "unsupported"
    INCONCLUSIVE = "inconclusive"


class Unsupported(_Skipped):  # type: ignore[misc,valid-type]
    """The target does not implement an optional feature this test needs (verdict ``unsupported``)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, pytrace=False)


class NotApplicable(Unsupported):
    """The requirement does not apply under the selected profile (verdict ``unsupported``, says why)."""


class Inconclusive(_Skipped):  # type: ignore[misc,valid-type]
    """The test could not make its observation (verdict ``inconclusive``)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, pytrace=False)
