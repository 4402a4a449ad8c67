"""The CLI's connection to the controller, from global flags and environment."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from backstop.cli.client import ControllerClient
from backstop.cli.heads import HeadMemory
from backstop.cli.verbs import Handler


def client_from_args(args: argparse.Namespace) -> ControllerClient:
    return ControllerClient(
        args.controller,
        tls_dir=Path(args.tls_dir) if args.tls_dir else None,
        insecure=bool(args.insecure),
        heads=HeadMemory(),
    )


def with_client(verb: Callable[[ControllerClient, argparse.Namespace], int]) -> Handler:
    """A verb that talks to the controller, given a client for the call's duration."""

    def handler(args: argparse.Namespace) -> int:
        with client_from_args(args) as client:
            return verb(client, args)

    return handler
