"""``--watch`` on the listings: print the listing, then again each time it changes.

The listing is asked for every ``--interval`` seconds (2 by default) and printed only when what
it prints differs from the last time, each time under a line with the time (tables) or as one
more document (``-o json|yaml``, one per change), until interrupted (SIGINT or SIGTERM: the
look under way finishes, then exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from backstop.cli.output import structured
from backstop.core.times import rfc3339

if TYPE_CHECKING:
    from backstop.cli.client import ControllerClient

Verb = Callable[["ControllerClient", argparse.Namespace], int]
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def watchable(verb: Verb) -> Verb:
    """``verb`` once, or with ``--watch`` each time its output changes."""

    def run(client: ControllerClient, args: argparse.Namespace) -> int:
        if not getattr(args, "watch", False):
            return verb(client, args)
        stop = threading.Event()
        # An interrupt only asks the loop to end: raised inside a gRPC call, it could be taken
        # for a cancelled call and retried, and the watch would never end.
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
        last = None
        try:
            while not stop.is_set():
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    verb(client, args)
                if out.getvalue() != last and not stop.is_set():
                    if last is not None and not structured(args):
                        print(f"--- {rfc3339(time.time())}")
                    sys.stdout.write(out.getvalue())
                    sys.stdout.flush()
                    last = out.getvalue()
                stop.wait(args.interval)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    return run
