"""The Pilot Protocol conformance suite: ``pytest conformance/ --target=HOST:PORT`` judges any implementation.

The test modules live in :mod:`pilot_proto.conformance.suite` (package data, so an installed wheel runs
them with ``pilot-proto conformance``); ``conformance/`` in a clone is a thin entry point to the same
files.  :mod:`pilot_proto.conformance.plugin` holds the options, verdicts and the report;
:mod:`pilot_proto.conformance.harness` the scripted peer; :mod:`pilot_proto.conformance.builtin` our
own node as the default target.
"""

from __future__ import annotations

from pathlib import Path

from pilot_proto import __version__

__all__ = ["SUITE_DIR", "SUITE_VERSION"]

#: Version of the suite (the package version plus the suite's own revision of its test set).
SUITE_VERSION = f"{__version__}+suite.1"
SUITE_DIR = Path(__file__).resolve().parent / "suite"
