"""Command-line redaction: hide secrets before a command line leaves the node.

What is hidden (each value becomes ``***``; the flag or variable name stays, so an operator
still sees that a key was passed):

- the value of a secret-looking flag, in both ``--api-key X`` and ``--api-key=X`` forms (an
  argument that starts with ``--`` is read as the next flag, not as the value); a
  flag is secret-looking when one of its dash-separated words is a secret word (``token``,
  ``password``, ``secret``, ...) or it contains a secret compound (``api-key``,
  ``access-key``, ...). ``--tokenizer`` and ``--max-tokens`` are not secret;
- ``NAME=value`` arguments whose name ends in ``KEY``, ``TOKEN``, ``SECRET``, ``PASSWORD``,
  ``PASSWD`` or ``CREDENTIALS`` (any case, ``.``/``-`` read as ``_``);
- credentials in URLs: ``https://user:pass@host`` → ``https://***@host``;
- ``Bearer``/``Basic`` authorisation values, inline or as the next argument;
- strings shaped like well-known tokens (Hugging Face ``hf_...``, OpenAI ``sk-...``, GitHub
  ``ghp_...``, AWS access key ids, Slack ``xox.-...``) wherever they appear.

Model names, paths and ports are left as they are. The result is capped at
:data:`MAX_ARGS` arguments of at most :data:`MAX_ARG_CHARS` characters and
:data:`MAX_TOTAL_CHARS` characters in all; what is cut is marked with :data:`TRUNCATED`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MASK = "***"
TRUNCATED = "...[truncated]"
MAX_ARGS = 256
MAX_ARG_CHARS = 1024
MAX_TOTAL_CHARS = 8192

_SECRET_WORDS = frozenset(
    {"token", "password", "passwd", "secret", "apikey", "credential", "credentials", "passphrase"}
)
_SECRET_COMPOUNDS = (
    "api-key",
    "access-key",
    "secret-key",
    "private-key",
    "auth-key",
    "client-secret",
    "auth-token",
    "access-token",
)
_SECRET_NAME = re.compile(r"(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$")
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)=(.*)$", re.DOTALL)
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@]+@")
_AUTH_INLINE = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
_AUTH_WORDS = frozenset({"bearer", "basic"})
_TOKEN_SHAPES = (
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),
)


def is_secret_flag(flag: str) -> bool:
    """Whether a flag's value should be hidden (``--hf-token`` yes, ``--tokenizer`` no)."""
    name = flag.lstrip("-").lower().replace("_", "-")
    if not name:
        return False
    if any(word in _SECRET_WORDS for word in name.split("-")):
        return True
    return any(compound in name for compound in _SECRET_COMPOUNDS)


def _is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name.upper().replace(".", "_").replace("-", "_")))


def _scrub(text: str) -> str:
    """Hide credentials embedded anywhere in one argument."""
    text = _URL_USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    text = _AUTH_INLINE.sub(lambda m: m.group(1) + " " + MASK, text)
    for shape in _TOKEN_SHAPES:
        text = shape.sub(MASK, text)
    return text


def _redact_one(arg: str) -> tuple[str, bool]:
    """The redacted argument, and whether the next argument is a secret value."""
    if arg.startswith("-"):
        flag, eq, _value = arg.partition("=")
        if is_secret_flag(flag):
            return (f"{flag}={MASK}" if eq else flag), not eq
        return _scrub(arg), False
    if arg.lower() in _AUTH_WORDS or arg.lower().endswith((": bearer", ": basic")):
        return arg, True
    assignment = _ASSIGNMENT.match(arg)
    if assignment and _is_secret_name(assignment.group(1)):
        return f"{assignment.group(1)}={MASK}", False
    return _scrub(arg), False


def redact_cmdline(argv: Sequence[str]) -> tuple[str, ...]:
    """A copy of ``argv`` with secret values replaced by ``***`` and its size capped."""
    out: list[str] = []
    total = 0
    hide_next = False
    for index, arg in enumerate(argv):
        if index >= MAX_ARGS or total >= MAX_TOTAL_CHARS:
            out.append(TRUNCATED)
            break
        if hide_next and not arg.startswith("--"):
            redacted, hide_next = MASK, False
        else:
            redacted, hide_next = _redact_one(arg)
        limit = min(MAX_ARG_CHARS, MAX_TOTAL_CHARS - total)
        if len(redacted) > limit:
            redacted = redacted[:limit] + TRUNCATED
        out.append(redacted)
        total += len(redacted)
    return tuple(out)
