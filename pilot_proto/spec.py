"""Requirements traceability: load ``spec/requirements/*.toml`` and measure coverage.

Every normative statement of the draft (BCP-14 keywords and testable prose:
formats, timers, state transitions, limits) has a stable ID such as
``PKT-010``.  Tests cite IDs with ``@pytest.mark.req("PKT-010")``; the pytest
plugin (:mod:`pilot_proto.testing.pytest_plugin`) fails a test that cites an
unknown ID, and :func:`coverage` maps IDs to the tests that cite them by
reading test sources (no test run needed).

File format (one file per draft area, e.g. ``s06-packet.toml``)::

    area = "PKT"
    title = "Packet Format"
    sections = ["6"]

    [[requirement]]
    id = "PKT-010"
    level = "MUST"          # MUST | MUST NOT | SHOULD | SHOULD NOT | MAY | prose
    section = "6.5"
    kind = "behaviour"      # format | behaviour | timer | limit | state | security
    text = "A receiver checks the CRC-32 and drops any packet whose checksum is wrong."
    profiles = ["draft", "go-interop"]   # optional; default both
    unobservable = "why no conformance test can see this through a tunnel endpoint"   # optional
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "LEVELS",
    "Coverage",
    "Requirement",
    "SpecError",
    "coverage",
    "default_spec_dir",
    "default_test_paths",
    "find_citations",
    "load_requirements",
]

LEVELS = ("MUST", "MUST NOT", "REQUIRED", "SHALL", "SHALL NOT", "SHOULD", "SHOULD NOT", "RECOMMENDED",
          "NOT RECOMMENDED", "MAY", "OPTIONAL", "prose")  # fmt: skip
KINDS = ("format", "behaviour", "timer", "limit", "state", "security", "registry")
_ID_RE = re.compile(r"^[A-Z][A-Z0-9]{1,7}-\d{3}$")


class SpecError(ValueError):
    """The requirements files are malformed (duplicate ID, bad level ...)."""


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str
    section: str
    text: str
    kind: str = "behaviour"
    profiles: tuple[str, ...] = ("draft", "go-interop")
    file: str = ""
    #: why the conformance suite cannot observe this on the wire (None: it can, or it is not judged yet)
    unobservable: str | None = None

    @property
    def top_section(self) -> str:
        return self.section.split(".")[0]


def default_spec_dir() -> Path:
    """``spec/requirements`` next to the package (checkout or editable install), else the copy in the wheel."""
    checkout = Path(__file__).resolve().parent.parent / "spec" / "requirements"
    if checkout.is_dir():
        return checkout
    return Path(__file__).resolve().parent / "conformance" / "requirements"  # shipped for the conformance suite


def _section_key(section: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in section.split("."))


def load_requirements(spec_dir: Path | None = None) -> dict[str, Requirement]:
    """Load and validate every ``*.toml`` under ``spec_dir``; keys are IDs."""
    spec_dir = spec_dir or default_spec_dir()
    if not spec_dir.is_dir():
        raise SpecError(f"no requirements directory at {spec_dir}")
    out: dict[str, Requirement] = {}
    for path in sorted(spec_dir.glob("*.toml")):
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
        for raw in doc.get("requirement", []):
            rid = raw.get("id", "")
            if not _ID_RE.match(rid):
                raise SpecError(f"{path.name}: malformed requirement ID {rid!r}")
            if rid in out:
                raise SpecError(f"{path.name}: duplicate requirement ID {rid} (also in {out[rid].file})")
            level = raw.get("level", "")
            if level not in LEVELS:
                raise SpecError(f"{path.name}: {rid} has unknown level {level!r}")
            kind = raw.get("kind", "behaviour")
            if kind not in KINDS:
                raise SpecError(f"{path.name}: {rid} has unknown kind {kind!r}")
            for key in ("section", "text"):
                if not raw.get(key):
                    raise SpecError(f"{path.name}: {rid} lacks {key!r}")
            unobservable = raw.get("unobservable")
            if unobservable is not None and not (isinstance(unobservable, str) and unobservable.strip()):
                raise SpecError(f"{path.name}: {rid} has an empty or non-string 'unobservable' reason")
            out[rid] = Requirement(
                id=rid, level=level, section=str(raw["section"]), text=raw["text"], kind=kind,
                profiles=tuple(raw.get("profiles", ("draft", "go-interop"))), file=path.name,
                unobservable=unobservable.strip() if unobservable is not None else None,
            )  # fmt: skip
    return out


# -- citations -----------------------------------------------------------------


def _req_ids_in_decorator(node: ast.expr) -> Iterator[str]:
    """IDs named by ``pytest.mark.req(...)`` / ``mark.req(...)`` / ``req(...)`` / ``requirement(...)``."""
    if not isinstance(node, ast.Call):
        return
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in ("req", "requirement"):
        return
    for arg in node.args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            yield arg.value


def _marks(value: ast.expr) -> Iterable[ast.expr]:
    if isinstance(value, ast.List | ast.Tuple):
        return value.elts
    return [value]


def find_citations(paths: Iterable[Path]) -> dict[str, list[str]]:
    """Map requirement ID -> test node IDs (``file::Class::test``) citing it."""
    cites: dict[str, list[str]] = defaultdict(list)
    for root in paths:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            except (SyntaxError, UnicodeDecodeError):
                continue
            rel = path.as_posix()
            module_ids: list[str] = []
            for stmt in tree.body:
                if isinstance(stmt, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets
                ):
                    for m in _marks(stmt.value):
                        module_ids.extend(_req_ids_in_decorator(m))
            for rid in module_ids:
                cites[rid].append(rel)

            def visit(body: list[ast.stmt], prefix: str, inherited: list[str]) -> None:
                for stmt in body:
                    if isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                        own = [i for d in stmt.decorator_list for i in _req_ids_in_decorator(d)]
                        if isinstance(stmt, ast.ClassDef):
                            for sub in stmt.body:
                                if isinstance(sub, ast.Assign) and any(
                                    isinstance(t, ast.Name) and t.id == "pytestmark" for t in sub.targets
                                ):
                                    for m in _marks(sub.value):
                                        own.extend(_req_ids_in_decorator(m))
                            visit(stmt.body, f"{prefix}::{stmt.name}", inherited + own)
                        elif stmt.name.startswith("test"):
                            for rid in own + inherited:
                                cites[rid].append(f"{prefix}::{stmt.name}")

            visit(tree.body, rel, [])
    return dict(cites)


@dataclass
class Coverage:
    requirements: dict[str, Requirement]
    citations: dict[str, list[str]]
    unknown: dict[str, list[str]] = field(default_factory=dict)

    def covered(self, rid: str) -> bool:
        return bool(self.citations.get(rid))

    def by_section(self) -> list[tuple[str, int, int]]:
        """(top-level section, covered, total) sorted by section number."""
        total: dict[str, int] = defaultdict(int)
        cov: dict[str, int] = defaultdict(int)
        for req in self.requirements.values():
            total[req.top_section] += 1
            cov[req.top_section] += self.covered(req.id)
        return [(s, cov[s], total[s]) for s in sorted(total, key=_section_key)]

    def by_level(self) -> list[tuple[str, int, int]]:
        total: dict[str, int] = defaultdict(int)
        cov: dict[str, int] = defaultdict(int)
        for req in self.requirements.values():
            total[req.level] += 1
            cov[req.level] += self.covered(req.id)
        return [(lv, cov[lv], total[lv]) for lv in LEVELS if lv in total]

    def uncovered(self) -> list[Requirement]:
        reqs = [r for r in self.requirements.values() if not self.covered(r.id)]
        return sorted(reqs, key=lambda r: (_section_key(r.section), r.id))


#: the conformance suite's test modules (package data; ``conformance/`` of a checkout only points pytest there)
SUITE_TESTS = Path(__file__).resolve().parent / "conformance" / "suite"


def default_test_paths(spec_dir: Path | None = None) -> list[Path]:
    """The project's ``tests/`` (in a checkout) and the conformance suite's modules (always)."""
    root = (spec_dir or default_spec_dir()).resolve().parent.parent
    paths = [p for p in (root / "tests", root / "conformance") if p.is_dir()]
    if SUITE_TESTS.is_dir() and not any(SUITE_TESTS.is_relative_to(p.resolve()) for p in paths):
        paths.append(SUITE_TESTS)
    return paths


def coverage(spec_dir: Path | None = None, test_paths: Iterable[Path] | None = None) -> Coverage:
    """Coverage of the requirements by the tests under ``test_paths`` (default: :func:`default_test_paths`)."""
    reqs = load_requirements(spec_dir)
    if test_paths is None:
        test_paths = default_test_paths(spec_dir)
    cites = find_citations(test_paths)
    unknown = {rid: where for rid, where in cites.items() if rid not in reqs}
    known = {rid: where for rid, where in cites.items() if rid in reqs}
    return Coverage(reqs, known, unknown)
