"""How every ``backstop`` parser behaves: a usage error exits 2 with its message escaped, and
help shows each option's default where it is not empty or already said."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, TypeAlias

from backstop.core.errors import InvalidInput, exit_code_for

EXIT_USAGE = exit_code_for(InvalidInput("usage"))


class HelpWithDefaults(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help, unless the default is empty, false or
    none, or the help already speaks of its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is argparse.SUPPRESS
            or default in (None, False, "", [], ())
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpWithDefaults)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        from backstop.cli.render import escape

        self.print_usage(sys.stderr)
        sys.stderr.write(f"backstop: error: {escape(message)}\n")
        raise SystemExit(EXIT_USAGE)


if TYPE_CHECKING:
    Subcommands: TypeAlias = argparse._SubParsersAction[Parser]
else:
    Subcommands = argparse._SubParsersAction


def command_group(sub: Subcommands, name: str, help_text: str) -> Subcommands:
    """A command that does its work through one of its subcommands (``backstop pki init``)."""
    group = sub.add_parser(name, help=help_text, description=help_text)
    subcommands = group.add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", parser_class=Parser, help="what to do"
    )
    subcommands.required = True
    return subcommands
