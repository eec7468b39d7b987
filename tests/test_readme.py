"""The README's Python examples run and their assertions hold, so the docs cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_readme_opens_with_exactly_two_setup_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert first_block is not None
    commands = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2 and "pytest" in commands[1] and "pilot-proto conformance" in commands[0]
    assert commands[0].split("&&")[1].split() == ["pilot-proto", "conformance"]  # the main job, no arguments


@pytest.mark.req("SES-001", "SEC-011")
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int) -> None:
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {"__name__": "readme_example"})


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2
