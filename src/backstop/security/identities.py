"""Who may do what: operator roles, their public keys, and the approval quorum per action.

A trust policy is a JSON file that the controller and every agent hold::

    {
      "people": [
        {"name": "alice", "role": "operator", "keys": ["<base64 raw Ed25519 public key>"]},
        {"name": "bob", "role": "approver", "keys": ["-----BEGIN PUBLIC KEY-----..."]}
      ],
      "quorum": {"terminate": 1, "shutdown": 2},
      "resume_quorum": {"pause": 1}
    }

Roles are ordered ``viewer < operator < approver < admin``. ``quorum`` gives, per action, how
many distinct approvers besides the issuer must sign; it defaults to 1 for ``terminate`` and
``shutdown`` (the two-person rule) and 0 for every other action. ``resume_quorum`` gives, per
action *undone*, how many approvers a resume of such a correction needs; it defaults to that
action's own quorum, so undoing a shutdown is as guarded as doing it. A malformed file is refused
as a whole with ``InvalidInput`` naming the problem; :class:`TrustPolicyFile` reloads the file
when it changes and keeps the last good policy when an edit is bad.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from backstop.core.errors import InvalidInput
from backstop.core.files import write_atomically
from backstop.core.models import Action
from backstop.security.keys import key_id_of, public_from_text, public_to_text

log = logging.getLogger(__name__)

DEFAULT_QUORUM: Mapping[str, int] = MappingProxyType(
    {Action.TERMINATE.value: 1, Action.SHUTDOWN.value: 1},
)
"""Approvals required when the policy file does not say: the two-person rule for severe actions."""

_POLICY_FIELDS = frozenset({"people", "quorum", "resume_quorum"})
_PERSON_FIELDS = frozenset({"name", "role", "keys"})


class Role(enum.StrEnum):
    """What a person may do, ordered ``viewer < operator < approver < admin``.

    Comparisons (``<``, ``>=``...) follow that order, not the alphabet.
    """

    VIEWER = "viewer"
    """May look: nodes, workloads, corrections, the audit log."""
    OPERATOR = "operator"
    """May also issue corrections."""
    APPROVER = "approver"
    """May also approve corrections that others issued."""
    ADMIN = "admin"
    """May do everything, including approving."""

    @property
    def rank(self) -> int:
        """Position in the order, 0 for viewer."""
        return _ROLE_ORDER.index(self)

    def at_least(self, other: Role | str) -> bool:
        """Whether this role includes everything ``other`` may do."""
        return self.rank >= Role(other).rank

    def __lt__(self, other: str) -> bool:
        return self.rank < Role(other).rank

    def __le__(self, other: str) -> bool:
        return self.rank <= Role(other).rank

    def __gt__(self, other: str) -> bool:
        return self.rank > Role(other).rank

    def __ge__(self, other: str) -> bool:
        return self.rank >= Role(other).rank


_ROLE_ORDER: tuple[Role, ...] = (Role.VIEWER, Role.OPERATOR, Role.APPROVER, Role.ADMIN)


@dataclass(frozen=True)
class Person:
    """One person in the trust policy, with the public keys that sign for them."""

    name: str
    role: Role
    key_ids: tuple[str, ...] = ()
    """Key ids of ``public_keys``, in the same order."""
    public_keys: tuple[bytes, ...] = ()
    """Raw 32-byte Ed25519 public keys."""

    @classmethod
    def with_keys(cls, name: str, role: Role | str, public_keys: Iterable[bytes]) -> Person:
        """A person whose key ids are derived from ``public_keys``."""
        raws = tuple(public_keys)
        return cls(name, Role(role), tuple(key_id_of(raw) for raw in raws), raws)


@dataclass(frozen=True)
class TrustPolicy:
    """People, their roles and keys, and the approval quorum per action.

    Construction validates: unique names, no key listed twice (for one person or across
    people), key ids that match the keys, quorum counts that are non-negative integers for
    known actions. Violations raise ``InvalidInput``.
    """

    people: tuple[Person, ...] = ()
    quorum: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_QUORUM))
    """Approvals required per action, merged over :data:`DEFAULT_QUORUM`; others need none."""
    resume_quorum: Mapping[str, int] = field(default_factory=dict)
    """Approvals a resume needs, per action it undoes; an action not named here: its quorum."""

    _by_name: Mapping[str, Person] = field(init=False, repr=False, compare=False)
    _by_key: Mapping[str, tuple[Person, bytes]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Person] = {}
        by_key: dict[str, tuple[Person, bytes]] = {}
        for person in self.people:
            if person.name in by_name:
                raise InvalidInput(f"trust policy lists {person.name!r} twice")
            by_name[person.name] = person
            if len(person.key_ids) != len(person.public_keys):
                raise InvalidInput(f"{person.name}: key ids and public keys do not pair up")
            for key_id, raw in zip(person.key_ids, person.public_keys, strict=True):
                if key_id != key_id_of(raw):
                    raise InvalidInput(f"{person.name}: key id {key_id} does not match its key")
                if key_id in by_key:
                    holder = by_key[key_id][0].name
                    where = "twice" if holder == person.name else f"also for {holder!r}"
                    raise InvalidInput(
                        f"key {key_id} is listed for {person.name!r} {where}; "
                        "a key must belong to exactly one person",
                    )
                by_key[key_id] = (person, raw)
        merged = dict(DEFAULT_QUORUM)
        for action, count in self.quorum.items():
            _check_quorum_entry(action, count)
            merged[action] = count
        object.__setattr__(self, "quorum", MappingProxyType(merged))
        for action, count in self.resume_quorum.items():
            _check_quorum_entry(action, count)
        object.__setattr__(self, "resume_quorum", MappingProxyType(dict(self.resume_quorum)))
        object.__setattr__(self, "_by_name", MappingProxyType(by_name))
        object.__setattr__(self, "_by_key", MappingProxyType(by_key))

    def person(self, name: str) -> Person | None:
        """The person called ``name``, or ``None``."""
        return self._by_name.get(name)

    def owner_of(self, key_id: str) -> Person | None:
        """The person holding the key ``key_id``, or ``None`` for an unknown key."""
        entry = self._by_key.get(key_id)
        return entry[0] if entry else None

    def public_key(self, key_id: str) -> bytes | None:
        """The raw public key named ``key_id``, or ``None`` for an unknown key."""
        entry = self._by_key.get(key_id)
        return entry[1] if entry else None

    def required_approvals(self, action: str) -> int:
        """How many distinct approvers besides the issuer must sign a correction of ``action``."""
        return self.quorum.get(str(action), 0)

    def required_resume_approvals(self, undone_action: str) -> int:
        """Approvals a resume needs to undo a correction of ``undone_action``.

        ``resume_quorum`` when it names the action, otherwise the quorum of the action itself:
        undo is as guarded as do.
        """
        undone = str(undone_action)
        if undone in self.resume_quorum:
            return self.resume_quorum[undone]
        return self.required_approvals(undone)

    def approvers(self) -> tuple[Person, ...]:
        """Everyone whose approvals count (role approver or admin)."""
        return tuple(p for p in self.people if p.role.at_least(Role.APPROVER))

    def warnings(self) -> tuple[str, ...]:
        """Problems that do not make the policy invalid but will surprise its users."""
        found: list[str] = []
        approvers = self.approvers()
        for action, count in sorted(
            [*self.quorum.items(), *((f"resume of {a}", n) for a, n in self.resume_quorum.items())]
        ):
            if count > len(approvers):
                found.append(
                    f"{action} needs {count} approvals but only {len(approvers)} people "
                    "may approve; it can never be approved",
                )
        found.extend(
            f"{p.name} is an {p.role} without keys and cannot sign"
            for p in self.people
            if p.role.at_least(Role.OPERATOR) and not p.key_ids
        )
        return tuple(found)

    # -- the file format -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: object, *, source: str = "trust policy") -> TrustPolicy:
        """Build a policy from the parsed JSON document; ``source`` names it in errors."""
        if not isinstance(data, dict):
            raise InvalidInput(f"{source}: expected a JSON object at the top level")
        _refuse_unknown(data, _POLICY_FIELDS, source)
        people_data = data.get("people", [])
        if not isinstance(people_data, list):
            raise InvalidInput(f"{source}: 'people' must be a list")
        people = tuple(
            _person_from_dict(item, f"{source}: people[{index}]")
            for index, item in enumerate(people_data)
        )
        quorum_data = data.get("quorum", {})
        if not isinstance(quorum_data, dict):
            raise InvalidInput(f"{source}: 'quorum' must be an object of action: count")
        for action, count in quorum_data.items():
            _check_quorum_entry(action, count, source)
        resume_data = data.get("resume_quorum", {})
        if not isinstance(resume_data, dict):
            raise InvalidInput(
                f"{source}: 'resume_quorum' must be an object of undone action: count"
            )
        for action, count in resume_data.items():
            _check_quorum_entry(action, count, source)
        try:
            return cls(people=people, quorum=dict(quorum_data), resume_quorum=dict(resume_data))
        except InvalidInput as exc:
            raise InvalidInput(f"{source}: {exc.message}") from exc

    @classmethod
    def from_json(cls, text: str, *, source: str = "trust policy") -> TrustPolicy:
        """Parse a policy from JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            ) from exc
        return cls.from_dict(data, source=source)

    @classmethod
    def load(cls, path: Path) -> TrustPolicy:
        """Read and validate the policy file at ``path``."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read trust policy {path}: {exc}") from exc
        return cls.from_json(text, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The policy as the JSON document :meth:`from_dict` reads."""
        return {
            "people": [
                {
                    "name": p.name,
                    "role": p.role.value,
                    "keys": [public_to_text(raw) for raw in p.public_keys],
                }
                for p in self.people
            ],
            "quorum": dict(sorted(self.quorum.items())),
            "resume_quorum": dict(sorted(self.resume_quorum.items())),
        }

    def to_json(self) -> str:
        """The policy as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def dump(self, path: Path) -> None:
        """Write the policy to ``path`` atomically (readable by all; it holds no secrets)."""
        write_atomically(path, self.to_json().encode("utf-8"), mode=0o644)


class TrustPolicyFile:
    """A trust policy file that is re-read whenever it changes on disk.

    :meth:`current` costs one ``stat`` when nothing changed. A bad edit (or a deleted file)
    keeps the last good policy in force and is logged once per change; only the first load
    raises. Thread-safe.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._policy = TrustPolicy.load(path)
        self._log_warnings(self._policy)

    def current(self) -> TrustPolicy:
        """The policy in force: the file's content if valid, else the last good one."""
        with self._lock:
            stamp = self._stat()
            if stamp == self._stamp:
                return self._policy
            self._stamp = stamp
            try:
                policy = TrustPolicy.load(self.path)
            except InvalidInput as exc:
                failure = exc.message
            else:
                failure = ""
            if failure:
                log.error(
                    "trust policy not reloaded, keeping the last good one: %s",
                    failure,
                    extra={"path": str(self.path)},
                )
                return self._policy
            self._policy = policy
            log.info(
                "trust policy reloaded: %d people",
                len(policy.people),
                extra={"path": str(self.path)},
            )
            self._log_warnings(policy)
            return policy

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _log_warnings(self, policy: TrustPolicy) -> None:
        for warning in policy.warnings():
            log.warning("trust policy: %s", warning, extra={"path": str(self.path)})


def _person_from_dict(item: object, where: str) -> Person:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}: expected an object with name, role and keys")
    _refuse_unknown(item, _PERSON_FIELDS, where)
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{where}: 'name' must be a non-empty string")
    where = f"{where} ({name})"
    role_text = item.get("role")
    try:
        role = Role(str(role_text))
    except ValueError as exc:
        known = ", ".join(r.value for r in _ROLE_ORDER)
        raise InvalidInput(f"{where}: unknown role {role_text!r} (known: {known})") from exc
    keys = item.get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InvalidInput(f"{where}: 'keys' must be a list of strings")
    raws: list[bytes] = []
    for index, text in enumerate(keys):
        try:
            raws.append(public_from_text(text))
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: keys[{index}]: {exc.message}") from exc
    return Person.with_keys(name, role, raws)


def _check_quorum_entry(action: object, count: object, source: str = "trust policy") -> None:
    known = {a.value for a in Action}
    if action not in known:
        raise InvalidInput(
            f"{source}: quorum names unknown action {action!r} (known: {', '.join(sorted(known))})",
        )
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InvalidInput(
            f"{source}: quorum for {action} must be a non-negative integer, got {count!r}",
        )


def _refuse_unknown(data: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidInput(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(sorted(allowed))})",
        )
