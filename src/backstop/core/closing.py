"""Objects that close themselves at the end of a ``with`` block.

:class:`ClosedOnExit` is the base a class with a ``close()`` method takes so that ``with thing:``
hands back the thing itself and closes it when the block ends, however it ends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class ClosedOnExit(ABC):
    """Its own context manager: entering returns it, leaving calls :meth:`close`."""

    @abstractmethod
    def close(self) -> None:
        """Release what the object holds."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
