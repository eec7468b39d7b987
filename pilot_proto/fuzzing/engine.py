"""The built-in mutational engine, the crash minimiser and regression files.

No dependency beyond the standard library: inputs are drawn from the harness's seed corpus, mutated
(bit flips, byte sets, extreme integers, truncation, insertion, deletion, duplication, dictionary
tokens, splices with other seeds) and run; an input that breaks an oracle is minimised (delta
debugging, keeping the same finding kind) and saved.  Inputs that reach a *new outcome* (a new
error code or field for a rejection, or acceptance) join the corpus, so the engine keeps the cheap
part of coverage guidance -- distinct behaviours -- without tracing.  For real coverage guidance
use atheris (``--engine atheris``, :mod:`pilot_proto.fuzzing.atheris_main`).

The engine is deterministic for a given ``seed``: the same seed replays the same campaign.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pilot_proto.fuzzing.harness import Finding, Harness
from pilot_proto.fuzzing.seeds import dictionary

__all__ = ["CampaignResult", "Mutator", "SavedFinding", "minimise", "run_campaign", "save_regression"]

_EXTREMES = (b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00", b"\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
             b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x00\x00\x01")  # fmt: skip


_VARYING = re.compile(r"0x[0-9a-fA-F]+|b'[^']*'|b\"[^\"]*\"|[0-9a-fA-F]{6,}|\d+")


class Mutator:
    """Seeded byte-level mutations over a corpus."""

    def __init__(self, rng: random.Random, corpus: list[bytes], *, max_len: int = 4096) -> None:
        self.rng = rng
        self.corpus = corpus
        self.tokens = dictionary()
        self.max_len = max_len

    def mutate(self) -> bytes:
        rng = self.rng
        data = bytearray(rng.choice(self.corpus))
        for _ in range(1 + int(rng.expovariate(0.7))):
            self._one(data)
        del data[self.max_len :]
        return bytes(data)

    def _one(self, data: bytearray) -> None:
        rng = self.rng
        op = rng.randrange(9)
        n = len(data)
        pos = rng.randrange(n) if n else 0
        if op == 0 and n:  # flip one bit
            data[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # set a byte
            data[pos] = rng.randrange(256)
        elif op == 2:  # an extreme integer over whatever was there
            tok = rng.choice(_EXTREMES)
            data[pos : pos + len(tok)] = tok
        elif op == 3 and n:  # truncate
            del data[rng.randrange(n + 1) :]
        elif op == 4:  # insert random bytes
            data[pos:pos] = rng.randbytes(rng.randrange(1, 9))
        elif op == 5 and n:  # delete a run
            del data[pos : pos + rng.randrange(1, 9)]
        elif op == 6 and n:  # duplicate a run
            end = min(n, pos + rng.randrange(1, 17))
            data[pos:pos] = data[pos:end]
        elif op == 7:  # dictionary token, inserted or overwritten
            tok = rng.choice(self.tokens)
            if rng.random() < 0.5:
                data[pos:pos] = tok
            else:
                data[pos : pos + len(tok)] = tok
        else:  # splice with another corpus entry
            other = rng.choice(self.corpus)
            cut = rng.randrange(len(other) + 1)
            data[pos:] = other[cut:] if rng.random() < 0.5 else other
        if not data and rng.random() < 0.5:
            data.extend(rng.randbytes(rng.randrange(1, 40)))


@dataclass(frozen=True)
class SavedFinding:
    """One distinct finding: the minimised input, the message and where it was saved (if anywhere)."""

    harness: str
    kind: str
    message: str
    data: bytes
    original: bytes
    path: Path | None = None


@dataclass
class CampaignResult:
    harness: str
    engine: str
    runs: int = 0
    seconds: float = 0.0
    corpus: int = 0
    outcomes: int = 0
    coverage: int | None = None
    findings: list[SavedFinding] = field(default_factory=list)

    @property
    def execs_per_sec(self) -> float:
        return self.runs / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "harness": self.harness,
            "engine": self.engine,
            "runs": self.runs,
            "seconds": round(self.seconds, 3),
            "exec_per_s": round(self.execs_per_sec),
            "corpus": self.corpus,
            "outcomes": self.outcomes,
            "coverage": self.coverage,
            "findings": [{"kind": f.kind, "message": f.message, "input": f.data.hex(),
                          "path": str(f.path) if f.path else None} for f in self.findings],
        }  # fmt: skip


def _outcome(fn: Callable[[bytes], object], data: bytes) -> object:
    """Run once; the finding (kind, message head) or None."""
    try:
        fn(data)
    except Finding as f:
        return ("finding", f.kind, str(f).split(":", 1)[0])
    except Exception as exc:  # a harness bug or an oracle the harness did not wrap: still a finding
        return ("finding", "uncaught", type(exc).__name__)
    return None


def _signature(f: BaseException) -> tuple[str, str]:
    kind = f.kind if isinstance(f, Finding) else "uncaught"
    head = str(f).split(" on ", 1)[0]
    head = _VARYING.sub("#", head)[:160]  # numbers, hex and byte strings vary between instances of one bug
    return kind, head


def minimise(fn: Callable[[bytes], object], data: bytes, *, budget: int = 2000) -> bytes:
    """Delta debugging: the shortest input (then fewest non-zero bytes) that gives the same finding kind."""
    target = _outcome(fn, data)
    if target is None:
        return data
    kind = target

    def same(candidate: bytes) -> bool:
        out = _outcome(fn, candidate)
        return out is not None and out[:2] == kind[:2]  # type: ignore[index]

    best = data
    tries = 0
    chunk = max(1, len(best) // 2)
    while chunk >= 1 and tries < budget:
        i, shrunk = 0, False
        while i < len(best) and tries < budget:
            cand = best[:i] + best[i + chunk :]
            tries += 1
            if cand != best and same(cand):
                best, shrunk = cand, True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    for i in range(len(best)):  # simplify bytes to zero where the finding survives
        if tries >= budget or best[i] == 0:
            continue
        cand = best[:i] + b"\x00" + best[i + 1 :]
        tries += 1
        if same(cand):
            best = cand
    return best


def save_regression(harness: Harness, data: bytes, directory: Path) -> Path:
    """Write ``directory/<harness slug>/<sha256[:16]>.bin``; ``tests/test_fuzz_regressions.py`` replays them."""
    target = directory / harness.slug
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return path


def run_campaign(
    harness: Harness,
    *,
    runs: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    save_dir: Path | None = None,
    progress: Callable[[CampaignResult], None] | None = None,
    progress_every: float = 2.0,
    max_findings: int = 20,
    clock: Callable[[], float] = time.perf_counter,
) -> CampaignResult:
    """Fuzz ``harness`` for ``runs`` inputs or ``seconds`` of wall time (whichever is given; both: first hit)."""
    if runs is None and seconds is None:
        raise ValueError("give runs or seconds")
    rng = random.Random(seed)
    corpus = list(harness.seeds()) or [b""]
    mut = Mutator(rng, corpus)
    fn = harness.fuzz_one_input
    result = CampaignResult(harness.name, "mutational")
    seen_outcomes: set[object] = set()
    seen_findings: set[tuple[str, str]] = set()
    start = clock()
    next_report = start + progress_every
    deadline = start + seconds if seconds is not None else None
    limit = runs if runs is not None else -1
    n = 0
    # Seeds first, as they are, then mutations.
    pending = list(corpus)
    while n != limit:
        if (n & 63) == 0:
            now = clock()
            if deadline is not None and now >= deadline:
                break
            if progress is not None and now >= next_report:
                result.runs, result.seconds, result.corpus = n, now - start, len(corpus)
                progress(result)
                next_report = now + progress_every
        data = pending.pop() if pending else mut.mutate()
        n += 1
        try:
            outcome = fn(data)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            sig = _signature(exc)
            if sig in seen_findings:
                continue
            seen_findings.add(sig)
            small = minimise(fn, data)
            path = save_regression(harness, small, save_dir) if save_dir is not None else None
            result.findings.append(SavedFinding(harness.name, sig[0], str(exc)[:500], small, data, path))
            if len(result.findings) >= max_findings:
                break
            continue
        key = outcome if outcome is not None else _shape(data)
        if key not in seen_outcomes and len(corpus) < 4096:
            seen_outcomes.add(key)
            corpus.append(data)
    result.runs = n
    result.seconds = clock() - start
    result.corpus = len(corpus)
    result.outcomes = len(seen_outcomes)
    return result


def _shape(data: bytes) -> tuple[int, bytes]:
    """A cheap novelty key: length bucket and the first 5 bytes (magic/type plus a byte)."""
    return (min(len(data).bit_length(), 16), data[:5])
