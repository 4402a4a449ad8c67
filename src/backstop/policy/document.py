"""Policy files: :func:`parse_policy` turns the exact bytes of one YAML file into a
:class:`PolicyDocument` (those bytes, their sha256 and the :class:`Policy` they say), or refuses
them with a :class:`~backstop.policy.errors.PolicyError` naming the line. The bytes are kept as
given and never re-serialised: the digest is over what the author wrote, comments included.
The format is documented in ``docs/policies.md``."""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

from backstop.core.errors import InvalidInput
from backstop.core.models import EMPTY_LABELS, Action, ActionParams, Behaviour
from backstop.core.scope import MIN_HASH_PREFIX, check_label
from backstop.core.specs import validate_params
from backstop.policy.cel_view import CelCompileError, CelProgram, compile_expression
from backstop.policy.yaml_nodes import FLOAT_TAG, INT_TAG, STR_TAG, Reader, kind_of, line_of

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HEX = re.compile(r"^[0-9a-f]+$")
E = TypeVar("E", bound=enum.StrEnum)
DEFAULT_MAX_TARGETS_PER_HOUR = 10
MAX_TARGETS_PER_HOUR = 10_000


class PolicyAction(enum.StrEnum):
    """What a policy does to a workload it matches: alert only, or one correction."""

    ALERT = "alert"
    OBSERVE = "observe"
    THROTTLE = "throttle"
    PAUSE = "pause"
    TERMINATE = "terminate"
    SHUTDOWN = "shutdown"

    @property
    def correction(self) -> Action | None:
        """The correction this action starts; ``None`` for ``alert``."""
        return None if self is PolicyAction.ALERT else Action(self.value)


class Severity(enum.StrEnum):
    """How loudly a match is reported."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Enforce(enum.StrEnum):
    """Who applies the policy: the controller only, or the agents too (pushed to them)."""

    CONTROLLER = "controller"
    """The controller matches reports and starts corrections (the default)."""
    NODE = "node"
    """Pushed to the agents as well, which act on a match without waiting for the controller."""


PARAMS_FOR: Mapping[PolicyAction, tuple[str, ...]] = MappingProxyType(
    {
        PolicyAction.ALERT: (),
        PolicyAction.OBSERVE: ("sample_interval_s",),
        PolicyAction.THROTTLE: ("power_fraction", "cpu_fraction"),
        PolicyAction.PAUSE: (),
        PolicyAction.TERMINATE: ("grace_s",),
        PolicyAction.SHUTDOWN: ("grace_s",),
    }
)
"""The :class:`~backstop.core.models.ActionParams` fields each action takes."""


@dataclass(frozen=True, slots=True)
class Match:
    """What a workload must be for the policy to apply; every field given must match."""

    model_id: str = ""
    """The model's id, or a prefix of at least 12 hex characters (lower case)."""
    structure_id: str = ""
    """The model's structure id (shared by fine-tunes), or such a prefix."""
    architecture: str = ""
    """Exact, case-insensitive (stored lower case)."""
    min_parameters: int | None = None
    framework: str = ""
    """Exact, case-insensitive (stored lower case)."""
    behaviour: Behaviour | None = None
    namespace: str = ""
    node: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY_LABELS)
    """Each must equal the workload's label (workload labels over its node's)."""
    unattributed: bool | None = None
    expression: str = ""
    """CEL over the ``workload`` variable; compiled once, into ``program``."""
    program: CelProgram | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Policy:
    """What one policy file says."""

    name: str
    """A DNS label (1-63 of a-z, 0-9, '-'): the policy's identity across versions."""
    match: Match
    """Which workloads it applies to."""
    action: PolicyAction
    """What a match does: alert only, or start that correction."""
    description: str = ""
    """Free text for people; shown with its alerts."""
    params: ActionParams = field(default_factory=ActionParams)
    """Only the fields its action takes (:data:`PARAMS_FOR`), within the wire's bounds."""
    severity: Severity = Severity.WARNING
    enforce: Enforce = Enforce.CONTROLLER
    max_targets_per_hour: int = DEFAULT_MAX_TARGETS_PER_HOUR
    """How many workloads it may start corrections on in any hour (its blast radius)."""
    incident: str = ""
    expires_at_s: float | None = None
    """After this (epoch seconds) it matches nothing; ``None``: never."""

    @property
    def corrects(self) -> bool:
        """Whether a match starts a correction (every action but ``alert``)."""
        return self.action is not PolicyAction.ALERT


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    """A parsed policy file: the exact bytes, their sha256 (hex) and what they say."""

    raw: bytes
    digest: str
    policy: Policy


_TOP = (
    *("name", "description", "match", "action", "params", "severity", "enforce"),
    *("max_targets_per_hour", "incident", "expires"),
)
_MATCH = (
    *("model_id", "structure_id", "architecture", "min_parameters", "framework", "behaviour"),
    *("namespace", "node", "labels", "unattributed", "expression"),
)


def parse_policy(raw: bytes, source: str = "<policy>") -> PolicyDocument:
    """Parse one policy file; raises :class:`~backstop.policy.errors.PolicyError` at the
    first fault in the file's order."""
    r = Reader(source)
    root = r.compose(raw)
    values: dict[str, Any] = {}
    params: yaml.Node | None = None
    for key, _, node in r.mapping(root, "the policy", _TOP):
        if key == "params":
            params = node  # read once the action is known, wherever it stands
        else:
            values[_FIELD.get(key, key)] = _READERS[key](r, node)
    for required in ("name", "match", "action"):
        if required not in values:
            raise r.fail(root, f"missing required field {required!r}")
    values["params"] = _params(r, params, values["action"])
    return PolicyDocument(raw=raw, digest=hashlib.sha256(raw).hexdigest(), policy=Policy(**values))


def _name(r: Reader, node: yaml.Node) -> str:
    name = r.string(node, "name", 63)
    if not _NAME.match(name):
        raise r.fail(
            node,
            f"name {name!r} must be 1-63 characters of a-z, 0-9 and '-', "
            "beginning and ending with a letter or digit",
        )
    return name


def _choice(r: Reader, node: yaml.Node, name: str, kind: type[E]) -> E:
    text = r.scalar(node, name, (STR_TAG,), f"one of {', '.join(kind)}")
    try:
        return kind(text)
    except ValueError:
        raise r.fail(node, f"{name} {text!r} is not one of {', '.join(kind)}") from None


def _match(r: Reader, node: yaml.Node) -> Match:
    values: dict[str, Any] = {}
    for key, _, value in r.mapping(node, "match", _MATCH):
        if key in ("model_id", "structure_id"):
            values[key] = _hash_prefix(r, value, key)
        elif key in ("architecture", "framework"):
            values[key] = r.string(value, key, 128).lower()
        elif key in ("namespace", "node"):
            values[key] = r.string(value, key, 253)
        elif key == "min_parameters":
            values[key] = r.integer(value, key, 0, 10**15)
        elif key == "behaviour":
            values[key] = _choice(r, value, key, Behaviour)
        elif key == "unattributed":
            values[key] = r.boolean(value, key)
        elif key == "labels":
            values[key] = _labels(r, value)
        else:
            text = r.string(value, key, 1 << 20)
            values[key] = text
            values["program"] = _compile(r, value, text)
    if not values or (set(values) == {"labels"} and not values["labels"]):
        raise r.fail(node, "match is empty: a policy that matches every workload is refused")
    return Match(**values)


def _hash_prefix(r: Reader, node: yaml.Node, name: str) -> str:
    # An all-digit prefix reads as an integer or a number in YAML: its text is what was meant.
    text = r.scalar(node, name, (STR_TAG, INT_TAG, FLOAT_TAG), "a hex string").strip().lower()
    text = text.removeprefix("sha256:")
    if not _HEX.match(text):
        raise r.fail(node, f"{name} {text[:80]!r} is not hex")
    if not MIN_HASH_PREFIX <= len(text) <= 64:
        raise r.fail(
            node,
            f"{name} is {len(text)} hex characters: give {MIN_HASH_PREFIX} to 64 "
            "(a shorter prefix matches too many models)",
        )
    return text


def _labels(r: Reader, node: yaml.Node) -> Mapping[str, str]:
    labels: dict[str, str] = {}
    for key, key_node, value in r.mapping(node, "match.labels"):
        text = r.string(value, f"label {key!r}", 63)
        try:
            check_label(key, "")
        except InvalidInput as exc:
            raise r.fail(key_node, exc.message) from None
        try:
            check_label(key, text)
        except InvalidInput as exc:
            raise r.fail(value, exc.message) from None
        labels[key] = text
    return MappingProxyType(labels)


def _compile(r: Reader, node: yaml.Node, text: str) -> CelProgram:
    try:
        return compile_expression(text)
    except CelCompileError as exc:
        # A block scalar (| or >) begins on the line after its indicator.
        offset = 1 if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">") else 0
        raise r.fail(
            line_of(node) + offset + exc.line - 1, f"expression is not valid CEL: {exc.reason}"
        ) from None


def _params(r: Reader, node: yaml.Node | None, action: PolicyAction) -> ActionParams:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
        return ActionParams()
    allowed = PARAMS_FOR[action]
    every = sorted({n for names in PARAMS_FOR.values() for n in names})
    params = ActionParams()
    for key, key_node, value in r.mapping(node, "params", every):
        if key not in allowed:
            takes = ", ".join(allowed) or "no parameters"
            raise r.fail(key_node, f"{key!r} does not apply to {action.value!r} (it takes {takes})")
        params = replace(params, **{key: r.number(value, key)})
        try:
            validate_params(params)
        except InvalidInput as exc:
            raise r.fail(value, exc.message) from None
    return params


def _description(r: Reader, node: yaml.Node) -> str:
    text = r.string(node, "description", 4096)
    if not text.replace("\n", "").replace("\t", "").isprintable():
        raise r.fail(node, "description holds control or invisible characters")
    return text


def _incident(r: Reader, node: yaml.Node) -> str:
    text = r.string(node, "incident", 128)
    if not text.isprintable():
        raise r.fail(node, f"incident {text!r} holds control or invisible characters")
    return text


def _expires(r: Reader, node: yaml.Node) -> float:
    # YAML reads an unquoted date as a timestamp; its text is still what was written.
    if not isinstance(node, yaml.ScalarNode) or node.tag not in (
        STR_TAG,
        "tag:yaml.org,2002:timestamp",
    ):
        raise r.fail(node, f"expires must be an RFC 3339 time, got {kind_of(node)}")
    text = str(node.value)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or "T" not in text.upper():
        raise r.fail(node, f"expires {text[:80]!r} is not an RFC 3339 time (2027-01-01T00:00:00Z)")
    return when.timestamp()


_FIELD = {"expires": "expires_at_s"}
_READERS: Mapping[str, Callable[[Reader, yaml.Node], Any]] = {
    "name": _name,
    "description": _description,
    "match": _match,
    "action": lambda r, node: _choice(r, node, "action", PolicyAction),
    "severity": lambda r, node: _choice(r, node, "severity", Severity),
    "enforce": lambda r, node: _choice(r, node, "enforce", Enforce),
    "max_targets_per_hour": lambda r, node: r.integer(
        node, "max_targets_per_hour", 1, MAX_TARGETS_PER_HOUR
    ),
    "incident": _incident,
    "expires": _expires,
}
"""How each top-level field is read (``params`` waits for the action)."""
