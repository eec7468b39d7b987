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


class _Mistake(Exception):
    """A bad value for one of the suite's own options, caught before pytest starts."""


def _check_options(pytest_args: list[str]) -> None:
    """One clear line for the mistakes users make most with the suite's options (pytest's own options stay
    pytest's: its usage errors are its own multi-line text and exit status 4)."""
    from pilot_proto.conformance.harness import parse_endpoint

    def value(i: int, arg: str, name: str) -> str | None:
        if arg == name:
            if i + 1 >= len(pytest_args):
                raise _Mistake(f"{name} needs a value")
            return pytest_args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        return None

    for i, arg in enumerate(pytest_args):
        if (v := value(i, arg, "--profile")) is not None and v not in ("draft", "go-interop"):
            raise _Mistake(f"--profile must be draft or go-interop, not {v!r}")
        if (v := value(i, arg, "--timeout-scale")) is not None:
            try:
                ok = float(v) > 0
            except ValueError:
                ok = False
            if not ok:
                raise _Mistake(f"--timeout-scale must be a number above 0, not {v!r}")
        if (v := value(i, arg, "--seed")) is not None and not v.lstrip("-").isdigit():
            raise _Mistake(f"--seed must be an integer, not {v!r}")
        for name in ("--target", "--registry"):
            if (v := value(i, arg, name)) is not None:
                try:
                    parse_endpoint(v)
                except (ValueError, TypeError) as exc:
                    raise _Mistake(f"{name}: {exc}") from None


def run(pytest_args: list[str]) -> int:
    import sys

    import pytest

    from pilot_proto.conformance import SUITE_DIR

    try:
        _check_options(pytest_args)
    except _Mistake as exc:
        print(f"pilot-proto conformance: error: {exc}", file=sys.stderr)
        return 2

    argv = ["-c", os.devnull, "--rootdir", str(SUITE_DIR), "-p", "pilot_proto.conformance.plugin",
            "-p", "no:cacheprovider", str(SUITE_DIR), *pytest_args]  # fmt: skip
    return int(pytest.main(argv))
