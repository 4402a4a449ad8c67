"""The flags every command takes (``--controller``, ``--tls-dir``, ``--key``, ...), accepted
before or after the subcommand.

The top-level parser holds them with their defaults (the environment, BACKSTOP_CONTROLLER and
the like, is laid over them by :mod:`backstop.cli.config_sources`); every subcommand's parser
holds them again with no default at all, so a flag
given after the subcommand replaces the one given before it, and one not given there leaves
the top level's value alone. A subcommand with a flag of the same name of its own (the daemons'
``--tls-dir``) keeps its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from backstop.cli.numbers import log_level
from backstop.core.settings import DEFAULT_CONTROLLER


def _flags() -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    return [
        (
            ("--controller",),
            {
                "default": DEFAULT_CONTROLLER,
                "metavar": "ADDRESS",
                "help": "controller address HOST:PORT, or several replicas HOST:PORT,HOST:PORT "
                "tried in order (env BACKSTOP_CONTROLLER)",
            },
        ),
        (
            ("--as",),
            {
                "dest": "user",
                "default": "",
                "metavar": "NAME",
                "help": "who is acting (env BACKSTOP_USER; default: the login name)",
            },
        ),
        (
            ("--tls-dir",),
            {
                "default": "",
                "metavar": "DIR",
                "help": "ca.crt, client.crt, client.key for mutual TLS (env BACKSTOP_TLS_DIR)",
            },
        ),
        (
            ("--key",),
            {
                "default": "",
                "metavar": "FILE",
                "help": "your Ed25519 key: corrections and approvals are signed with it "
                "(env BACKSTOP_KEY)",
            },
        ),
        (
            ("--insecure",),
            {
                "action": "store_true",
                "default": False,
                "help": "plaintext to a loopback controller in open mode (env BACKSTOP_INSECURE=1)",
            },
        ),
        (
            ("--log-level",),
            {
                "type": log_level,
                "default": "info",
                "help": "debug, info, warning, error (env BACKSTOP_LOG_LEVEL)",
            },
        ),
        (
            ("--log-format",),
            {
                "choices": ("auto", "text", "json"),
                "default": "auto",
                "help": "daemon log format (env BACKSTOP_LOG_FORMAT)",
            },
        ),
    ]


def add_global_flags(parser: argparse.ArgumentParser) -> None:
    """The flags with their defaults, on the top-level parser."""
    for names, options in _flags():
        parser.add_argument(*names, **options)


def spread_global_flags(parser: argparse.ArgumentParser) -> None:
    """The flags again, without defaults, on every subcommand below ``parser``."""
    for sub in _subparsers(parser):
        group = sub.add_argument_group("global options (also before the subcommand)")
        for names, options in _flags():
            if any(name in sub._option_string_actions for name in names):
                continue  # the subcommand's own flag of that name
            shown = options["default"]
            group.add_argument(
                *names,
                **{
                    **options,
                    "default": argparse.SUPPRESS,
                    "help": f"{options['help']} (default: {shown!s})".replace("%", "%%")
                    if shown not in ("", False)
                    else options["help"],
                },
            )


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _subparsers(sub)
