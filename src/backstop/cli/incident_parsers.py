"""The parsers of ``backstop incident open|list|show|close|report``, and the ``--incident``
flag every correcting verb and ``resume`` take."""

from __future__ import annotations

import argparse

from backstop.cli.numbers import whole
from backstop.cli.output import add_output_flag
from backstop.cli.parser_style import Parser, Subcommands, command_group
from backstop.cli.verbs import lazy, verb


def add_incident_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--incident",
        default="",
        metavar="ID",
        help="the open incident this belongs to (inc-...; signed with the correction)",
    )


def add_incidents(sub: Subcommands) -> None:
    group = command_group(sub, "incident", "incidents: one response, its timeline and report")

    def command(name: str, help: str) -> Parser:
        parser = verb(group, name, lazy("incidents", f"{name}_incident"), help)
        add_output_flag(parser)
        return parser

    opened = command("open", "open an incident (an operator); prints its id")
    opened.add_argument("--title", required=True, help="what is wrong, in one line")
    opened.add_argument(
        "--severity", choices=("info", "warning", "critical"), default="warning", help="how bad"
    )
    listing = command("list", "incidents, newest first")
    listing.add_argument("--open", action="store_true", help="only the open ones")
    listing.add_argument("--limit", type=whole(1, 10_000), default=100, help="at most this many")
    show = command("show", "an incident's timeline: every step, its time and actor")
    show.add_argument("id", metavar="ID", help="the incident (inc-...)")
    close = command("close", "close an incident (an operator); corrections can no longer join")
    close.add_argument("id", metavar="ID", help="the incident (inc-...)")
    close.add_argument("--summary", required=True, help="how it ended, in one line")
    report = command("report", "write the post-incident report (Markdown and JSON)")
    report.add_argument("id", metavar="ID", help="the incident (inc-...)")
    report.add_argument("--out", default=".", metavar="DIR", help="where (default: here)")
