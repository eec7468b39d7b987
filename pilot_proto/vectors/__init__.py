"""Test vectors: generation and verification.

Each module in this package that defines ``SUITES`` (a list of
:class:`VectorSuite`) contributes vector files; they are discovered
automatically, so adding a layer's vectors means adding one module.
``generate`` produces the document from our own code with fixed inputs;
``verify`` checks a document (ours or anybody's) against the implementation
and returns failure messages.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pilot_proto.vectors._format import Doc, ExpectationMismatch, iter_tests

__all__ = [
    "ExpectationMismatch",
    "VectorSuite",
    "VerifyReport",
    "all_suites",
    "dump",
    "generate_all",
    "generate_checked",
    "verify_dir",
    "verify_doc",
]


@dataclass(frozen=True)
class VectorSuite:
    filename: str
    generate: Callable[[], Doc]
    verify: Callable[[Doc], list[str]]


@dataclass
class VerifyReport:
    files: dict[str, int] = field(default_factory=dict)  # filename -> tests checked
    failures: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.missing and bool(self.files)


def all_suites() -> dict[str, VectorSuite]:
    """Every suite in this package, keyed by file name."""
    out: dict[str, VectorSuite] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for suite in getattr(module, "SUITES", []):
            if suite.filename in out:
                raise RuntimeError(f"two vector suites write {suite.filename}")
            out[suite.filename] = suite
    return dict(sorted(out.items()))


def dump(doc: Doc) -> str:
    """Canonical JSON text (2-space indent, trailing newline) so files diff cleanly."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def generate_checked(suite: VectorSuite) -> Doc:
    """Generate one suite's document and insist that the implementation agrees with it.

    Generators state every verdict and raise :class:`ExpectationMismatch` when our code disagrees;
    verifying the fresh document as well catches a generator that forgot to.
    """
    doc = suite.generate()
    problems = verify_doc(suite, doc)
    if problems:
        raise ExpectationMismatch(
            f"{suite.filename}: the implementation disagrees with its own vectors: {problems[:5]}"
        )
    return doc


def _write_temp(directory: Path, name: str, text: str) -> Path:
    """Write ``text`` to a fresh hidden temp file in ``directory`` (flushed and fsynced); return its path."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def generate_all(out_dir: Path) -> list[Path]:
    """Write every file; nothing is written unless every suite generates and verifies.

    Atomic per file and all-or-nothing for the writes: every document first goes to a temp file in
    ``out_dir`` and only when all of them are on disk does each replace its file (``os.replace``).  A
    failed write (disk full, permission, ...) removes the temp files and leaves every old file as it was.
    """
    docs = {name: generate_checked(suite) for name, suite in all_suites().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    temps: list[tuple[Path, Path]] = []
    try:
        for name, doc in docs.items():
            temps.append((_write_temp(out_dir, name, dump(doc)), out_dir / name))
    except BaseException:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    written = []
    for tmp, path in temps:
        os.replace(tmp, path)
        written.append(path)
    return written


def verify_doc(suite: VectorSuite, doc: Doc) -> list[str]:
    """Structural checks shared by every file, then the suite's own checks."""
    problems = []
    tests = list(iter_tests(doc))
    if doc.get("numberOfTests") != len(tests):
        problems.append(f"numberOfTests is {doc.get('numberOfTests')}, file has {len(tests)} tests")
    ids = [t.get("tcId") for _, t in tests]
    if len(set(ids)) != len(ids):
        problems.append("duplicate tcId")
    for _, t in tests:
        if t.get("result") not in ("valid", "invalid", "acceptable"):
            problems.append(f"tcId {t.get('tcId')}: result must be valid/invalid/acceptable")
    try:
        problems.extend(suite.verify(doc))
    except Exception as exc:  # a verifier crash is a failure to report, not to hide
        problems.append(f"verifier raised {type(exc).__name__}: {exc}")
    return problems


def verify_dir(directory: Path) -> VerifyReport:
    report = VerifyReport()
    suites = all_suites()
    present = {p.name: p for p in sorted(directory.glob("*.json"))}
    for name, suite in suites.items():
        path = present.get(name)
        if path is None:
            report.missing.append(name)
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        report.files[name] = len(list(iter_tests(doc)))
        report.failures.extend(f"{name}: {msg}" for msg in verify_doc(suite, doc))
    report.unknown = [n for n in present if n not in suites]
    return report
