"""How a PyTorch checkpoint starts, told apart without loading its parser.

:mod:`backstop.agent.weights.torch_zip` brings ``zipfile`` and the pickle scanner (1.8 MiB of
the agent's memory), so it is imported with the first checkpoint found, not with the agent.
"""

from __future__ import annotations

FORMAT = "pytorch"


def looks_like(prefix: bytes) -> bool:
    """A zip archive (``torch.save`` since 1.6)."""
    return prefix.startswith(b"PK\x03\x04")


def looks_like_legacy(prefix: bytes) -> bool:
    """A bare pickle (older ``torch.save``): protocol 2 to 5."""
    return len(prefix) >= 2 and prefix[0] == 0x80 and 2 <= prefix[1] <= 5
