"""Where each setting of a command comes from: its flag, else ``BACKSTOP_<FLAG>``, else the
daemon's TOML file, else the parser's default.

Owns the layering and its checks. The command line is parsed once with every default held
back, so what was given there is known; every other destination of the command is then filled
from the environment (an empty variable is unset), from the daemon's file
(``--config``, default ``/etc/backstop/<daemon>.toml``; a missing default file is fine, a
missing named one is an error) or from the default, in that order. A value from the
environment or the file goes through the flag's own type and choices, so it is held to the
same range; one refused, or a key the daemon has no flag for, stops the command with exit 2
before anything starts. Every command reads the environment for the global flags; the daemons
read it, and their file, for their own flags too. The result records each setting's source
for ``backstop config show``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

DAEMONS = {"controller": "serve", "agent": "run", "cloud": "run", "operator": "run"}
"""Each daemon's command (``backstop controller serve``...): the name of its file, too."""
CONFIG_DIR = "/etc/backstop"
ENV_PREFIX = "BACKSTOP_"
_ENV_ALIASES = {"as": ("BACKSTOP_USER",)}
"""Names kept from before every flag had its own variable (``--as`` is BACKSTOP_USER)."""
_KEY_ALIASES = {"user": "as"}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting of a command: its flag name, value and where the value came from."""

    name: str
    """The long flag name without its dashes: ``report-interval``."""
    dest: str
    """Where argparse keeps it: ``report_interval``."""
    value: Any
    source: str
    """``flag``, ``env BACKSTOP_X``, ``file PATH`` or ``default``."""


class SourceError(Exception):
    """A value from the environment or a file that its flag refuses."""


def parse_layered(
    parser: argparse.ArgumentParser, argv: list[str], *, check_required: bool = True
) -> tuple[argparse.Namespace, list[Setting]]:
    """``argv`` parsed with the environment and the daemon's file under it."""
    if {"-h", "--help"} & set(argv):
        parser.parse_args(argv)  # help shows the defaults, then exits
    held = _hold_defaults(parser)
    try:
        args = parser.parse_args(argv)
    finally:
        _restore(held)
    chain = _chain(parser, args)
    given = set(vars(args))
    settable = _settable(chain, _daemon_of(args))
    layers = [_env_layer(settable)]
    daemon = _daemon_of(args)
    if daemon:
        layers.append(_file_layer(settable, daemon, args, given))
    settings = []
    for name, action in settable.items():
        if action.dest in given:
            settings.append(Setting(name, action.dest, getattr(args, action.dest), "flag"))
            continue
        found = next((layer[name] for layer in layers if name in layer), None)
        value, source = found or (_default(action), "default")
        setattr(args, action.dest, value)
        settings.append(Setting(name, action.dest, value, source))
    for sub in chain:
        for action in _own(sub):
            if not hasattr(args, action.dest):
                setattr(args, action.dest, _default(action))
            if check_required and action.required and getattr(args, action.dest) is None:
                sub.error(f"the following arguments are required: {action.option_strings[0]}")
    return args, settings


def _hold_defaults(parser: argparse.ArgumentParser) -> list[tuple[argparse.Action, Any, bool]]:
    held = []
    for p in _parsers(parser):
        for action in _own(p):
            held.append((action, action.default, action.required))
            action.default, action.required = argparse.SUPPRESS, False
    return held


def _restore(held: list[tuple[argparse.Action, Any, bool]]) -> None:
    for action, default, required in held:
        action.default, action.required = default, required


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _own(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """The options ``parser`` sets a value for (not help, version or the copies of the global
    flags on a subcommand, whose default is held back already)."""
    for action in parser._actions:
        if (
            action.option_strings
            and action.default is not argparse.SUPPRESS
            and not isinstance(action, argparse._HelpAction | argparse._VersionAction)
        ):
            yield action


def _chain(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Any]:
    """The parsers of the command that ``args`` runs, from the top."""
    chain = [parser]
    for dest in ("command", "subcommand"):
        for action in chain[-1]._actions:
            if isinstance(action, argparse._SubParsersAction) and hasattr(args, dest):
                sub = action.choices.get(getattr(args, dest))
                if sub is not None:
                    chain.append(sub)
                break
    return chain


def _daemon_of(args: argparse.Namespace) -> str:
    command = getattr(args, "command", None)
    if command in DAEMONS and getattr(args, "subcommand", None) == DAEMONS[command]:
        return str(command)
    return ""


def _settable(chain: list[Any], daemon: str) -> dict[str, argparse.Action]:
    """Flag name (``report-interval``) to its option: the global flags, and a daemon's own,
    which win over a global flag of the same name (as on the command line)."""
    names: dict[str, argparse.Action] = {}
    for parser in chain[:1] + (chain[-1:] if daemon else []):
        for action in _own(parser):
            if action.dest == "config":
                continue
            long = next((o for o in action.option_strings if o.startswith("--")), None)
            if long:
                names[long[2:]] = action
    return names


def env_names(name: str) -> tuple[str, ...]:
    return (ENV_PREFIX + name.replace("-", "_").upper(), *_ENV_ALIASES.get(name, ()))


def _env_layer(settable: Mapping[str, argparse.Action]) -> dict[str, tuple[Any, str]]:
    layer = {}
    for name, action in settable.items():
        for var in env_names(name):
            text = os.environ.get(var, "")
            if text:
                try:
                    layer[name] = (_from_text(action, text), f"env {var}")
                except SourceError as exc:
                    _refuse(f"environment variable {var}: {exc}")
                break
    return layer


def default_config(daemon: str) -> str:
    """The file a daemon reads when no --config (nor BACKSTOP_CONFIG) names another."""
    return f"{CONFIG_DIR}/{daemon}.toml"


def _config_path(args: argparse.Namespace, given: set[str], daemon: str) -> tuple[str, str]:
    """The file and whether it was named (a named file must exist)."""
    if "config" in given:
        return str(args.config), "flag"
    if os.environ.get("BACKSTOP_CONFIG", ""):
        return os.environ["BACKSTOP_CONFIG"], "env BACKSTOP_CONFIG"
    return default_config(daemon), "default"


def _file_layer(
    settable: Mapping[str, argparse.Action],
    daemon: str,
    args: argparse.Namespace,
    given: set[str],
) -> dict[str, tuple[Any, str]]:
    path, source = _config_path(args, given, daemon)
    args.config = path
    given.add("config")  # shown with its own source, below
    args.config_source = source
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except FileNotFoundError:
        if source == "default":
            return {}
        _refuse(f"{path}: no such configuration file")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        _refuse(f"{path}: {exc}")
    layer = {}
    for key, raw in table.items():
        name = key.replace("_", "-")
        name = _KEY_ALIASES.get(name, name)
        action = settable.get(name)
        if action is None:
            _refuse(f"{path}: key {key!r}: unknown key (no {daemon} flag --{name})")
        try:
            layer[name] = (_from_toml(action, raw), f"file {path}")
        except SourceError as exc:
            _refuse(f"{path}: key {key!r}: {exc}")
    return layer


def _refuse(message: str) -> NoReturn:
    """Stop before anything starts: a usage error (exit 2)."""
    from backstop.cli.parser_style import EXIT_USAGE
    from backstop.cli.render import escape

    sys.stderr.write(f"backstop: error: {escape(message)}\n")
    raise SystemExit(EXIT_USAGE)


def _is_switch(action: argparse.Action) -> bool:
    return isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction)


def _switch(action: argparse.Action, on: bool) -> bool:
    return on if isinstance(action, argparse._StoreTrueAction) else not on


def _from_text(action: argparse.Action, text: str) -> Any:
    if _is_switch(action):
        word = text.strip().lower()
        if word not in _TRUE + _FALSE:
            raise SourceError(f"{text!r} is not a switch: give 1 or 0 (true, false)")
        return _switch(action, word in _TRUE)
    if isinstance(action, argparse._AppendAction):
        return [_convert(action, part.strip()) for part in text.split(",") if part.strip()]
    return _convert(action, text)


def _from_toml(action: argparse.Action, raw: object) -> Any:
    if _is_switch(action):
        if not isinstance(raw, bool):
            raise SourceError(f"wrong type: expected true or false, not {_kind(raw)}")
        return _switch(action, raw)
    if isinstance(action, argparse._AppendAction):
        items = raw if isinstance(raw, list) else [raw]
        return [_convert(action, _scalar(action, item)) for item in items]
    return _convert(action, _scalar(action, raw))


def _numeric(action: argparse.Action) -> bool:
    """Whether the flag takes a number (its type turns one of a few numbers into one)."""
    if action.type is None:
        return False
    for probe in ("1", "0", "0.5", "1000"):
        try:
            value = action.type(probe)  # type: ignore[operator]
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            continue
        return isinstance(value, int | float) and not isinstance(value, bool)
    return False


def _scalar(action: argparse.Action, raw: object) -> str:
    """A TOML value as the text its flag would be given, if it has the flag's type."""
    if _numeric(action):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise SourceError(f"wrong type: expected a number, not {_kind(raw)}")
        return str(raw)
    if not isinstance(raw, str):
        raise SourceError(f"wrong type: expected a string, not {_kind(raw)}")
    return raw


def _kind(raw: object) -> str:
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, int | float):
        return "a number"
    if isinstance(raw, str):
        return "a string"
    if isinstance(raw, list):
        return "an array"
    return "a table" if isinstance(raw, dict) else type(raw).__name__


def _convert(action: argparse.Action, text: str) -> Any:
    """``text`` through the flag's type and choices, as argparse would take it."""
    value: Any = text
    if action.type is not None:
        try:
            value = action.type(text)  # type: ignore[operator]
        except argparse.ArgumentTypeError as exc:
            raise SourceError(str(exc)) from None
        except (TypeError, ValueError):
            kind = getattr(action.type, "__name__", "")
            raise SourceError(f"invalid {kind} value: {text!r}".replace("  ", " ")) from None
    if action.choices is not None and value not in action.choices:
        shown = ", ".join(map(str, action.choices))
        raise SourceError(f"{value!r} is not allowed: choose from {shown}")
    return value


def _default(action: argparse.Action) -> Any:
    if isinstance(action.default, str) and action.type is not None:
        return action.type(action.default)  # type: ignore[operator]
    if isinstance(action.default, list):
        return list(action.default)
    return action.default
