"""The CLI's witnessed heads: kept per controller, never moving backwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backstop.cli.heads import HeadMemory, default_path
from backstop.core.models import AuditHead

A, B, C = "a" * 64, "b" * 64, "c" * 64


def test_default_path_follows_xdg_state_home(tmp_path: Path) -> None:
    assert default_path({"XDG_STATE_HOME": str(tmp_path)}) == (
        tmp_path / "backstop" / "audit-heads.json"
    )
    home = Path.home()
    assert default_path({}) == home / ".local" / "state" / "backstop" / "audit-heads.json"
    assert default_path({"XDG_STATE_HOME": "relative"}).is_relative_to(home)


def test_heads_are_kept_per_controller_and_never_move_backwards(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit-heads.json"
    memory = HeadMemory(path)
    assert memory.get("c1:1") == AuditHead()
    memory.remember("c1:1", AuditHead(5, A))
    memory.remember("c1:1", AuditHead(3, B))  # older: ignored
    memory.remember("c1:1", AuditHead(5, C))  # same index: the first seen stays
    memory.remember("c2:1", AuditHead(9, B))
    memory.remember("c2:1", AuditHead())
    again = HeadMemory(path)
    assert again.get("c1:1") == AuditHead(5, A)
    assert again.get("c2:1") == AuditHead(9, B)
    again.remember("c1:1", AuditHead(6, C))
    assert HeadMemory(path).get("c1:1") == AuditHead(6, C)
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_damaged_file_is_ignored_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit-heads.json"
    path.write_text("{not json")
    memory = HeadMemory(path)
    assert memory.get("c1:1") == AuditHead()
    assert "ignoring unreadable" in capsys.readouterr().err
    path.write_text(json.dumps({"controllers": {"c1:1": {"seq": 2, "hash": "nothex"}}}))
    assert memory.get("c1:1") == AuditHead()
    memory.remember("c1:1", AuditHead(1, A))
    assert memory.get("c1:1") == AuditHead(1, A)


def test_an_unwritable_directory_warns_and_does_not_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    memory = HeadMemory(blocker / "backstop" / "audit-heads.json")
    memory.remember("c1:1", AuditHead(1, A))
    memory.remember("c1:1", AuditHead(2, A))
    assert capsys.readouterr().err.count("cannot record the audit head") == 1
