"""pytest plugin: requirement markers.

``@pytest.mark.req("PKT-010", "PKT-011")`` ties a test to requirement IDs in
``spec/requirements``.  A test that cites an ID the spec does not define
fails (it does not silently count as coverage).  ``--req PKT-010,TUN`` selects
tests by ID or ID prefix.
"""

from __future__ import annotations

from functools import cache

import pytest

from pilot_proto.spec import Requirement, SpecError, load_requirements


@cache
def _requirements() -> dict[str, Requirement] | str:
    try:
        return load_requirements()
    except SpecError as exc:
        return str(exc)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pilot-proto")
    group.addoption(
        "--req",
        action="store",
        default=None,
        help="run only tests citing these requirement IDs or ID prefixes (comma separated)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "req(*ids): requirement IDs from spec/requirements/ covered by this test")


def _cited(item: pytest.Item) -> list[str]:
    return [str(i) for m in item.iter_markers("req") for i in m.args]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.getoption("--req")
    if wanted:
        prefixes = [w.strip() for w in wanted.split(",") if w.strip()]
        keep = [it for it in items if any(c.startswith(p) for c in _cited(it) for p in prefixes)]
        deselected = [it for it in items if it not in keep]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
        items[:] = keep


def pytest_runtest_setup(item: pytest.Item) -> None:
    cited = _cited(item)
    if not cited:
        return
    reqs = _requirements()
    if isinstance(reqs, str):
        pytest.fail(f"test cites requirements but spec/requirements cannot be loaded: {reqs}", pytrace=False)
    unknown = [c for c in cited if c not in reqs]
    if unknown:
        pytest.fail(f"test cites unknown requirement ID(s): {', '.join(unknown)}", pytrace=False)
