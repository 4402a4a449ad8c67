"""The one atomic writer: final mode whatever the umask, no temporary file left, no overwrite
when asked, and the caller's error type on failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from backstop.core.errors import Conflict, InvalidInput, StoreError
from backstop.core.files import write_atomically


def test_replaces_with_the_final_mode_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    old_umask = os.umask(0o000)
    try:
        write_atomically(target, b"new", mode=0o600)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_refuses_to_overwrite_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "ca.key"
    write_atomically(target, b"first", mode=0o600, overwrite=False)
    with pytest.raises(Conflict, match="already exists"):
        write_atomically(target, b"second", mode=0o600, overwrite=False)
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key"]


def test_a_failure_raises_the_callers_error_naming_what(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "file"
    with pytest.raises(StoreError, match="cannot write agent state"):
        write_atomically(missing, b"x", mode=0o600, what="agent state")
    with pytest.raises(InvalidInput, match="cannot write"):
        write_atomically(missing, b"x", mode=0o644, error=InvalidInput)
