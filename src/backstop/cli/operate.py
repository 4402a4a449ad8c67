"""The operator verbs: listings, corrections, resume, approve, status."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from backstop.cli import follow, render, signed
from backstop.cli.client import ControllerClient
from backstop.cli.connect import client_from_args
from backstop.cli.targets import targets_line
from backstop.cli.verbs import Handler
from backstop.core.errors import InvalidInput
from backstop.core.models import Action, ActionParams, CorrectionSpec, Scope, SignatureRecord
from backstop.core.scope import parse_model_hash, parse_selector, validate_scope
from backstop.core.specs import DEFAULT_EXPIRY_S, new_spec
from backstop.core.text import validate_reason
from backstop.security.keys import load_private
from backstop.security.quorum import sign_correction
from backstop.wire import correction_convert
from backstop.wire.received import (
    Received,
    ReceivedCorrection,
    ReceivedNode,
    ReceivedWorkload,
)


def with_client(verb: Callable[[ControllerClient, argparse.Namespace], int]) -> Handler:
    """A verb that talks to the controller, given a client for the call's duration."""

    def handler(args: argparse.Namespace) -> int:
        with client_from_args(args) as client:
            return verb(client, args)

    return handler


def _user(args: argparse.Namespace) -> str:
    if args.user:
        return str(args.user)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# --- listings ---------------------------------------------------------------------------


def _listing(
    args: argparse.Namespace, received: Sequence[Received], table: Callable[[], str]
) -> int:
    """``-o json``: the messages as received; else the table ``table`` draws of them."""
    print(render.to_json(received) if args.output == "json" else table())
    return 0


def _nodes(client: ControllerClient, args: argparse.Namespace) -> int:
    nodes = client.list_nodes()
    return _listing(args, nodes, lambda: _nodes_table(nodes))


def _nodes_table(nodes: Sequence[ReceivedNode]) -> str:
    rows: list[tuple[object, ...]] = [
        (
            n.node.node_id,
            "connected" if n.connected else "offline",
            len(n.node.gpus),
            ", ".join(sorted({g.name for g in n.node.gpus}))
            or ("-" if n.node.nvml_available else "no NVML"),
            n.workload_count,
            render.age(n.last_seen_s),
            n.node.agent_version,
        )
        for n in nodes
    ]
    headers: tuple[str, ...] = ("node", "status", "gpus", "gpu model", "workloads", "seen", "agent")
    if any(n.unattributed_count for n in nodes):  # GPU use no process of the node explains
        headers += ("unattributed",)
        rows = [(*row, n.unattributed_count) for row, n in zip(rows, nodes, strict=True)]
    if len({n.replica for n in nodes if n.replica}) > 1:  # several replicas: say which holds whom
        headers += ("replica",)
        rows = [(*row, n.replica or "-") for row, n in zip(rows, nodes, strict=True)]
    return render.table(headers, rows)


def _workloads(client: ControllerClient, args: argparse.Namespace) -> int:
    model = parse_model_hash(args.model) if args.model else ""
    workloads = client.list_workloads(args.node, model)
    return _listing(args, workloads, lambda: _workloads_table(workloads))


def _workloads_table(workloads: Sequence[ReceivedWorkload]) -> str:
    rows = []
    for w in (listed.workload for listed in workloads):
        fp = w.fingerprint
        gpu_mem = sum(g.used_memory_bytes for g in fp.gpus)
        rows.append(
            (
                w.workload_id,
                w.node_id,
                w.root_pid or "-",
                len(w.pids),
                "unattributed" if w.unattributed else w.state,
                fp.framework or "-",
                fp.behaviour or "-",
                f"{len(fp.gpus)}/{render.mib(gpu_mem)}" if fp.gpus else "-",
                ",".join(str(p) for p in fp.listening_ports) or "-",
                render.model_text(fp),
                render.rate(w.serving.generated_tokens_per_s if w.serving else None),
                render.holds_text(w.holds),
                (w.unattributed if w.unattributed else " ".join(fp.cmdline))[:48],
            )
        )
    return render.table(
        (
            "workload",
            "node",
            "pid",
            "procs",
            "state",
            "framework",
            "behaviour",
            "gpus/mem",
            "ports",
            "model",
            "tok/s",
            "holds",
            "command",
        ),
        rows,
    )


def _corrections(client: ControllerClient, args: argparse.Namespace) -> int:
    corrections = client.list_corrections(args.limit)
    return _listing(args, corrections, lambda: _corrections_table(corrections))


def _corrections_table(corrections: Sequence[ReceivedCorrection]) -> str:
    rows = [
        (
            spec.correction_id,
            spec.action.value,
            render.correction_state(c.state),
            render.scope_text(spec.scope),
            len(c.targets),
            render.age(spec.created_at_s),
            spec.issuer,
            spec.reason[:40],  # escaped by render.table
        )
        for c, spec in ((c, c.controllers_copy()) for c in corrections)
    ]
    return render.table(
        ("id", "action", "state", "scope", "targets", "age", "issuer", "reason"), rows
    )


# --- corrections ------------------------------------------------------------------------


def scope_from_args(args: argparse.Namespace) -> Scope:
    scope = Scope(
        all=bool(args.all),
        node_ids=tuple(args.node),
        selector=parse_selector(args.selector) if args.selector else (),
        model_hashes=tuple(parse_model_hash(m) for m in args.model),
        workload_ids=tuple(args.workload),
    )
    validate_scope(scope)
    return scope


def params_from_args(args: argparse.Namespace) -> ActionParams:
    params = ActionParams(
        power_fraction=getattr(args, "power_fraction", None),
        cpu_fraction=getattr(args, "cpu_cores", None),
        grace_s=getattr(args, "grace", None),
        sample_interval_s=getattr(args, "interval", None),
    )
    correction_convert.validate_params(params)
    return params


def _confirm(client: ControllerClient, spec: CorrectionSpec, args: argparse.Namespace) -> None:
    """Ask before a severe or --all correction, showing what it says (decoded from the very
    bytes about to be signed) and the targets it reaches now."""
    action, scope = spec.action, spec.scope
    if args.yes or not (action.severe or scope.all):
        return
    if not sys.stdin.isatty():
        raise InvalidInput(
            f"{action.value} of {'--all' if scope.all else 'this scope'} needs --yes"
        )
    print(f"{action.value} {'ALL workloads' if scope.all else 'workloads in scope'}")
    print("\n".join(render.spec_lines(spec)))
    print(f"  {targets_line(client, scope)}", flush=True)
    if input(f"{action.value} these targets? [y/N] ").strip().lower() not in ("y", "yes"):
        raise InvalidInput("cancelled; nothing was changed")


def _correct(client: ControllerClient, args: argparse.Namespace) -> int:
    action = Action(args.command)
    scope = scope_from_args(args)
    params = params_from_args(args)
    reason = args.reason.strip()
    validate_reason(reason)
    now = time.time()
    spec = new_spec(
        action,
        scope,
        reason,
        _user(args),
        now_s=now,
        ttl_s=args.ttl or DEFAULT_EXPIRY_S,
        params=params,
    )
    if args.key:
        data = correction_convert.spec_bytes(spec)
        _confirm(client, correction_convert.spec_from_bytes(data), args)
        signature = _issuer_signature(args, spec, data)
        return _report(client, client.create_signed(data, (signature,)), args, data)
    _confirm(client, spec, args)
    correction = client.create(
        action, scope, reason=reason, issuer=_user(args), ttl_s=args.ttl, params=params
    )
    return _report(client, correction, args)


def _report(
    client: ControllerClient,
    correction: ReceivedCorrection,
    args: argparse.Namespace,
    data: bytes = b"",
) -> int:
    cid = correction.correction_id
    if not getattr(args, "wait", False):
        if args.output == "json":
            print(render.to_json(correction))
        else:
            print(render.escape(cid))
        return 0
    return _wait(client, cid, args, data)


def _wait(client: ControllerClient, cid: str, args: argparse.Namespace, data: bytes = b"") -> int:
    result = follow.follow(client, cid, args.timeout, narrate=args.output != "json", data=data)
    if args.output == "json":
        print(render.to_json(result.correction))
        if not result.ended:
            print(follow.summary(result, args.timeout), file=sys.stderr)
    else:
        print(follow.summary(result, args.timeout))
    return follow.exit_code(result)


def _resume(client: ControllerClient, args: argparse.Namespace) -> int:
    if args.reason.strip():
        validate_reason(args.reason.strip())
    if args.key:
        original = signed.view(client.get(args.id)).spec
        now = time.time()
        spec = new_spec(
            Action.RESUME,
            original.scope,
            args.reason.strip() or f"resume {args.id}",
            _user(args),
            now_s=now,
            reverts=args.id,
        )
        data = correction_convert.spec_bytes(spec)
        signature = _issuer_signature(args, spec, data)
        return _report(client, client.resume_signed(args.id, data, (signature,)), args, data)
    correction = client.resume(args.id, args.reason, _user(args))
    return _report(client, correction, args)


def _issuer_signature(
    args: argparse.Namespace, spec: CorrectionSpec, data: bytes
) -> SignatureRecord:
    key = load_private(Path(args.key))
    return sign_correction(key, data, signer=spec.issuer, role="issuer", signed_at_s=time.time())


def _approve(client: ControllerClient, args: argparse.Namespace) -> int:
    if not args.key:
        raise InvalidInput("an approval is signed: pass --key (or set BACKSTOP_KEY)")
    current = client.get(args.id)
    data = current.signed_spec
    if not data:
        raise InvalidInput(f"the controller sent no signed bytes of {args.id}; refusing to sign")
    view = signed.view(current, data)
    spec = view.spec
    if spec.correction_id != args.id:
        raise InvalidInput("the controller returned a different correction; refusing to sign")
    if args.yes:  # nothing is shown before signing: say it loudly all the same
        for line in view.warnings:
            print(line, file=sys.stderr)
    else:
        render.write_correction(sys.stdout, current, spec, view.warnings)
        print(f"  {targets_line(client, spec.scope)}", flush=True)
        if not sys.stdin.isatty():
            raise InvalidInput(f"approving {args.id} needs --yes (or a terminal to confirm)")
        if input(f"approve this {spec.action.value}? [y/N] ").strip().lower() not in ("y", "yes"):
            raise InvalidInput("cancelled; nothing was approved")
    record = sign_correction(
        load_private(Path(args.key)),
        data,
        signer=_user(args),
        role="approver",
        signed_at_s=time.time(),
    )
    correction = client.approve_signed(args.id, _user(args), record)
    if args.output == "json":
        print(render.to_json(correction))
    else:
        after = signed.view(correction, data)
        render.write_correction(sys.stdout, correction, after.spec, after.warnings)
    return 0


def _status(client: ControllerClient, args: argparse.Namespace) -> int:
    if args.watch:
        return _wait(client, args.id, args)
    correction = client.get(args.id)
    if args.output == "json":
        print(render.to_json(correction))
    else:
        view = signed.view(correction)
        render.write_correction(sys.stdout, correction, view.spec, view.warnings)
    return 0


nodes = with_client(_nodes)
workloads = with_client(_workloads)
corrections = with_client(_corrections)
correct = with_client(_correct)
resume = with_client(_resume)
approve = with_client(_approve)
status = with_client(_status)
