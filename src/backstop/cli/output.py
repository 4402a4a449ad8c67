"""``-o table|wide|json|yaml``: which of them a command prints, and how wide its tables may be.

``json`` and ``yaml`` print the same data (the JSON shapes scripts rely on, see
``docs/operations.md``). ``table`` fits the terminal: on a terminal, or with COLUMNS set, a
table wider than that has its long cells (commands, holds, names) cut with ``…``; piped, it is
printed whole. ``wide`` never cuts. State words are coloured only on a terminal, and never
with NO_COLOR set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

from backstop.cli.numbers import seconds

FORMATS = ("table", "wide", "json", "yaml")
STRUCTURED = ("json", "yaml")


@dataclass(frozen=True, slots=True)
class Layout:
    """How a table is drawn for this call."""

    width: int | None = None
    """At most this many columns; ``None``: as wide as it is."""
    wide: bool = False
    """``-o wide``: every cell whole, columns that ``table`` leaves out shown."""
    colour: bool = False


def add_output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default="table",
        help="table (fits the terminal), wide (nothing cut), json or yaml (the same data)",
    )


def add_watch_flags(parser: argparse.ArgumentParser) -> None:
    """``-w/--watch`` and ``--interval`` (see :mod:`backstop.cli.watching`)."""
    parser.add_argument(
        "-w", "--watch", action="store_true", help="print again each time the listing changes"
    )
    parser.add_argument(
        "--interval",
        type=seconds(0.2, 3600),
        default=2.0,
        help="seconds between looks with --watch",
    )


def structured(args: argparse.Namespace) -> bool:
    """Whether the call prints data (``json``, ``yaml``) rather than text for people."""
    return getattr(args, "output", "table") in STRUCTURED


def dumps(data: object, fmt: str, *, indent: int | None = 2, sort_keys: bool = True) -> str:
    """``data`` as ``-o json`` (with the given layout) or ``-o yaml`` prints it."""
    if fmt == "yaml":
        import yaml

        text: str = yaml.safe_dump(
            data, sort_keys=sort_keys, allow_unicode=True, default_flow_style=False
        )
        return text.rstrip("\n")
    return json.dumps(data, indent=indent, sort_keys=sort_keys)


def emit(
    args: argparse.Namespace,
    data: Callable[[], object],
    text: Callable[[Layout], str],
    *,
    indent: int | None = 2,
    sort_keys: bool = True,
) -> int:
    """Print ``data()`` for ``-o json|yaml``, else ``text(layout)``."""
    if structured(args):
        print(dumps(data(), args.output, indent=indent, sort_keys=sort_keys))
    else:
        print(text(layout(args)))
    return 0


def layout(args: argparse.Namespace) -> Layout:
    wide = getattr(args, "output", "table") == "wide"
    return Layout(width=None if wide else terminal_width(), wide=wide, colour=use_colour())


def terminal_width() -> int | None:
    """COLUMNS when set, else the terminal's width; ``None`` when piped without COLUMNS."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def use_colour() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")
