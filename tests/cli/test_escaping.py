"""Strings that tenants and operators control are escaped on the terminal, as ps does."""

from __future__ import annotations

import pytest

from backstop.cli.render import escape, table
from tests.cli.conftest import Rig


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J", "\\x1b[2J"),  # ESC
        ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
        ("\x00\x07\x7f", "\\x00\\x07\\x7f"),  # C0, BEL, DEL
        ("\x9b31m\x85", "\\x9b31m\\x85"),  # C1: CSI, NEL
        ("\u202aa\u202bb\u202cc\u202dd\u202ee", "\\u202aa\\u202bb\\u202cc\\u202dd\\u202ee"),
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),  # isolates
        ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),  # marks
        ("\u2028\u2029", "\\u2028\\u2029"),  # line and paragraph separators
        ("back\\slash", "back\\\\slash"),  # so an escape shown is never the tenant's text
        ("vllm serve ünïcode 模型", "vllm serve ünïcode 模型"),
    ],
)
def test_escape_makes_every_control_visible(raw: str, shown: str) -> None:
    assert escape(raw) == shown


def test_a_table_cell_cannot_split_its_row() -> None:
    lines = table(("id", "command"), [("wl-1", "python\nfake-row  x"), ("wl-2", "ok")]).split("\n")
    assert len(lines) == 3
    assert lines[1].endswith("python\\nfake-row  x")


def test_workloads_table_shows_hostile_command_lines_escaped(rig: Rig) -> None:
    result = rig.cluster.cli("workloads")
    assert result.code == 0, result.err
    assert "\x1b" not in result.out
    assert "\u202e" not in result.out
    rows = result.out.splitlines()
    assert len(rows) == 1 + 3, result.out  # the header and one row per workload
    (hostile,) = [r for r in rows if "pwned" in r]
    assert f" {rig.hostile.pid} " in hostile
    assert " \\x1b[2J\\x1b[Hpwned\\ntwo\\u202eevil -c import time" in hostile
