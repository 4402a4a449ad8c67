"""Reading a policy file's YAML as nodes, never as objects: one document composed with the
safe loader (no tags resolved to Python objects, aliases left as shared nodes), every mapping
checked for duplicate keys, and typed readers of scalars that refuse with the line of the node
(:class:`~backstop.policy.errors.PolicyError`)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Iterator

import yaml

from backstop.policy.errors import PolicyError

MAX_POLICY_BYTES = 64 * 1024
"""A policy file is small; a larger one is refused before it is parsed."""

STR_TAG = "tag:yaml.org,2002:str"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
BOOL_TAG = "tag:yaml.org,2002:bool"
NULL_TAG = "tag:yaml.org,2002:null"
MAP_TAG = "tag:yaml.org,2002:map"
_KINDS = {
    STR_TAG: "a string",
    INT_TAG: "an integer",
    FLOAT_TAG: "a number",
    BOOL_TAG: "true or false",
    NULL_TAG: "nothing (null)",
    MAP_TAG: "a mapping",
    "tag:yaml.org,2002:seq": "a list",
    "tag:yaml.org,2002:timestamp": "a timestamp",
}


def line_of(node: yaml.Node) -> int:
    """The 1-based line a node starts on."""
    return int(node.start_mark.line) + 1


def kind_of(node: yaml.Node) -> str:
    """What a node holds, in words, for "expected X, got Y" messages."""
    return _KINDS.get(str(node.tag), f"a value tagged {node.tag!r}")


class Reader:
    """The typed readers of one file's nodes; every refusal names ``source`` and a line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: yaml.Node | int, reason: str) -> PolicyError:
        """The error to raise for ``node`` (or a line number)."""
        line = node if isinstance(node, int) else line_of(node)
        return PolicyError(self.source, line, reason)

    def compose(self, raw: bytes) -> yaml.Node:
        """The file's single YAML document as a node tree."""
        if len(raw) > MAX_POLICY_BYTES:
            line = raw[:MAX_POLICY_BYTES].count(b"\n") + 1
            raise self.fail(line, f"the file is over {MAX_POLICY_BYTES // 1024} KiB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(raw[: exc.start].count(b"\n") + 1, "the file is not UTF-8") from None
        try:
            documents = yaml.compose_all(text, Loader=yaml.SafeLoader)
            first = next(documents, None)
            second = next(documents, None)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = int(mark.line) + 1 if mark is not None else 1
            problem = exc.problem or exc.context or "malformed"
            raise self.fail(line, f"not valid YAML: {problem}") from None
        except yaml.YAMLError as exc:
            raise self.fail(1, f"not valid YAML: {type(exc).__name__}") from None
        except RecursionError:
            raise self.fail(1, "not valid YAML: nested too deeply") from None
        if second is not None:
            raise self.fail(second, "more than one YAML document: a policy file holds one")
        if first is None:
            raise self.fail(1, "the file is empty: expected a mapping (name, match, action)")
        return first

    def mapping(
        self, node: yaml.Node, what: str, names: Iterable[str] | None = None
    ) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
        """The (key, key node, value node) of a mapping, refusing duplicate or non-string
        keys and, when ``names`` is given, any key outside it (suggesting the nearest)."""
        if not isinstance(node, yaml.MappingNode) or node.tag != MAP_TAG:
            raise self.fail(node, f"{what} must be a mapping, got {kind_of(node)}")
        allowed = tuple(names) if names is not None else None
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != STR_TAG:
                raise self.fail(key_node, f"a key in {what} must be a string")
            key = str(key_node.value)
            if key in seen:
                raise self.fail(
                    key_node, f"duplicate key {key!r} in {what} (first on line {seen[key]})"
                )
            seen[key] = line_of(key_node)
            if allowed is not None and key not in allowed:
                raise self.fail(key_node, unknown(key, what, allowed))
            yield key, key_node, value_node

    def scalar(self, node: yaml.Node, name: str, tags: tuple[str, ...], expected: str) -> str:
        """The text of a scalar node whose tag is one of ``tags``."""
        if not isinstance(node, yaml.ScalarNode) or node.tag not in tags:
            raise self.fail(node, f"{name} must be {expected}, got {kind_of(node)}")
        return str(node.value)

    def string(self, node: yaml.Node, name: str, max_len: int = 256) -> str:
        """A string of at most ``max_len`` characters."""
        value = self.scalar(node, name, (STR_TAG,), "a string")
        if len(value) > max_len:
            raise self.fail(node, f"{name} is longer than {max_len} characters")
        return value

    def integer(self, node: yaml.Node, name: str, low: int, high: int) -> int:
        """A (base 10) integer within ``[low, high]``."""
        text = self.scalar(node, name, (INT_TAG,), "an integer")
        try:
            value = int(text.replace("_", ""), 10)
        except ValueError:
            raise self.fail(node, f"{name} must be a base-10 integer, got {text!r}") from None
        if not low <= value <= high:
            raise self.fail(node, f"{name} must be within [{low}, {high}], got {value}")
        return value

    def number(self, node: yaml.Node, name: str) -> float:
        """A finite number (integer or decimal)."""
        text = self.scalar(node, name, (INT_TAG, FLOAT_TAG), "a number")
        try:
            value = float(text.replace("_", ""))
        except ValueError:
            raise self.fail(node, f"{name} must be a decimal number, got {text!r}") from None
        if not math.isfinite(value):
            raise self.fail(node, f"{name} must be a finite number")
        return value

    def boolean(self, node: yaml.Node, name: str) -> bool:
        """``true`` or ``false``."""
        text = self.scalar(node, name, (BOOL_TAG,), "true or false")
        return text.lower() in ("true", "yes", "on", "y")


def unknown(key: str, what: str, allowed: Iterable[str]) -> str:
    """The reason an unknown name is refused, with the nearest valid name when one is close."""
    names = sorted(allowed)
    near = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]!r}?" if near else f" (valid: {', '.join(names)})"
    return f"unknown field {key!r} in {what}{hint}"
