"""``backstop models``: the fleet view of identified models, and one model's history.

Without an id, one row per model: what it is, how many copies run, where, on how many GPUs
and how fast. With an id (a prefix of at least 12 hex digits), that model and every workload
that has held it. ``-o json`` and ``-o yaml`` print the documented contract (see
``docs/json.md``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from backstop.cli import render
from backstop.cli.client import ControllerClient
from backstop.cli.connect import with_client
from backstop.cli.output import Layout, emit
from backstop.core.scope import parse_model_hash
from backstop.core.times import rfc3339
from backstop.wire.json_form import document
from backstop.wire.received_fleet import ReceivedModel, ReceivedSighting


def show(client: ControllerClient, args: argparse.Namespace) -> int:
    """Every model, or with ``args.model_id`` one model and its history."""
    prefix = parse_model_hash(args.model_id) if args.model_id else ""
    models, history = client.list_models(prefix)

    def data() -> object:
        if prefix:
            return document(
                "ModelHistory",
                {"model": models[0].json_data, "history": [s.json_data for s in history]},
            )
        return [m.json_data for m in models]

    return emit(args, data, lambda layout: _text(models, history, prefix, layout))


def _text(
    models: Sequence[ReceivedModel],
    history: Sequence[ReceivedSighting],
    prefix: str,
    layout: Layout,
) -> str:
    text = _table(models, layout)
    if prefix:
        text += "\n\n" + _history(history, layout)
    return text


def _table(models: Sequence[ReceivedModel], layout: Layout) -> str:
    rows = []
    for received in models:
        summary = received.summary
        model = summary.model
        rows.append(
            (
                model.model_id[:12],
                model.architecture or "-",
                model.name or ",".join(summary.served_names) or "-",
                model.size_class or "-",
                "+".join(model.formats) or "-",
                summary.copies,
                len(summary.node_ids),
                len(summary.gpu_uuids),
                render.mib(summary.gpu_memory_bytes),
                render.rate(summary.tokens_per_second),
                render.age(summary.first_seen_s),
                render.age(summary.last_seen_s),
            )
        )
    headers = (
        "model", "architecture", "name", "size", "formats", "copies", "nodes", "gpus",
        "gpu mem", "tok/s", "first seen", "last seen",
    )  # fmt: skip
    return render.table(headers, rows, width=layout.width, cut=("architecture", "name"))


def _history(history: Sequence[ReceivedSighting], layout: Layout) -> str:
    rows = [
        (
            s.workload_id,
            s.node_id,
            rfc3339(s.first_seen_s),
            rfc3339(s.last_seen_s),
            "running" if s.running else "gone",
        )
        for s in history
    ]
    headers = ("workload", "node", "first seen", "last seen", "now")
    return render.table(headers, rows, width=layout.width, cut=("workload", "node"))


models = with_client(show)
