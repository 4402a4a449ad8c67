"""Every verb names its handler where it is declared, and building the parser loads no daemon."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

from backstop.cli.main import build_parser


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {" ".join(path): parser}
    for name, child in subs[0].choices.items():
        found.update(_leaves(child, (*path, name)))
    return found


def test_every_verb_has_a_handler_that_exists() -> None:
    leaves = _leaves(build_parser())
    assert "nodes" in leaves
    assert "pki revoke" in leaves
    assert "agent run" in leaves
    for verb, parser in leaves.items():
        handler = parser.get_default("handler")
        assert handler is not None, f"{verb} has no handler"
        module, _, function = handler.__qualname__.partition(".")
        target = getattr(importlib.import_module(f"backstop.cli.{module}"), function)
        assert callable(target), verb


def test_a_verb_runs_its_own_handler() -> None:
    args = build_parser().parse_args(["keys", "new", "--out", "x"])
    assert args.handler.__qualname__ == "trust.keys_new"
    args = build_parser().parse_args(["throttle", "--all", "--reason", "r"])
    assert args.handler.__qualname__ == "operate.correct"


def test_building_the_parser_loads_no_daemon_or_heavy_client() -> None:
    code = (
        "import sys; from backstop.cli.main import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['backstop','controller'],['backstop','agent'],['backstop','operator'],"
        "['backstop','cloud']) or m.split('.')[0] in ('kubernetes','boto3','grpc')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
