"""Free text people give (a correction's reason): visible, no terminal controls."""

from __future__ import annotations

import unicodedata

from backstop.core.errors import InvalidInput

MAX_REASON_LEN = 1024
_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
"""Controls (C0, C1, ESC, DEL, newlines, tabs), format characters (bidi overrides and
isolates, zero-width marks), surrogates, private-use and unassigned code points, and line or
paragraph separators: none of them has a place in a one-line reason."""


def validate_reason(reason: str, max_len: int = MAX_REASON_LEN) -> None:
    """Refuse a reason that is missing, only blank, too long or holds control characters."""
    if not reason or not reason.strip():
        raise InvalidInput("a reason is required: say why (it goes into the audit record)")
    validate_line(reason, "reason", max_len)


def validate_line(value: str, what: str, max_len: int = MAX_REASON_LEN) -> None:
    """Refuse a one-line text (``what`` names it) that is too long or holds control
    characters."""
    if len(value) > max_len:
        raise InvalidInput(f"{what} is longer than {max_len} characters")
    bad = sorted({c for c in value if unicodedata.category(c) in _HIDDEN})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
        raise InvalidInput(
            f"the {what} holds control or invisible characters ({shown}): "
            "write it as plain text on one line"
        )
