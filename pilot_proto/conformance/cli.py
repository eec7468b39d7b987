"""``pilot-proto conformance [pytest args]``: run the packaged suite from an installed wheel, no clone needed.

Everything after ``conformance`` goes to pytest unchanged (``--target``, ``--profile``, ``--report``,
``-k``, ``--junitxml`` ...).  pytest runs with the suite directory as its root and no ini file of the
current directory, so a project's own pytest settings cannot change the verdicts.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["add_conformance_command", "run"]


def add_conformance_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "conformance",
        help="run the conformance suite (default target: our own node on 127.0.0.1)",
        description="Runs the Pilot Protocol conformance suite under pytest; every further argument is passed to "
        "pytest (e.g. --target=127.0.0.1:4000 --profile=go-interop --report=report.json). Without --target the "
        "suite starts and tests the built-in node.",
        add_help=False,
        prefix_chars="+",  # every '-' argument belongs to pytest, including -h (pytest's help lists our options)
    )
    p.add_argument("pytest_args", nargs="*")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    return run(list(args.pytest_args))


def run(pytest_args: list[str]) -> int:
    import pytest

    from pilot_proto.conformance import SUITE_DIR

    argv = ["-c", os.devnull, "--rootdir", str(SUITE_DIR), "-p", "pilot_proto.conformance.plugin",
            "-p", "no:cacheprovider", str(SUITE_DIR), *pytest_args]  # fmt: skip
    return int(pytest.main(argv))
