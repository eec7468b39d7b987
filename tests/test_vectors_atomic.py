"""``generate_all`` is all-or-nothing on disk: a failed write leaves every old vector file as it was."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import pilot_proto.vectors as vectors
from pilot_proto.vectors import all_suites, generate_all


def _seed_old(out: Path) -> dict[str, str]:
    """Old files of every suite, each with content a fresh generation would never produce."""
    out.mkdir()
    old = {name: f'{{"old": "{name}"}}\n' for name in all_suites()}
    for name, text in old.items():
        (out / name).write_text(text, encoding="utf-8")
    return old


def _contents(out: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()}


def test_success_replaces_every_file_and_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "v"
    _seed_old(out)
    written = generate_all(out)
    assert sorted(p.name for p in written) == sorted(all_suites())
    now = _contents(out)
    assert sorted(now) == sorted(all_suites()), "a temp file was left behind"
    for name, suite in all_suites().items():
        assert now[name] == vectors.dump(suite.generate())


def test_a_file_that_fails_half_way_leaves_the_old_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "v"
    old = _seed_old(out)
    real = vectors._write_temp
    calls = []

    def flaky(directory: Path, name: str, text: str) -> Path:
        calls.append(name)
        if len(calls) == len(old) // 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(directory, name, text)

    monkeypatch.setattr(vectors, "_write_temp", flaky)
    with pytest.raises(OSError, match="No space"):
        generate_all(out)
    assert len(calls) == len(old) // 2  # it really failed mid-way, after some temp files were written
    assert _contents(out) == old


def test_a_write_that_fails_inside_one_file_leaves_the_old_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure comes after bytes of the third file hit its temp file (fsync fails), not before."""
    out = tmp_path / "v"
    old = _seed_old(out)
    real_fsync = os.fsync
    synced = []

    def failing_fsync(fd: int) -> None:
        synced.append(fd)
        if len(synced) == 3:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"):
        generate_all(out)
    assert _contents(out) == old


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere, so no directory is read-only to it")
def test_read_only_directory_leaves_the_old_files(tmp_path: Path) -> None:
    out = tmp_path / "v"
    old = _seed_old(out)
    out.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            generate_all(out)
        assert _contents(out) == old
    finally:
        out.chmod(0o700)
