"""The requirements files load, IDs are unique, and the marker plugin rejects unknown IDs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pilot_proto.spec import SpecError, coverage, find_citations, load_requirements

pytest_plugins = ["pytester"]


def test_requirements_load_and_are_well_formed() -> None:
    reqs = load_requirements()
    assert reqs, "spec/requirements must define requirements"
    for req in reqs.values():
        assert req.text and req.section[0].isdigit(), req


def test_duplicate_id_is_refused(tmp_path: Path) -> None:
    body = 'area="X"\n[[requirement]]\nid="XX-001"\nlevel="MUST"\nsection="1"\ntext="a"\n'
    (tmp_path / "a.toml").write_text(body)
    (tmp_path / "b.toml").write_text(body)
    with pytest.raises(SpecError, match="duplicate"):
        load_requirements(tmp_path)


def test_bad_level_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('[[requirement]]\nid="XX-001"\nlevel="MIGHT"\nsection="1"\ntext="a"\n')
    with pytest.raises(SpecError, match="level"):
        load_requirements(tmp_path)


def test_citations_found_in_decorators_classes_and_pytestmark(tmp_path: Path) -> None:
    src = textwrap.dedent(
        """
        import pytest
        pytestmark = pytest.mark.req("AA-001")

        @pytest.mark.req("AA-002", "AA-003")
        def test_one(): ...

        class TestGroup:
            pytestmark = [pytest.mark.req("AA-004")]
            def test_two(self): ...
        """
    )
    f = tmp_path / "test_x.py"
    f.write_text(src)
    cites = find_citations([tmp_path])
    assert set(cites) == {"AA-001", "AA-002", "AA-003", "AA-004"}
    assert any(c.endswith("::TestGroup::test_two") for c in cites["AA-004"])


def test_every_citation_in_the_suite_is_a_known_id() -> None:
    cov = coverage()
    assert cov.unknown == {}, f"tests cite unknown requirement IDs: {sorted(cov.unknown)}"


def test_unknown_id_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["pilot_proto.testing.pytest_plugin"]')
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.req("NOPE-999")
        def test_cites_unknown():
            assert True
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown requirement ID*NOPE-999*"])
