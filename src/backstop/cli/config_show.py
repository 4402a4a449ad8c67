"""``backstop config show``: a daemon's effective settings and where each came from (its flag,
a ``BACKSTOP_<FLAG>`` variable, its TOML file or the default), found by the same layering the
daemon's own start goes through (:mod:`backstop.cli.config_sources`)."""

from __future__ import annotations

import argparse
import sys

from backstop.cli.config_sources import DAEMONS, parse_layered
from backstop.cli.output import dumps, structured
from backstop.cli.render import table


def show(args: argparse.Namespace) -> int:
    from backstop.cli.main import build_parser

    flags = [f for f in args.flags if f != "--"] if args.flags[:1] == ["--"] else args.flags
    argv = [args.daemon, DAEMONS[args.daemon], *flags]
    if args.config:
        argv += ["--config", args.config]
    daemon_args, settings = parse_layered(build_parser(), argv, check_required=False)
    rows = [("config", daemon_args.config, daemon_args.config_source)]
    rows += [(s.name, s.value, s.source) for s in settings]
    if structured(args):
        data = {
            "daemon": args.daemon,
            "settings": [{"key": k, "value": v, "source": src} for k, v, src in rows],
        }
        sys.stdout.write(dumps(data, args.output) + "\n")
        return 0
    shown = [(k, _text(v), src) for k, v, src in rows]
    sys.stdout.write(table(("setting", "value", "source"), shown) + "\n")
    return 0


def _text(value: object) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
