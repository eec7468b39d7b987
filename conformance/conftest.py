"""``pytest conformance/ --target=HOST:PORT`` from a clone: collect the packaged suite.

The test modules live in ``pilot_proto/conformance/suite`` so an installed wheel can run them
(``pilot-proto conformance``); this directory only points pytest there.  The plugin is the same module
the ``pytest11`` entry point names, so it is registered once whichever way pytest found it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot_proto.conformance import SUITE_DIR

pytest_plugins = ["pilot_proto.conformance.plugin"]
HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    """Point every command-line path inside ``conformance/`` at the same path inside the packaged suite."""
    for n, arg in enumerate(config.args):
        path, sep, rest = arg.partition("::")
        try:
            rel = Path(config.invocation_params.dir, path).resolve().relative_to(HERE)
        except ValueError:
            continue
        if rel.name == "conftest.py":
            rel = Path()
        config.args[n] = str(SUITE_DIR / rel) + sep + rest
