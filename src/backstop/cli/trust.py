"""``backstop pki | keys | audit | whoami`` and ``backstop agent enroll``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backstop.cli.connect import client_from_args
from backstop.cli.output import Layout, emit, structured
from backstop.cli.render import escape
from backstop.core.errors import InvalidInput
from backstop.core.times import rfc3339
from backstop.security.crl import CRL_FILE, revoke
from backstop.security.issued import issued_to, record_issued
from backstop.security.keys import generate_key
from backstop.security.peers import CertificateFacts, certificate_facts, peer_identity
from backstop.security.pki import CertificateAuthority, write_private, write_public
from backstop.wire.json_form import document

_FILE_NAMES = {"controller": "controller", "agent": "node", "client": "client"}


def pki_init(args: argparse.Namespace) -> int:
    ca = CertificateAuthority.init(Path(args.dir))
    directory = Path(args.dir)
    facts = certificate_facts(ca.certificate_pem)

    def text(_layout: Layout) -> str:
        return (
            f"CA {escape(ca.name)!r} created in {escape(args.dir)} (ca.crt, ca.key); valid "
            f"until {ca.not_after:%Y-%m-%d}\n"
            "keep ca.key offline or on the controller only: it signs every certificate"
        )

    return emit(
        args,
        lambda: document(
            "CertificateAuthority",
            {
                "name": ca.name,
                "certificate": str(directory / "ca.crt"),
                "key": str(directory / "ca.key"),
                **_facts_fields(facts),
            },
        ),
        text,
    )


def pki_issue(args: argparse.Namespace) -> int:
    ca = CertificateAuthority.load(Path(args.dir))
    bundle = ca.issue(args.name, args.role, dns=args.dns, ips=args.ip, valid_days=args.days)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = _FILE_NAMES[args.role]
    write_public(out / f"{stem}.crt", bundle.cert_pem)
    write_private(out / f"{stem}.key", bundle.key_pem)
    write_public(out / "ca.crt", ca.certificate_pem)
    record_issued(Path(args.dir), bundle.cert_pem)
    crl = Path(args.dir) / CRL_FILE
    files = {"certificate": out / f"{stem}.crt", "key": out / f"{stem}.key", "ca": out / "ca.crt"}
    if crl.exists():  # the holder needs the CA's revocation list too
        write_public(out / CRL_FILE, crl.read_bytes())
        files["crl"] = out / CRL_FILE
    facts = certificate_facts(bundle.cert_pem)

    def text(_layout: Layout) -> str:
        return (
            f"{args.role} certificate for {escape(args.name)}: "
            f"{escape(', '.join(str(files[k]) for k in ('certificate', 'key')))}, ca.crt "
            f"(serial {facts.serial}, valid until {facts.not_after:%Y-%m-%d})"
        )

    return emit(
        args,
        lambda: document(
            "Certificate",
            {
                "role": args.role,
                **_facts_fields(facts),
                "dns_names": list(args.dns),
                "ip_addresses": list(args.ip),
                "files": {kind: str(path) for kind, path in files.items()},
            },
        ),
        text,
    )


def _facts_fields(facts: CertificateFacts) -> dict[str, object]:
    return {
        "common_name": facts.common_name,
        "serial": facts.serial,
        "fingerprint_sha256": facts.fingerprint_sha256,
        "not_after": rfc3339(facts.not_after.timestamp()),
    }


def pki_token(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        response = client.enrolment_token(args.node, args.ttl)
    if structured(args):
        return emit(
            args,
            lambda: document(
                "EnrolmentToken",
                {
                    "node_id": args.node,
                    "token": response.token,
                    "expires_at": rfc3339(response.expires_at_s),
                    "expires_at_s": response.expires_at_s,
                },
            ),
            lambda _layout: "",
        )
    print(response.token)
    print(
        f"one-time token for node {escape(args.node)}, expires in {args.ttl:g} s "
        f"({rfc3339(response.expires_at_s)}); on the node run:\n"
        f"  backstop agent enroll --enrol-address HOST:PORT --ca ca.crt "
        f"--node-id {escape(args.node)} --token TOKEN",
        file=sys.stderr,
    )
    return 0


def pki_revoke(args: argparse.Namespace) -> int:
    if args.dir:
        return _revoke_at_ca(args)
    if not args.node or args.person or args.cert or args.serial:
        raise InvalidInput(
            "through the controller, revoke --node NODE; --person, --cert and --serial need "
            "--dir CA_DIR (run where ca.key is)"
        )
    if not args.reason.strip():
        raise InvalidInput("--reason must say why")
    with client_from_args(args) as client:
        count = client.revoke(args.node, args.reason)
    return emit(
        args,
        lambda: document("Revocation", {"node_id": args.node, "certificates_revoked": count}),
        lambda _layout: (
            f"node {escape(args.node)} revoked ({count} certificate(s)); its stream was closed; "
            f"copy the controller's {CRL_FILE} to every agent's TLS directory"
        ),
    )


def _revoke_at_ca(args: argparse.Namespace) -> int:
    """Sign the revocation list in the CA directory (where ca.key is)."""
    if not args.reason.strip():
        raise InvalidInput("--reason must say why")
    ca_dir = Path(args.dir)
    ca = CertificateAuthority.load(ca_dir)
    serials: list[int] = []
    for name, role in ((args.node, "agent"), (args.person, "client")):
        if name:
            found = [c.serial for c in issued_to(ca_dir, name, role)]
            if not found:
                raise InvalidInput(
                    f"the CA in {ca_dir} has no record of a certificate for {role} {name!r}; "
                    "name it with --cert FILE or --serial HEX"
                )
            serials += found
    for path in args.cert:
        serials.append(int(peer_identity(Path(path).read_bytes()).serial, 16))
    for text in args.serial:
        try:
            serials.append(int(text.lower().removeprefix("0x").replace(":", ""), 16))
        except ValueError as exc:
            raise InvalidInput(f"--serial {text!r} is not a hexadecimal serial") from exc
    if not serials:
        raise InvalidInput("name what to revoke: --node, --person, --cert or --serial")
    result = revoke(ca, ca_dir / CRL_FILE, serials)
    return emit(
        args,
        lambda: document(
            "RevocationList",
            {
                "crl": str(ca_dir / CRL_FILE),
                "added": [format(serial, "x") for serial in result.added],
                "listed": result.total,
                "number": result.number,
            },
        ),
        lambda _layout: (
            f"{len(result.added)} certificate(s) added to {escape(str(ca_dir / CRL_FILE))} "
            f"(number {result.number}, {result.total} listed; reason: "
            f"{escape(args.reason.strip())})\ncopy {CRL_FILE} to every controller's and "
            "agent's TLS directory (or their --crl)"
        ),
    )


def keys_new(args: argparse.Namespace) -> int:
    key = generate_key()
    path = Path(args.out)
    key.save(path)
    snippet = {"name": args.name or "YOUR-NAME", "role": args.role, "keys": [key.public_text()]}

    def text(_layout: Layout) -> str:
        return (
            f"key id {key.key_id}: private {escape(str(path))} (0600), public "
            f"{escape(str(path))}.pub\nadd to the trust policy's people:\n{json.dumps(snippet)}"
        )

    return emit(
        args,
        lambda: document(
            "OperatorKey",
            {
                "key_id": key.key_id,
                "private_key": str(path),
                "public_key": f"{path}.pub",
                "public": key.public_text(),
                "trust_policy_person": snippet,
            },
        ),
        text,
    )


def whoami(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        me = client.whoami()
    state = "authenticated" if me.authenticated else "unauthenticated (open mode)"
    return emit(
        args,
        lambda: document(
            "Identity",
            {"name": me.name, "role": me.role, "authenticated": bool(me.authenticated)},
        ),
        lambda _layout: f"{escape(me.name)} ({escape(me.role)}), {state}",
    )


def enroll(args: argparse.Namespace) -> int:
    from backstop.agent.enrol import enrol

    tls = enrol(args.enrol_address, args.token, Path(args.ca), args.node_id, Path(args.state_dir))
    print(f"node {args.node_id} enrolled; certificate and key in {tls}")
    return 0
