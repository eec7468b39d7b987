"""``pilot-proto`` command line.

Subcommands:

* ``vectors generate --out DIR`` / ``vectors verify [DIR]``
* ``spec coverage [--uncovered]`` / ``spec list [--section S]``
* whatever :func:`_add_extension_commands` registers (``node``, ``decode``, ``trace``, ``nat-matrix`` ...)

Every command-line mistake is one line on stderr and exit status 2, never a traceback
(:mod:`pilot_proto.daemon.cliargs`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from pilot_proto import DRAFT_NAME, __version__
from pilot_proto.daemon.cliargs import CliParser, existing_dir, guarded, harden, output_dir

__all__ = ["main"]


def _default_vectors_dir() -> Path:
    here = Path.cwd() / "vectors"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "vectors"


def _cmd_vectors_generate(args: argparse.Namespace) -> int:
    from pilot_proto.vectors import generate_all
    from pilot_proto.vectors._format import ExpectationMismatch

    try:
        paths = generate_all(Path(args.out))
    except ExpectationMismatch as exc:  # the implementation disagrees with a stated verdict: nothing was written
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "a vector's stated verdict"
        print(f"pilot-proto vectors generate: error: {first} (no file written)", file=sys.stderr)
        return 1
    for p in paths:
        print(f"wrote {p}")
    return 0


def _cmd_vectors_verify(args: argparse.Namespace) -> int:
    from pilot_proto.vectors import verify_dir

    directory = Path(args.dir) if args.dir else _default_vectors_dir()
    if not directory.is_dir():
        print(f"error: no vector directory at {directory}", file=sys.stderr)
        return 2
    report = verify_dir(directory)
    for name, count in report.files.items():
        bad = [f for f in report.failures if f.startswith(f"{name}:")]
        print(f"{'FAIL' if bad else 'ok  '} {name}: {count} tests" + (f", {len(bad)} failures" if bad else ""))
    for failure in report.failures:
        print(f"  {failure}")
    for name in report.missing:
        print(f"MISSING {name}")
    for name in report.unknown:
        print(f"note: {name} is not a known vector file (ignored)")
    total = sum(report.files.values())
    verdict = "PASS" if report.ok else "FAIL"
    print(f"{verdict}: {len(report.files)} files, {total} vectors, {len(report.failures)} failures, "
          f"{len(report.missing)} missing")  # fmt: skip
    return 0 if report.ok else 1


def _cmd_spec_coverage(args: argparse.Namespace) -> int:
    from pilot_proto.spec import coverage

    cov = coverage(Path(args.spec) if args.spec else None)
    print(f"Requirement coverage for {DRAFT_NAME}")
    print(f"{'section':>8}  {'covered':>7}  {'total':>5}  {'%':>5}")
    covered_all = total_all = 0
    for section, covered, total in cov.by_section():
        covered_all += covered
        total_all += total
        print(f"{section:>8}  {covered:>7}  {total:>5}  {100 * covered / total:>5.1f}")
    print("by level: " + ", ".join(f"{lv} {c}/{t}" for lv, c, t in cov.by_level()))
    if args.uncovered:
        for req in cov.uncovered():
            print(f"  uncovered {req.id} [{req.level}] \u00a7{req.section}: {req.text}")
    for rid, where in sorted(cov.unknown.items()):
        print(f"  UNKNOWN ID {rid} cited by {', '.join(where[:3])}")
    pct = 100 * covered_all / total_all if total_all else 0.0
    print(f"total: {covered_all}/{total_all} requirements covered ({pct:.1f}%)")
    return 1 if cov.unknown else 0


def _cmd_spec_list(args: argparse.Namespace) -> int:
    from pilot_proto.spec import load_requirements

    reqs = load_requirements(Path(args.spec) if args.spec else None)
    for req in reqs.values():
        if args.section and not (req.section == args.section or req.section.startswith(args.section + ".")):
            continue
        print(f"{req.id}  [{req.level}] \u00a7{req.section}  {req.text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="pilot-proto", description=f"pilot-proto {__version__} ({DRAFT_NAME})")
    parser.add_argument("--version", action="version", version=f"pilot-proto {__version__}")
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]", parser.add_subparsers(dest="command", required=True)
    )

    vectors = sub.add_parser("vectors", help="generate or verify JSON test vectors").add_subparsers(
        dest="action", required=True
    )
    gen = vectors.add_parser("generate", help="write every vector file")
    gen.add_argument("--out", required=True, type=output_dir, help="output directory")
    gen.set_defaults(func=_cmd_vectors_generate)
    ver = vectors.add_parser("verify", help="check vector files against this implementation")
    ver.add_argument("dir", nargs="?", help="directory of vector files (default: ./vectors)")
    ver.set_defaults(func=_cmd_vectors_verify)

    spec = sub.add_parser("spec", help="requirements traceability").add_subparsers(dest="action", required=True)
    cov = spec.add_parser("coverage", help="requirements covered by tests, by draft section")
    cov.add_argument("--spec", type=existing_dir, help="requirements directory (default: spec/requirements)")
    cov.add_argument("--uncovered", action="store_true", help="list requirements no test cites")
    cov.set_defaults(func=_cmd_spec_coverage)
    lst = spec.add_parser("list", help="list requirements")
    lst.add_argument("--spec", type=existing_dir, help="requirements directory")
    lst.add_argument("--section", help="only this draft section (and its subsections)")
    lst.set_defaults(func=_cmd_spec_list)

    _add_extension_commands(sub)
    harden(parser)  # the same argument checks for subcommands other modules register
    return parser


def _add_extension_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Subsystems register extra subcommands here (``trace``, ``node`` ...)."""
    from pilot_proto.conformance.cli import add_conformance_command
    from pilot_proto.daemon.commands import add_daemon_commands
    from pilot_proto.drivers.beacon import add_beacon_command, add_nat_command
    from pilot_proto.fuzzing.cli import add_fuzz_command
    from pilot_proto.registry.server import add_registry_command
    from pilot_proto.trace_plot import add_trace_command
    from pilot_proto.wire.formats import add_decode_command

    add_trace_command(sub)
    add_decode_command(sub)
    add_nat_command(sub)
    add_daemon_commands(sub)  # node (the daemon) and its IPC clients: info, ping, connect, send, recv, trust ...
    add_fuzz_command(sub)
    add_beacon_command(sub)
    add_registry_command(sub)
    add_conformance_command(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command.  Every mistake is one line on stderr and exit status 2 (issue 9/11); never a traceback."""
    parser = build_parser()

    def run() -> int:
        args = parser.parse_args(argv)
        result: int = args.func(args)
        return result

    return guarded(parser.prog, run)


if __name__ == "__main__":
    raise SystemExit(main())
