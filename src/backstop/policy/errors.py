"""The one error a policy file is refused with: :class:`PolicyError`, an
:class:`~backstop.core.errors.InvalidInput` whose message is ``SOURCE:LINE: reason``, the line
being that of the offending key or value (1-based). Text quoted from the file is escaped
(``repr``), so a message is safe to print on a terminal."""

from __future__ import annotations

from backstop.core.errors import InvalidInput


def shown(text: str) -> str:
    """``text`` as it may appear in a message: as given when printable, else its ``repr``."""
    return text if text.isprintable() else repr(text)


class PolicyError(InvalidInput):
    """A policy file that cannot be used; ``line`` is 1-based, ``reason`` the bare reason."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{shown(source)}:{line}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason
