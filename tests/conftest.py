"""Hypothesis profiles for the test suite (issue 13).

* ``quick`` (default): Hypothesis' defaults without a deadline; tests that set their own
  ``@settings(max_examples=..., derandomize=True)`` keep them, so the default suite stays fast and
  reproducible.
* ``deep``: every property test runs ``PILOT_HYPOTHESIS_DEEP_FACTOR`` (default 20) times its
  examples, NOT derandomized, so each run explores new cases; failures are saved in the local
  ``.hypothesis`` database and replayed first on the next run.

Select with ``PILOT_HYPOTHESIS_PROFILE=deep`` or Hypothesis' own ``--hypothesis-profile=deep``::

    PILOT_HYPOTHESIS_PROFILE=deep python -m pytest -q -p no:cacheprovider tests

A property that fails under ``deep`` becomes an explicit regression test (``@example`` or a plain test).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

DEEP_FACTOR = int(os.environ.get("PILOT_HYPOTHESIS_DEEP_FACTOR", "20"))

settings.register_profile("quick", deadline=None)
settings.register_profile("deep", deadline=None, derandomize=False, max_examples=100 * DEEP_FACTOR)
settings.load_profile(os.environ.get("PILOT_HYPOTHESIS_PROFILE", "quick"))


def _deepen(current: settings) -> settings:
    return settings(current, max_examples=current.max_examples * DEEP_FACTOR, derandomize=False, deadline=None)


def pytest_report_header(config: pytest.Config) -> str:
    name = settings.get_current_profile_name()
    extra = f" (x{DEEP_FACTOR} examples, randomized)" if name == "deep" else ""
    return f"hypothesis profile: {name}{extra}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``deep``, scale the explicit settings each property test carries (they override profiles)."""
    if settings.get_current_profile_name() != "deep":
        return
    done: set[int] = set()
    for item in items:
        fn = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
        current = getattr(fn, "_hypothesis_internal_use_settings", None)
        if current is not None and id(fn) not in done:
            fn._hypothesis_internal_use_settings = _deepen(current)  # type: ignore[union-attr]
            done.add(id(fn))
        cls = getattr(item, "cls", None)
        machine_settings = getattr(cls, "settings", None)
        if isinstance(machine_settings, settings) and id(cls) not in done:  # RuleBasedStateMachine.TestCase
            cls.settings = _deepen(machine_settings)  # type: ignore[union-attr]
            done.add(id(cls))
