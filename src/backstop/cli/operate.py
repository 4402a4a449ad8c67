"""The correcting verbs, resume, approve and status."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path

from backstop.cli import dry_run, follow, render, signed
from backstop.cli.client import ControllerClient
from backstop.cli.connect import with_client
from backstop.cli.output import dumps, structured
from backstop.cli.targets import targets_line
from backstop.core.errors import InvalidInput
from backstop.core.models import Action, ActionParams, CorrectionSpec, Scope, SignatureRecord
from backstop.core.scope import (
    KIND_LABEL,
    UNATTRIBUTED,
    kubernetes_selector,
    parse_model_hash,
    parse_selector,
    validate_scope,
)
from backstop.core.specs import DEFAULT_EXPIRY_S, new_spec
from backstop.core.text import validate_reason
from backstop.security.keys import load_private
from backstop.security.quorum import sign_correction
from backstop.wire import correction_convert
from backstop.wire.received import ReceivedCorrection


def user_of(args: argparse.Namespace) -> str:
    """Who the caller says they are: ``--as``, else the login name."""
    if args.user:
        return str(args.user)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# --- corrections ------------------------------------------------------------------------


def scope_from_args(args: argparse.Namespace) -> Scope:
    selector = parse_selector(args.selector) if args.selector else ()
    if getattr(args, "unattributed", False):
        selector = (*selector, (KIND_LABEL, UNATTRIBUTED, True))
    namespace, pod = getattr(args, "namespace", ""), getattr(args, "pod", "")
    if namespace or pod:
        selector = (*selector, *kubernetes_selector(namespace, pod))
    scope = Scope(
        all=bool(args.all),
        node_ids=tuple(args.node),
        selector=selector,
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
    if args.reason is None and not args.dry_run:
        raise InvalidInput("--reason is required: say why (it is recorded with the correction)")
    reason = (args.reason or "").strip()
    if args.reason is not None:
        validate_reason(reason)
    if args.dry_run:
        return dry_run.show(client, action.value, scope, args)
    now = time.time()
    spec = new_spec(
        action,
        scope,
        reason,
        user_of(args),
        now_s=now,
        ttl_s=args.ttl or DEFAULT_EXPIRY_S,
        params=params,
        incident=args.incident,
    )
    if args.key:
        data = correction_convert.spec_bytes(spec)
        _confirm(client, correction_convert.spec_from_bytes(data), args)
        signature = _issuer_signature(args, spec, data)
        return _report(client, client.create_signed(data, (signature,)), args, data)
    _confirm(client, spec, args)
    correction = client.create(
        action,
        scope,
        reason=reason,
        issuer=user_of(args),
        ttl_s=args.ttl,
        params=params,
        incident=args.incident,
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
        if structured(args):
            print(dumps(correction.json_data, args.output))
        else:
            print(render.escape(cid))
        return 0
    return _wait(client, cid, args, data)


def _wait(client: ControllerClient, cid: str, args: argparse.Namespace, data: bytes = b"") -> int:
    result = follow.follow(client, cid, args.timeout, narrate=not structured(args), data=data)
    if structured(args):
        print(dumps(result.correction.json_data, args.output))
        if not result.ended:
            print(follow.summary(result, args.timeout), file=sys.stderr)
    else:
        print(follow.summary(result, args.timeout))
    return follow.exit_code(result)


def _resume(client: ControllerClient, args: argparse.Namespace) -> int:
    if args.reason.strip():
        validate_reason(args.reason.strip())
    if args.dry_run:
        scope = signed.view(client.get(args.id)).spec.scope
        return dry_run.show(client, "resume", scope, args)
    if args.key:
        original = signed.view(client.get(args.id)).spec
        now = time.time()
        spec = new_spec(
            Action.RESUME,
            original.scope,
            args.reason.strip() or f"resume {args.id}",
            user_of(args),
            now_s=now,
            reverts=args.id,
            incident=args.incident,
        )
        data = correction_convert.spec_bytes(spec)
        signature = _issuer_signature(args, spec, data)
        return _report(client, client.resume_signed(args.id, data, (signature,)), args, data)
    correction = client.resume(args.id, args.reason, user_of(args), args.incident)
    return _report(client, correction, args)


def _issuer_signature(
    args: argparse.Namespace, spec: CorrectionSpec, data: bytes
) -> SignatureRecord:
    key = load_private(Path(args.key))
    return sign_correction(key, data, signer=spec.issuer, role="issuer", signed_at_s=time.time())


def _approve(client: ControllerClient, args: argparse.Namespace) -> int:
    current = client.get(args.id)
    if not args.key:
        if not current.controllers_copy().policy_digest:
            raise InvalidInput("an approval is signed: pass --key (or set BACKSTOP_KEY)")
        # held by its policy's blast-radius limit: an open controller takes an unsigned release
        correction = client.approve(args.id, user_of(args))
        return _print_correction(args, correction)
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
        signer=user_of(args),
        role="approver",
        signed_at_s=time.time(),
    )
    correction = client.approve_signed(args.id, user_of(args), record)
    return _print_correction(args, correction, data)


def _print_correction(
    args: argparse.Namespace, correction: ReceivedCorrection, data: bytes = b""
) -> int:
    if structured(args):
        print(dumps(correction.json_data, args.output))
    else:
        after = signed.view(correction, data)
        render.write_correction(sys.stdout, correction, after.spec, after.warnings)
    return 0


def _status(client: ControllerClient, args: argparse.Namespace) -> int:
    if args.watch:
        return _wait(client, args.id, args)
    correction = client.get(args.id)
    if structured(args):
        print(dumps(correction.json_data, args.output))
    else:
        view = signed.view(correction)
        render.write_correction(sys.stdout, correction, view.spec, view.warnings)
    return 0


correct = with_client(_correct)
resume = with_client(_resume)
approve = with_client(_approve)
status = with_client(_status)
