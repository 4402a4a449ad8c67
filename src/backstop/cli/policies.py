"""``backstop policy apply | list | show | approve | delete | test``.

A policy file is read as bytes and sent as they are: those bytes are what is signed (with
``--key``), stored and shown. The CLI parses the file first, so a bad file is refused with its
line and reason before anything is sent. What a person approves is the document as the
controller holds it, checked against its digest here and shown line by line (escaped) before
signing; a deletion signs the statement naming the policy and the digest of the version it
ends (:func:`backstop.core.policies.deletion_statement`).
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from backstop.cli import render
from backstop.cli.client import ControllerClient
from backstop.cli.connect import with_client
from backstop.cli.operate import user_of
from backstop.cli.output import Layout, emit
from backstop.core.errors import BackstopError, InvalidInput, NotFound
from backstop.core.models import SignatureRecord
from backstop.core.policies import PolicyState, PolicyVersion, deletion_statement, digest_of
from backstop.core.times import rfc3339
from backstop.policy.document import parse_policy
from backstop.security.keys import load_private
from backstop.security.quorum import sign_correction
from backstop.wire.json_form import document as json_document
from backstop.wire.policy_convert import ReceivedPolicyTest

MAX_FILE_BYTES = 64 * 1024


def _apply(client: ControllerClient, args: argparse.Namespace) -> int:
    raw, source = _read(args.file)
    parse_policy(raw, source)  # refused here, with its line, before anything is sent
    signatures = (_sign(args, raw, "issuer"),) if args.key else ()
    version = client.apply_policy(raw, signatures, source, user_of(args))
    return _print_version(args, version)


def _list_policies(client: ControllerClient, args: argparse.Namespace) -> int:
    versions = client.list_policies(include_ended=args.all)
    return emit(args, lambda: [_json(v) for v in versions], lambda lay: _table(versions, lay))


def _show(client: ControllerClient, args: argparse.Namespace) -> int:
    versions = client.list_policies(args.name, include_ended=args.history)
    if not versions:
        raise NotFound(f"policy {args.name!r} has no version in force; try --history")
    return emit(
        args,
        lambda: json_document("PolicyHistory", {"versions": [_json(v) for v in versions]}),
        lambda _layout: "\n\n".join(_describe(v) for v in versions),
    )


def _approve(client: ControllerClient, args: argparse.Namespace) -> int:
    if not args.key:
        raise InvalidInput("an approval is signed: pass --key (or set BACKSTOP_KEY)")
    proposed = [
        v
        for v in client.list_policies(args.name)
        if v.state == PolicyState.PROPOSED and (not args.version or v.version == args.version)
    ]
    if not proposed:
        raise NotFound(f"policy {args.name!r} has no proposed version to approve")
    target = proposed[-1]
    if digest_of(target.document) != target.digest:
        raise InvalidInput("the controller sent a document that does not match its digest")
    if not args.yes:
        print(_describe(target), flush=True)
        if not sys.stdin.isatty():
            raise InvalidInput(f"approving {args.name} needs --yes (or a terminal to confirm)")
        if input("approve exactly these bytes? [y/N] ").strip().lower() not in ("y", "yes"):
            raise InvalidInput("cancelled; nothing was approved")
    signature = _sign(args, target.document, "approver")
    approved = client.approve_policy(args.name, target.version, signature, user_of(args))
    return _print_version(args, approved)


def _delete(client: ControllerClient, args: argparse.Namespace) -> int:
    active = [
        v
        for v in client.list_policies(args.name)
        if v.state == PolicyState.ACTIVE and not v.deletes
    ]
    if not active:
        raise NotFound(f"no policy {args.name!r} is in force; see `backstop policy list`")
    current = active[-1]
    statement = deletion_statement(args.name, current.digest)
    signatures = (_sign(args, statement, "issuer"),) if args.key else ()
    deleted = client.delete_policy(args.name, current.digest, signatures, user_of(args))
    return _print_version(args, deleted)


def _test(client: ControllerClient, args: argparse.Namespace) -> int:
    raw, source = _read(args.file)
    parse_policy(raw, source)
    result = client.test_policy(raw, source)

    def data() -> object:
        return json_document(
            "PolicyTest",
            {
                "digest": result.digest,
                "workloads_checked": result.checked,
                "matches": [
                    {"workload": w.json_data, "reasons": list(reasons)}
                    for w, reasons in result.matches
                ],
            },
        )

    return emit(args, data, lambda layout: _test_table(result, layout))


# -- reading and signing -------------------------------------------------------------------


def _read(path: str) -> tuple[bytes, str]:
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
            source = "<stdin>"
        else:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
            source = Path(path).name
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInput(f"{path}: a policy file is at most {MAX_FILE_BYTES} bytes")
    return raw, source


def _sign(args: argparse.Namespace, data: bytes, role: str) -> SignatureRecord:
    key = load_private(Path(args.key))
    return sign_correction(key, data, signer=user_of(args), role=role, signed_at_s=time.time())


# -- printing ------------------------------------------------------------------------------


def _print_version(args: argparse.Namespace, version: PolicyVersion) -> int:
    return emit(args, lambda: _json(version), lambda _layout: _summary(version))


def _summary(v: PolicyVersion) -> str:
    if v.approval == "unchanged":
        return f"policy {render.escape(v.name)} unchanged (version {v.version} is in force)"
    what = "deletion of policy" if v.deletes else "policy"
    line = f"{what} {render.escape(v.name)} version {v.version}: {v.state.value}"
    return line + (f" ({render.escape(v.approval)})" if v.approval else "")


def _parsed(v: PolicyVersion) -> dict[str, object]:
    """What the document says, for the listing (empty for a deletion or a bad document)."""
    if v.deletes:
        return {}
    try:
        policy = parse_policy(v.document, v.name).policy
    except BackstopError:
        return {}
    return {
        "severity": policy.severity.value,
        "description": policy.description,
        "enforce": policy.enforce.value,
    }


def _json(v: PolicyVersion) -> dict[str, object]:
    return json_document(
        "PolicyVersion",
        {
            "name": v.name,
            "version": v.version,
            "action": v.action,
            "state": v.state.value,
            "digest": v.digest,
            "document": v.document.decode("utf-8", "replace"),
            "applied_by": v.applied_by,
            "applied_at": rfc3339(v.applied_s),
            "ended_at": rfc3339(v.ended_s) if v.ended_s else None,
            "approval": v.approval,
            "signatures": [
                {
                    "key_id": s.key_id,
                    "signer": s.signer,
                    "role": s.role,
                    "signature": base64.b64encode(s.signature).decode(),
                    "signed_at": rfc3339(s.signed_at_s),
                }
                for s in v.signatures
            ],
            **_parsed(v),
        },
    )


def _table(versions: Sequence[PolicyVersion], layout: Layout) -> str:
    if not versions:
        return "no policies; apply one with `backstop policy apply FILE`"
    rows = [
        (
            v.name,
            v.version,
            v.action,
            _parsed(v).get("severity", "-"),
            v.state.value,
            v.applied_by,
            rfc3339(v.applied_s),
            v.approval or "-",
        )
        for v in versions
    ]  # every cell is escaped by the table
    headers = ("name", "version", "action", "severity", "state", "by", "applied", "approval")
    return render.table(headers, rows, width=layout.width, cut=("name", "approval"))


def _describe(v: PolicyVersion) -> str:
    lines = [
        _summary(v),
        f"  digest  {v.digest}",
        f"  by      {render.escape(v.applied_by)} at {rfc3339(v.applied_s)}",
    ]
    lines += [
        f"  signed  {render.escape(s.signer)} ({s.role}, key {s.key_id})" for s in v.signatures
    ]
    lines.append("  --- the exact bytes signed ---")
    lines += [
        f"  | {render.escape(line)}" for line in v.document.decode("utf-8", "replace").split("\n")
    ]
    return "\n".join(lines)


def _test_table(result: ReceivedPolicyTest, layout: Layout) -> str:
    head = f"{len(result.matches)} of {result.checked} workload(s) match now"
    if not result.matches:
        return head
    rows = [
        (
            w.workload.workload_id,
            w.workload.node_id,
            w.workload.fingerprint.model.model_id[:16] if w.workload.fingerprint.model else "-",
            "; ".join(reasons),
        )
        for w, reasons in result.matches
    ]  # every cell is escaped by the table
    table = render.table(
        ("workload", "node", "model", "why"), rows, width=layout.width, cut=("why",)
    )
    return f"{head}\n{table}"


apply = with_client(_apply)
list_policies = with_client(_list_policies)
show = with_client(_show)
approve = with_client(_approve)
delete = with_client(_delete)
test = with_client(_test)
