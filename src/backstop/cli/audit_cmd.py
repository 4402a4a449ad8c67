"""``backstop audit verify | export | head``: the chain, checked against its witnesses.

``audit verify`` fetches the controller's chain and holds it to every head witnessed outside
the controller's store: the newest this CLI has seen (:mod:`backstop.cli.heads`) and the one
each node reports having received with its commands. ``audit verify --journal FILE --node ID``
holds an agent's journal to the journal head the controller recorded for that node. A chain
that verifies on its own but is shorter than, or differs at, a witnessed head fails, and the
message names the witness.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backstop.cli.connect import client_from_args
from backstop.cli.output import STRUCTURED, dumps, emit
from backstop.cli.render import escape
from backstop.core.errors import InvalidInput, NotFound
from backstop.core.models import AuditHead
from backstop.security import audit
from backstop.security.witness import (
    Witness,
    WitnessResult,
    verify_against_witnesses,
    verify_file_against_witnesses,
)
from backstop.wire.json_form import document

EXIT_BROKEN_CHAIN = 1


def verify(args: argparse.Namespace) -> int:
    journal = args.journal
    if args.node and not journal:
        raise InvalidInput("--node names whose journal to check: add --journal FILE")
    if journal and args.node:
        with client_from_args(args) as client:
            nodes = client.node_heads()
        if args.node not in nodes:
            raise NotFound(f"the controller knows no node {args.node!r}; see `backstop nodes`")
        witness = Witness(
            f"the controller's record of node {args.node}'s journal head",
            nodes[args.node].journal,
        )
        result = verify_file_against_witnesses(Path(journal), [witness])
        source = f"{journal} (node {args.node})"
    elif journal:
        result = verify_file_against_witnesses(Path(journal), [])
        source = journal
    else:
        with client_from_args(args) as client:
            memory = client.heads
            mine = memory.get(client.controller) if memory is not None else AuditHead()
            entries = list(client.audit())
            witnesses = [Witness(f"this CLI ({memory.path if memory else 'no memory'})", mine)]
            witnesses += [
                Witness(f"node {node_id}", heads.witnessed)
                for node_id, heads in client.node_heads().items()
            ]
            result = verify_against_witnesses(entries, witnesses)
            if result.ok and result.chain.count:
                client.remember(AuditHead(result.chain.count, result.chain.head_hash))
        source = f"controller {args.controller}"
    _print(result, source, args.output)
    return 0 if result.ok else EXIT_BROKEN_CHAIN


def export(args: argparse.Namespace) -> int:
    journal = args.journal
    if journal:
        entries = [e for e in audit.read_entries(Path(journal)) if e.seq > args.after]
    else:
        with client_from_args(args) as client:
            entries = list(client.audit(args.after))
    audit.export_jsonl(entries, sys.stdout)
    return 0


def head(args: argparse.Namespace) -> int:
    """Print the controller's head now; the CLI remembers it (a witness to verify against)."""
    with client_from_args(args) as client:
        now = client.audit_head()
    where = escape(args.controller)
    return emit(
        args,
        lambda: document("AuditHead", {"seq": now.seq, "hash": now.hash}),
        lambda _layout: f"audit head of controller {where}: entry {now.seq}, hash {now.hash}",
        indent=None,
        sort_keys=False,
    )


def _print(result: WitnessResult, source: str, output: str) -> None:
    chain = result.chain
    if output in STRUCTURED:
        data = document(
            "AuditVerification",
            {
                "ok": result.ok,
                "entries": chain.count,
                "first_bad_seq": chain.first_bad_seq,
                "first_bad_line": chain.first_bad_line,
                "reason": chain.reason,
                "head_hash": chain.head_hash,
                "witnesses": list(result.checked),
                "witness_problems": list(result.problems),
            },
        )
        print(dumps(data, output, indent=None, sort_keys=False))
        return
    source = escape(source)
    held = f"; agrees with {len(result.checked)} witness(es)" if result.checked else ""
    if chain.ok:
        state = "intact" if result.ok else "CUT OR REWRITTEN"
        print(
            f"audit chain of {source} {state}: {chain.count} entries, "
            f"head {chain.head_hash[:16]}{held if result.ok else ''}"
        )
    else:
        where = f"entry {chain.first_bad_seq}" if chain.first_bad_seq else "an entry"
        if chain.first_bad_line:
            where += f" (line {chain.first_bad_line})"
        print(f"audit chain of {source} BROKEN at {where}: {escape(chain.reason)}")
        print(f"the first {chain.count} entries verify; everything from {where} on is suspect")
    for problem in result.problems:
        print(f"witness: {escape(problem)}")
