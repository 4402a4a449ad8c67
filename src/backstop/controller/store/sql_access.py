"""What a SQL half of the store builds on: the dialect and the three steps a backend supplies
(a query, a write of several statements in one transaction, a locked read-then-write). The
alert and incident halves name them once here rather than each on its own."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from backstop.controller.store.dialect import Dialect

Statement = tuple[str, Sequence[object]]


class SqlAccess(ABC):
    dialect: Dialect

    @abstractmethod
    def _query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """The rows one query returns."""

    @abstractmethod
    def _write(self, *statements: tuple[str, Sequence[object]]) -> list[int]:
        """Run the (query, arguments) statements in one transaction; each one's row count."""

    @abstractmethod
    def _rewrite(
        self,
        query: str,
        args: Sequence[object],
        rewrite: Callable[[list[Any]], Sequence[Statement]],
    ) -> None:
        """Lock and read the rows ``query`` selects, then run what ``rewrite`` makes of them."""
