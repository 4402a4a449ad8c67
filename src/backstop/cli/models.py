"""``backstop models``: the fleet view of identified models, and one model's history.

Without an id, one row per model: what it is, how many copies run, where, on how many GPUs
and how fast. With an id (a prefix of at least 12 hex digits), that model and every workload
that has held it. ``-o json`` prints the documented contract (see ``docs/operations.md``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from backstop.cli import render
from backstop.cli.client import ControllerClient
from backstop.cli.operate import with_client
from backstop.core.scope import parse_model_hash
from backstop.wire.received_fleet import ReceivedModel, ReceivedSighting


def _models(client: ControllerClient, args: argparse.Namespace) -> int:
    prefix = parse_model_hash(args.model_id) if args.model_id else ""
    models, history = client.list_models(prefix)
    if args.output == "json":
        if prefix:
            data = {"model": models[0].json_data, "history": [s.json_data for s in history]}
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            print(render.to_json(models))
        return 0
    print(_table(models))
    if prefix:
        print()
        print(_history(history))
    return 0


def _table(models: Sequence[ReceivedModel]) -> str:
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
    return render.table(headers, rows)


def _history(history: Sequence[ReceivedSighting]) -> str:
    rows = [
        (
            s.workload_id,
            s.node_id,
            render.rfc3339(s.first_seen_s),
            render.rfc3339(s.last_seen_s),
            "running" if s.running else "gone",
        )
        for s in history
    ]
    return render.table(("workload", "node", "first seen", "last seen", "now"), rows)


models = with_client(_models)
