"""``backstop pki | keys | audit | whoami`` and ``backstop agent enroll``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backstop.api.v1 import control_pb2
from backstop.cli.connect import client_from_args
from backstop.cli.render import escape
from backstop.security import audit
from backstop.security.keys import generate_key
from backstop.security.pki import CertificateAuthority, write_private, write_public

EXIT_BROKEN_CHAIN = 1
_FILE_NAMES = {"controller": "controller", "agent": "node", "client": "client"}


def run(args: argparse.Namespace) -> int:
    if args.command == "agent":
        return _enroll(args)
    handlers = {
        ("pki", "init"): _pki_init,
        ("pki", "issue"): _pki_issue,
        ("pki", "token"): _pki_token,
        ("pki", "revoke"): _pki_revoke,
        ("keys", "new"): _keys_new,
        ("audit", "verify"): _audit_verify,
        ("audit", "export"): _audit_export,
    }
    if args.command == "whoami":
        return _whoami(args)
    return handlers[(args.command, args.subcommand)](args)


def _pki_init(args: argparse.Namespace) -> int:
    ca = CertificateAuthority.init(Path(args.dir))
    until = f"{ca.not_after:%Y-%m-%d}"
    print(f"CA {ca.name!r} created in {args.dir} (ca.crt, ca.key); valid until {until}")
    print("keep ca.key offline or on the controller only: it signs every certificate")
    return 0


def _pki_issue(args: argparse.Namespace) -> int:
    ca = CertificateAuthority.load(Path(args.dir))
    bundle = ca.issue(args.name, args.role, dns=args.dns, ips=args.ip, valid_days=args.days)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = _FILE_NAMES[args.role]
    write_public(out / f"{stem}.crt", bundle.cert_pem)
    write_private(out / f"{stem}.key", bundle.key_pem)
    write_public(out / "ca.crt", ca.certificate_pem)
    print(f"{args.role} certificate for {args.name}: {out / stem}.crt, {out / stem}.key, ca.crt")
    return 0


def _pki_token(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        response = client.enrolment_token(args.node, args.ttl)
    print(response.token)
    print(
        f"one-time token for node {args.node}, expires in {args.ttl:g} s; on the node run:\n"
        f"  backstop agent enroll --enrol-address HOST:PORT --ca ca.crt --node-id {args.node} "
        "--token TOKEN",
        file=sys.stderr,
    )
    return 0


def _pki_revoke(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        count = client.revoke(args.node, args.reason)
    print(f"node {args.node} revoked ({count} enrolled certificate(s)); its stream was closed")
    return 0


def _keys_new(args: argparse.Namespace) -> int:
    key = generate_key()
    path = Path(args.out)
    key.save(path)
    print(f"key id {key.key_id}: private {path} (0600), public {path}.pub")
    snippet = {"name": args.name or "YOUR-NAME", "role": args.role, "keys": [key.public_text()]}
    print("add to the trust policy's people:")
    print(json.dumps(snippet))
    return 0


def _whoami(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        me = client.whoami()
    state = "authenticated" if me.authenticated else "unauthenticated (open mode)"
    print(f"{escape(me.name)} ({escape(me.role)}), {state}")
    return 0


def _controller_entries(args: argparse.Namespace, after: int = 0) -> list[audit.AuditEntry]:
    with client_from_args(args) as client:
        return [_entry(e) for e in client.audit(after)]


def _entry(msg: control_pb2.AuditEntry) -> audit.AuditEntry:
    return audit.AuditEntry(
        seq=msg.seq,
        ts=msg.ts,
        actor=msg.actor,
        action=msg.action,
        subject=msg.subject,
        details=json.loads(msg.details_json),
        prev_hash=msg.prev_hash,
        hash=msg.hash,
    )


def _audit_verify(args: argparse.Namespace) -> int:
    if args.file:
        result = audit.verify_file(Path(args.file))
        source = args.file
    else:
        result = audit.verify(_controller_entries(args))
        source = f"controller {args.controller}"
    if args.output == "json":
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "entries": result.count,
                    "first_bad_seq": result.first_bad_seq,
                    "first_bad_line": result.first_bad_line,
                    "reason": result.reason,
                    "head_hash": result.head_hash,
                }
            )
        )
    elif result.ok:
        print(
            f"audit chain of {source} intact: {result.count} entries, head {result.head_hash[:16]}"
        )
    else:
        where = f"entry {result.first_bad_seq}" if result.first_bad_seq else "an entry"
        if result.first_bad_line:
            where += f" (line {result.first_bad_line})"
        print(f"audit chain of {source} BROKEN at {where}: {result.reason}")
        print(f"the first {result.count} entries verify; everything from {where} on is suspect")
    return 0 if result.ok else EXIT_BROKEN_CHAIN


def _audit_export(args: argparse.Namespace) -> int:
    if args.file:
        entries = [e for e in audit.read_entries(Path(args.file)) if e.seq > args.after]
    else:
        entries = _controller_entries(args, args.after)
    audit.export_jsonl(entries, sys.stdout)
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from backstop.agent.enrol import enrol

    tls = enrol(args.enrol_address, args.token, Path(args.ca), args.node_id, Path(args.state_dir))
    print(f"node {args.node_id} enrolled; certificate and key in {tls}")
    return 0
