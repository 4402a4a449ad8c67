"""Which nodes and workloads a scope reaches now, before anyone acts on it (PreviewScope).

Nodes are resolved as the corrections engine resolves a new correction's targets (every known
node in scope; naming an unknown node is refused the same way); workloads come from the
latest inventory each node reported, matched with :func:`workload_in_scope`. Counts are
whole; the workload list is cut at ``limit``.
"""

from __future__ import annotations

from dataclasses import dataclass

from backstop.controller.store.base import Store
from backstop.core.errors import NotFound
from backstop.core.models import Scope, Workload
from backstop.core.scope import node_in_scope, validate_scope, workload_in_scope

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Preview:
    node_ids: tuple[str, ...]
    workload_count: int
    workloads: tuple[Workload, ...]


def preview(store: Store, scope: Scope, limit: int = 0) -> Preview:
    validate_scope(scope)
    known = sorted(r.info.node_id for r in store.list_nodes())
    unknown = [n for n in scope.node_ids if n not in known]
    if unknown:
        raise NotFound(f"unknown node(s): {', '.join(unknown)}; see `backstop nodes`")
    nodes = [n for n in known if node_in_scope(scope, n)]
    in_scope = set(nodes)
    matched = sorted(
        (
            w
            for w in store.list_workloads()
            if w.node_id in in_scope and workload_in_scope(scope, w)
        ),
        key=lambda w: (w.node_id, w.workload_id),
    )
    cut = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
    return Preview(tuple(nodes), len(matched), tuple(matched[:cut]))
