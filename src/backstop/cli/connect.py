"""The CLI's connection to the controller, from global flags and environment."""

from __future__ import annotations

import argparse
from pathlib import Path

from backstop.cli.client import ControllerClient
from backstop.cli.heads import HeadMemory


def client_from_args(args: argparse.Namespace) -> ControllerClient:
    return ControllerClient(
        args.controller,
        tls_dir=Path(args.tls_dir) if args.tls_dir else None,
        insecure=bool(args.insecure),
        heads=HeadMemory(),
    )
