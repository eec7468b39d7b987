"""Issue 10: every requirement observable on the wire has a conformance test, or says why it cannot have one.

Read statically (no run): the IDs the suite's modules cite with ``@pytest.mark.req`` (package data under
``pilot_proto/conformance/suite``), the ``unobservable`` reasons in ``spec/requirements/*.toml`` and the
plugin's table of whole areas that never reach a tunnel endpoint.  A requirement that is none of these must be
in one of the two lists below; the lists only shrink (an entry that gained a test or a reason fails here,
so it has to be removed) and are meant to end empty.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pilot_proto.conformance.plugin import UNOBSERVABLE
from pilot_proto.spec import SUITE_TESTS, Requirement, SpecError, coverage, find_citations, load_requirements

ROOT = Path(__file__).resolve().parent.parent

#: no conformance test and no reason yet, draft sections 6, 7, 8, 11, 12, 13 (helper confa)
NOT_YET_A: frozenset[str] = frozenset([])

#: the same for draft sections 10, 14, 19 (helper confb)
NOT_YET_B: frozenset[str] = frozenset([])

REQS = load_requirements()
CITED = find_citations([SUITE_TESTS])


def _area(r: Requirement) -> str:
    return r.id.split("-")[0]


def _accounted(r: Requirement) -> bool:
    return r.id in CITED or r.unobservable is not None or _area(r) in UNOBSERVABLE


def test_suite_cites_something() -> None:
    """The static reading works at all (a broken parser would make every requirement 'uncovered')."""
    assert len(CITED) > 100, f"only {len(CITED)} IDs cited by {SUITE_TESTS}"
    assert "PKT-010" in CITED


def test_every_requirement_has_a_test_or_a_reason() -> None:
    missing = sorted(
        (r for r in REQS.values() if not _accounted(r) and r.id not in NOT_YET_A | NOT_YET_B), key=lambda r: r.id
    )
    assert not missing, "requirements with no conformance test and no 'unobservable' reason:\n" + "\n".join(
        f"  {r.id} [{r.level}] \u00a7{r.section} ({r.file}): {r.text}" for r in missing
    )


@pytest.mark.parametrize("which", ["A", "B"])
def test_not_yet_lists_hold_only_real_gaps(which: str) -> None:
    """An entry that gained a test or a reason (or no longer exists) must leave the list."""
    listed = NOT_YET_A if which == "A" else NOT_YET_B
    stale = sorted(i for i in listed if i not in REQS or _accounted(REQS[i]))
    assert not stale, f"remove from NOT_YET_{which}: {stale}"


def test_not_yet_lists_are_disjoint() -> None:
    assert not NOT_YET_A & NOT_YET_B


def test_unobservable_requirements_are_not_also_cited_by_the_suite() -> None:
    """A reason 'cannot be observed' next to a test that observes it is a contradiction."""
    both = sorted(r.id for r in REQS.values() if r.unobservable and r.id in CITED)
    assert not both, f"requirements with an 'unobservable' reason that a suite test cites: {both}"


def test_unobservable_reasons_are_specific() -> None:
    """Each reason says what would be needed; a blanket phrase copied onto many requirements is not a reason."""
    reasons = {r.id: r.unobservable for r in REQS.values() if r.unobservable}
    short = sorted(i for i, text in reasons.items() if len(text) < 40)
    assert not short, f"reasons too short to say why: {short}"
    common = [(text, n) for text, n in Counter(reasons.values()).items() if n > 3]
    assert not common, f"the same reason is given for more than 3 requirements: {common}"


@pytest.mark.parametrize("value", ['""', '"   "', "3", "true"])
def test_unobservable_must_be_a_non_empty_string(tmp_path: Path, value: str) -> None:
    (tmp_path / "s99-x.toml").write_text(
        'area = "XX"\n[[requirement]]\nid = "XX-001"\nlevel = "prose"\nsection = "6.1"\ntext = "t"\n'
        f"unobservable = {value}\n"
    )
    with pytest.raises(SpecError, match="unobservable"):
        load_requirements(tmp_path)


def test_spec_coverage_counts_the_suite_modules() -> None:
    """``pilot-proto spec coverage`` reads the suite (package data), not only ``tests/``."""
    cov = coverage()
    assert any("pilot_proto/conformance/suite/" in w for w in cov.citations["TUN-010"]), cov.citations["TUN-010"]


def test_report_tells_not_run_from_untested_and_unobservable(tmp_path: Path) -> None:
    """A requirement whose only test is deselected (--long, passive) is 'covered by X, not run here', not 'no test'."""
    report = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pilot_proto.cli", "conformance", "-q", "-k", "sanity", f"--report={report}",
         f"--artifacts={tmp_path / 'a'}", "--seed=3"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cov = json.loads(report.read_text())["coverage"]
    keepalive = cov["8"]["SES-110"]
    assert keepalive["status"] == "not-run", keepalive
    assert "test_idle_connection_sends_keepalive, not run here (needs --long)" in keepalive["untested"]
    passive = cov["7"]["TUN-010"]
    assert passive["status"] == "not-run" and "needs --pcap" in passive["untested"], passive
    assert cov["6"]["PKT-010"]["status"] == "not-run"  # deselected by -k: a test exists
    df = cov["13"]["MTU-008"]
    assert df["status"] == "unobservable" and df["untested"] == REQS["MTU-008"].unobservable
    assert cov["16"]["IPC-001"]["status"] == "unobservable"
    statuses = {e["status"] for sec in cov.values() for e in sec.values()}
    assert statuses <= {"tested", "not-run", "unobservable", "no-test"}
    assert "requirements exercised:" in proc.stdout and "not selected in this run" in proc.stdout
