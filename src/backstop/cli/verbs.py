"""Each CLI verb's handler, named where the verb is declared (``set_defaults(handler=...)``).

A handler is imported only when its verb runs, so ``backstop nodes`` never loads the daemons,
the cloud SDKs or the Kubernetes client.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


def lazy(module: str, function: str) -> Handler:
    """The handler ``backstop.cli.<module>.<function>(args)``, imported on first call."""

    def handler(args: argparse.Namespace) -> int:
        run: Handler = getattr(importlib.import_module(f"backstop.cli.{module}"), function)
        return run(args)

    handler.__qualname__ = f"{module}.{function}"
    return handler
