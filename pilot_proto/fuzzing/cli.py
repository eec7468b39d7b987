"""``pilot-proto fuzz``: list harnesses, run campaigns, fuzz a live target, write the OSS-Fuzz layout.

::

    pilot-proto fuzz --list
    pilot-proto fuzz 'decoder:*' --time 60 --jobs 2          # built-in engine, every decoder
    pilot-proto fuzz decoder:header:packet@draft --runs 1000000 --engine atheris
    pilot-proto fuzz --target 127.0.0.1:4000 --time 60       # a live implementation over UDP
    pilot-proto fuzz --write-layout fuzz/                    # regenerate fuzz/fuzz_*.py and fuzz/pilot.dict
    pilot-proto fuzz --write-corpus /tmp/corpus              # seed corpora, one directory per entry point

Findings are minimised and saved under ``--save`` (default ``tests/fuzz_regressions`` when run from a
clone, where ``tests/test_fuzz_regressions.py`` replays them, else ``./fuzz-findings``).  Exit code 0
when nothing was found, 1 when something was, 2 for a usage mistake.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["add_fuzz_command"]


def add_fuzz_command(sub: Any) -> None:
    p = sub.add_parser("fuzz", help="fuzzing campaigns: harnesses, live targets, OSS-Fuzz layout")
    p.add_argument("harness", nargs="*", help="harness names or globs (see --list)")
    p.add_argument("--list", action="store_true", help="list every harness")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--time", type=_positive_float, metavar="S", help="seconds per harness (default 10)")
    stop.add_argument("--runs", type=_positive_int, metavar="N", help="inputs per harness")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="J", help="parallel processes (default 1)")
    p.add_argument("--engine", choices=("builtin", "atheris"), default="builtin")
    p.add_argument("--seed", type=int, default=0, help="campaign seed (same seed, same campaign; builtin engine)")
    p.add_argument("--save", type=Path, help="where findings are written")
    p.add_argument("--json", action="store_true", help="print one JSON object per harness instead of text")
    p.add_argument("--target", metavar="HOST:PORT", help="fuzz a live implementation over UDP")
    p.add_argument("--profile", choices=("draft", "go-interop"), default="draft")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="datagrams between liveness checks")
    p.add_argument("--write-layout", type=Path, metavar="DIR", help="write fuzz_*.py entry points and pilot.dict")
    p.add_argument("--write-corpus", type=Path, metavar="DIR", help="write seed corpora")
    p.set_defaults(func=_run)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return v


def _fail(msg: str) -> int:
    sys.stderr.write(f"pilot-proto fuzz: error: {msg}\n")
    return 2


def _default_save() -> Path:
    return Path("tests/fuzz_regressions") if Path("tests").is_dir() else Path("fuzz-findings")


def _run(args: argparse.Namespace) -> int:
    from pilot_proto.fuzzing.harness import all_harnesses, select

    if args.list:
        for h in all_harnesses().values():
            print(f"{h.name:48} {h.doc}")
        return 0
    if args.write_layout is not None:
        from pilot_proto.fuzzing.layout import write_layout

        try:
            files = write_layout(args.write_layout)
        except OSError as exc:
            return _fail(f"cannot write {args.write_layout}: {exc.strerror or exc}")
        print(f"wrote {len(files)} files to {args.write_layout}")
        return 0
    if args.write_corpus is not None:
        from pilot_proto.fuzzing.layout import write_corpus

        try:
            counts = write_corpus(args.write_corpus, select(args.harness) if args.harness else None)
        except KeyError as exc:
            return _fail(f"no harness matches {exc.args[0]!r} (see --list)")
        except OSError as exc:
            return _fail(f"cannot write {args.write_corpus}: {exc.strerror or exc}")
        print(f"wrote {sum(counts.values())} seeds for {len(counts)} harnesses to {args.write_corpus}")
        return 0
    if args.target is not None:
        return _run_network(args)
    if not args.harness:
        return _fail("name a harness or glob (e.g. 'decoder:*'), or use --list / --target")
    try:
        chosen = select(args.harness)
    except KeyError as exc:
        return _fail(f"no harness matches {exc.args[0]!r} (see --list)")
    save = args.save if args.save is not None else _default_save()
    seconds = args.time if args.time is not None or args.runs is not None else 10.0
    if args.engine == "atheris":
        return _run_atheris(chosen, args, seconds, save)
    jobs = [(h.name, args.runs, seconds, args.seed + i, str(save)) for i, h in enumerate(chosen)]
    if len(chosen) == 1 and args.jobs > 1:  # one harness, several workers: different seeds
        jobs = [(chosen[0].name, args.runs, seconds, args.seed + i, str(save)) for i in range(args.jobs)]
    found = 0
    started = time.monotonic()
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(min(args.jobs, len(jobs))) as pool:
            for res in pool.imap_unordered(_campaign_job, jobs):
                found += _print_result(res, args.json)
    else:
        for job in jobs:
            found += _print_result(_campaign_job(job, progress=not args.json), args.json)
    if not args.json:
        print(f"{len(jobs)} campaign(s) in {time.monotonic() - started:.1f} s; {found} finding(s)")
    return 1 if found else 0


def _campaign_job(job: tuple[str, int | None, float | None, int, str], progress: bool = False) -> dict[str, Any]:
    from pilot_proto.fuzzing.engine import CampaignResult, run_campaign
    from pilot_proto.fuzzing.harness import select

    name, runs, seconds, seed, save = job
    harness = select([name])[0]

    def report(r: CampaignResult) -> None:
        sys.stderr.write(f"\r  {name}: {r.runs:,} inputs, {r.execs_per_sec:,.0f} exec/s, corpus {r.corpus}   ")
        sys.stderr.flush()

    res = run_campaign(harness, runs=runs, seconds=seconds if runs is None else None, seed=seed,
                       save_dir=Path(save), progress=report if progress else None)  # fmt: skip
    if progress:
        sys.stderr.write("\r" + " " * 100 + "\r")
    return res.to_dict()


def _print_result(res: dict[str, Any], as_json: bool) -> int:
    findings = res["findings"]
    if as_json:
        print(json.dumps(res))
    else:
        print(f"{res['harness']:48} {res['runs']:>10,} inputs {res['exec_per_s']:>8,} exec/s  corpus {res['corpus']:>5}"
              f"  findings {len(findings)}")  # fmt: skip
        for f in findings:
            print(f"    [{f['kind']}] {f['message'][:200]}\n      input {f['input'][:120]}  saved {f['path']}")
    return len(findings)


_LIBFUZZER_LINE = re.compile(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED).*?cov: (\d+).*?exec/s: (\d+)")


def _run_atheris(chosen: list[Any], args: argparse.Namespace, seconds: float | None, save: Path) -> int:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return _fail("atheris is not installed (pip install 'pilot-proto[fuzz]')")
    from pilot_proto.fuzzing.layout import stub_source, write_corpus

    found = 0
    for h in chosen:
        with tempfile.TemporaryDirectory(prefix="pilot-fuzz-") as tmp:
            root = Path(tmp)
            entry = root / "entry.py"
            entry.write_text(stub_source(h), encoding="utf-8")
            corpus = root / "corpus"
            write_corpus(corpus, [h])
            corpus_dir = next(corpus.iterdir())
            artifacts = save / h.slug
            artifacts.mkdir(parents=True, exist_ok=True)
            flags = [f"-artifact_prefix={artifacts}/", "-print_final_stats=1"]
            if args.runs is not None:
                flags.append(f"-runs={args.runs}")
            if seconds is not None:
                flags.append(f"-max_total_time={max(1, round(seconds))}")
            if args.jobs > 1:
                flags += [f"-jobs={args.jobs}", f"-workers={args.jobs}"]
            started = time.monotonic()
            proc = subprocess.run([sys.executable, str(entry), *flags, str(corpus_dir)], capture_output=True,
                                  text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, check=False)  # fmt: skip
            elapsed = time.monotonic() - started
            stats = _LIBFUZZER_LINE.findall(proc.stderr)
            runs, cov, eps = (int(x) for x in stats[-1]) if stats else (0, 0, 0)
            crashed = proc.returncode != 0
            found += crashed
            line = {"harness": h.name, "engine": "atheris", "runs": runs, "coverage": cov, "exec_per_s": eps,
                    "seconds": round(elapsed, 2), "crash": crashed}  # fmt: skip
            if crashed:
                tail = [ln for ln in proc.stderr.splitlines() if "Finding" in ln or "Error" in ln][-3:]
                line["detail"] = tail
            verdict = f"CRASH {line.get('detail')}" if crashed else "ok"
            text = f"{h.name:48} {runs:>10,} inputs {eps:>8,} exec/s  cov {cov:>5}  {verdict}"
            print(json.dumps(line) if args.json else text)
    return 1 if found else 0


def _run_network(args: argparse.Namespace) -> int:
    from pilot_proto.fuzzing.network import NetworkResult, check_target, fuzz_target

    host, sep, port_text = args.target.rpartition(":")
    host = host.strip("[]")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return _fail(f"--target must be HOST:PORT with a port 1-65535, not {args.target!r}")
    try:
        check_target(host)
    except ValueError as exc:
        return _fail(str(exc))
    save = args.save if args.save is not None else Path("fuzz-findings")

    def report(r: NetworkResult) -> None:
        sys.stderr.write(f"\r  batch {r.batches}: {r.outside + r.inside:,} datagrams, target alive   ")
        sys.stderr.flush()

    try:
        seconds = args.time or (None if args.runs else 10.0)
        res = fuzz_target((host, int(port_text)), profile=args.profile, seconds=seconds,
                          batches=args.runs, batch_size=args.batch_size, seed=args.seed, save_dir=save,
                          progress=None if args.json else report)  # fmt: skip
    except TimeoutError as exc:
        return _fail(f"no tunnel to {args.target}: {exc}")
    if not args.json:
        sys.stderr.write("\r" + " " * 80 + "\r")
    out = res.to_dict()
    print(json.dumps(out) if args.json else
          f"{out['target']}: {out['batches']} batches, {out['sent_outside_tunnel']} outside + "
          f"{out['sent_inside_tunnel']} inside the tunnel in {out['seconds']} s; "
          f"median ping {out['median_ping_ms']} ms; "
          f"{out['rehandshakes']} re-handshakes; {len(res.findings)} finding(s)")  # fmt: skip
    for f in res.findings:
        print(f"  batch {f.batch}: {f.reason}; inputs saved to {f.path}")
    return 1 if res.findings else 0
