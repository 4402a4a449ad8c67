"""Each CLI verb's handler, named where the verb is declared (``set_defaults(handler=...)``).

A handler is imported only when its verb runs, so ``backstop nodes`` never loads the daemons,
the cloud SDKs or the Kubernetes client.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from backstop.cli.parser_style import Parser, Subcommands

Handler = Callable[[argparse.Namespace], int]


def lazy(module: str, function: str) -> Handler:
    """The handler ``backstop.cli.<module>.<function>(args)``, imported on first call."""

    def handler(args: argparse.Namespace) -> int:
        run: Handler = getattr(importlib.import_module(f"backstop.cli.{module}"), function)
        return run(args)

    handler.__qualname__ = f"{module}.{function}"
    return handler


def verb(sub: Subcommands, name: str, handler: Handler, help: str, description: str = "") -> Parser:
    """The command ``name`` that runs ``handler``; its help is also what ``backstop NAME -h``
    says it does, unless there is a longer ``description``."""
    parser = sub.add_parser(name, help=help, description=description or help)
    parser.set_defaults(handler=handler)
    return parser
