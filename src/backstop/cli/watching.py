"""``--watch`` on the listings: print the listing, then again each time it changes.

The listing is asked for every ``--interval`` seconds (2 by default) and printed only when what
it prints differs from the last time, each time under a line with the time (tables) or as one
more document (``-o json|yaml``, one per change), until interrupted (exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from backstop.cli import render
from backstop.cli.output import structured

if TYPE_CHECKING:
    from backstop.cli.client import ControllerClient

Verb = Callable[["ControllerClient", argparse.Namespace], int]


def watchable(verb: Verb) -> Verb:
    """``verb`` once, or with ``--watch`` each time its output changes."""

    def run(client: ControllerClient, args: argparse.Namespace) -> int:
        if not getattr(args, "watch", False):
            return verb(client, args)
        last = None
        try:
            while True:
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    verb(client, args)
                if out.getvalue() != last:
                    if last is not None and not structured(args):
                        print(f"--- {render.rfc3339(time.time())}")
                    sys.stdout.write(out.getvalue())
                    sys.stdout.flush()
                    last = out.getvalue()
                time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0

    return run
