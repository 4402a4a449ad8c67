"""Entry point of ``backstop``: the parser, and the mapping of errors to exit codes.

Exit codes: 0 success; 1 the operation ran but did not fully succeed (a correction failed or a
target was unreachable, or an audit chain is broken); 2 bad input; 3 controller unreachable;
4 not found; 5 conflict; 6 permission denied.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from backstop import __version__
from backstop.cli.config_sources import DAEMONS
from backstop.cli.daemon_parsers import add_daemons
from backstop.cli.global_flags import add_global_flags, spread_global_flags
from backstop.cli.incident_parsers import add_incident_flag, add_incidents
from backstop.cli.numbers import MAX_WAIT_S, finite, seconds, whole
from backstop.cli.output import add_output_flag, add_watch_flags
from backstop.cli.parser_style import EXIT_USAGE, Parser, Subcommands, command_group
from backstop.cli.verbs import Handler, lazy, verb
from backstop.core.errors import BackstopError, exit_code_for

__all__ = ["CORRECTION_VERBS", "EXIT_USAGE", "build_parser", "main"]

_WAIT = seconds(0, MAX_WAIT_S, low_open=True)

CORRECTION_VERBS = {
    "observe": "raise the sampling rate of workloads in scope (no effect on them)",
    "throttle": "cap GPU power (and optionally CPU) of workloads in scope",
    "pause": "freeze workloads in scope (GPU memory stays allocated)",
    "terminate": "stop workloads in scope: SIGTERM, grace period, SIGKILL",
    "shutdown": "terminate every model-serving workload in scope and fence the nodes",
}
_DRY_RUN = "show the targets the controller resolves now; create nothing, ask nothing"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="backstop",
        description="See what runs on your accelerators and correct it fast. The global "
        "options go before or after the command; after it, they win.",
    )
    parser.add_argument("--version", action="version", version=f"backstop {__version__}")
    add_global_flags(parser)
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=Parser, help="what to do"
    )
    sub.required = True
    add_daemons(sub)
    _add_listings(sub)
    _add_corrections(sub)
    _add_policy(sub)
    _add_alerts(sub)
    add_incidents(sub)
    _add_pki(sub)
    _add_keys_and_audit(sub)
    demo = verb(
        sub, "demo", lazy("daemons", "demo"), "run everything locally and narrate a correction"
    )
    demo.add_argument("--pace", type=seconds(0, 3600), default=1.0, help="seconds between steps")
    _add_config(sub)
    completion = verb(
        sub, "completion", lazy("completion", "completion"), "print the shell completion script"
    )
    completion.add_argument(
        "shell", choices=("bash", "zsh", "fish"), help="the shell to complete in"
    )
    spread_global_flags(parser)
    return parser


def _add_listings(sub: Subcommands) -> None:
    nodes = verb(sub, "nodes", lazy("listings", "nodes"), help="list nodes and their GPUs")
    add_output_flag(nodes)
    add_watch_flags(nodes)
    workloads = verb(
        sub, "workloads", lazy("listings", "workloads"), help="list workloads and fingerprints"
    )
    workloads.add_argument("--node", default="", help="only this node")
    workloads.add_argument(
        "--model", default="", help="only workloads holding this model (id prefix, 12+ digits)"
    )
    workloads.add_argument("--framework", default="", help="only this framework, e.g. vllm")
    workloads.add_argument(
        "--namespace", default="", help="only workloads in this Kubernetes namespace"
    )
    workloads.add_argument(
        "--pod", default="", metavar="NS/NAME", help="only workloads of this Kubernetes pod"
    )
    workloads.add_argument(
        "--state", default="", help="only workloads in this state: running, paused, throttled"
    )
    workloads.add_argument(
        "--selector", default="", help="only workloads with these labels: k=v,k2!=v2"
    )
    add_output_flag(workloads)
    add_watch_flags(workloads)
    models = verb(
        sub,
        "models",
        lazy("models", "models"),
        help="list identified models: copies, nodes, GPUs, tokens/s; or one's history",
    )
    models.add_argument(
        "model_id", nargs="?", default="", help="one model (id prefix, 12+ digits) and its history"
    )
    add_output_flag(models)
    describe = verb(
        sub,
        "describe",
        lazy("describe", "describe"),
        help="everything known about one node, workload, correction or model",
    )
    describe.add_argument("kind", choices=("node", "workload", "correction", "model"), help="what")
    describe.add_argument("id", help="its id (a model: an id prefix of 12+ digits)")
    add_output_flag(describe)
    corrections = verb(
        sub, "corrections", lazy("listings", "corrections"), help="list corrections, newest first"
    )
    corrections.add_argument(
        "--limit", type=whole(1, 10_000), default=50, help="how many, at most 10000"
    )
    add_output_flag(corrections)
    add_watch_flags(corrections)


def _add_corrections(sub: Subcommands) -> None:
    for name, text in CORRECTION_VERBS.items():
        p = verb(sub, name, lazy("operate", "correct"), text)
        scope = p.add_argument_group("scope (one or more; --all alone)")
        scope.add_argument("--all", action="store_true", help="every workload on every node")
        scope.add_argument("--node", action="append", default=[], help="node id (repeatable)")
        scope.add_argument("--selector", default="", help="labels, e.g. backstop.io/framework=vllm")
        scope.add_argument(
            "--model", action="append", default=[], help="model id or weights hash (prefix)"
        )
        scope.add_argument("--workload", action="append", default=[], help="workload id")
        scope.add_argument(
            "--namespace", default="", help="workloads the agents attributed to this namespace"
        )
        scope.add_argument("--pod", default="", metavar="NS/NAME", help="one Kubernetes pod")
        scope.add_argument(
            "--unattributed",
            action="store_true",
            help="GPU use the agents cannot attribute to a process (only its GPU can be capped)",
        )
        p.add_argument(
            "--reason", help="why (recorded with the correction; required but with --dry-run)"
        )
        p.add_argument("--dry-run", action="store_true", help=_DRY_RUN)
        p.add_argument("--wait", action="store_true", help="wait for every target to answer")
        p.add_argument("--timeout", type=_WAIT, default=60.0, help="seconds to --wait")
        p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        p.add_argument(
            "--ttl", type=seconds(0, MAX_WAIT_S), default=0.0, help="expiry in seconds (0: 1 h)"
        )
        add_incident_flag(p)
        if name == "throttle":
            p.add_argument(
                "--power-fraction", type=finite, default=None, help="GPU power cap (0-1]; 0.5"
            )
            p.add_argument("--cpu-cores", type=finite, default=None, help="CPU quota in cores")
        if name in ("terminate", "shutdown"):
            p.add_argument("--grace", type=finite, default=None, help="SIGTERM→SIGKILL seconds")
        if name == "observe":
            p.add_argument("--interval", type=finite, default=None, help="sampling seconds")
        add_output_flag(p)

    approve = verb(
        sub, "approve", lazy("operate", "approve"), help="approve a proposed correction (signed)"
    )
    approve.add_argument("id", help="the correction to approve")
    approve.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    add_output_flag(approve)
    resume = verb(
        sub,
        "resume",
        lazy("operate", "resume"),
        help="undo an observe, throttle, pause or shutdown",
    )
    resume.add_argument("id", help="the correction to undo")
    resume.add_argument("--reason", default="", help="why (default: resume ID)")
    resume.add_argument("--dry-run", action="store_true", help=_DRY_RUN)
    resume.add_argument("--wait", action="store_true", help="wait for every target to answer")
    resume.add_argument("--timeout", type=_WAIT, default=60.0, help="seconds to --wait")
    add_incident_flag(resume)
    add_output_flag(resume)
    status = verb(
        sub, "status", lazy("operate", "status"), help="show a correction and its targets"
    )
    status.add_argument("id", help="the correction to show")
    status.add_argument("--watch", action="store_true", help="follow until it finishes")
    status.add_argument("--timeout", type=_WAIT, default=300.0, help="seconds to --watch")
    add_output_flag(status)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if argv is None:
        from backstop.cli.completion import complete_if_asked

        complete_if_asked(parser)
    from backstop.cli.config_sources import parse_layered

    args, _ = parse_layered(parser, list(sys.argv[1:] if argv is None else argv))
    try:
        handler: Handler = args.handler
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BackstopError as exc:
        from backstop.cli.render import escape  # the message may come from the controller

        sys.stderr.write(f"backstop: {escape(exc.message)}\n")
        return exit_code_for(exc)


def _add_config(sub: Subcommands) -> None:
    config_sub = command_group(sub, "config", "the daemons' settings and where each comes from")
    show = verb(
        config_sub,
        "show",
        lazy("config_show", "show"),
        help="a daemon's effective settings and the source of each (flag, env, file, default)",
        description="The settings the daemon would run with here: each from its flag (given "
        "after --), else BACKSTOP_<FLAG>, else its TOML file, else the default.",
    )
    show.add_argument(
        "--daemon", choices=tuple(DAEMONS), default="controller", help="whose settings"
    )
    show.add_argument("--config", default="", metavar="FILE", help="default: the daemon's own")
    show.add_argument(
        "flags", nargs=argparse.REMAINDER, help="the daemon's flags, after --, as it would get them"
    )
    add_output_flag(show)


def _add_alerts(sub: Subcommands) -> None:
    alerts = verb(
        sub,
        "alerts",
        lazy("alerts", "alerts"),
        help="alerts the policies raised: open ones, newest first; `alerts ack ID`",
        description="Without a subcommand: list the open alerts (firing or acknowledged).",
    )
    alerts.add_argument("--all", action="store_true", help="resolved alerts too")
    alerts.add_argument("--limit", type=whole(1, 10_000), default=100, help="at most this many")
    add_output_flag(alerts)
    add_watch_flags(alerts)
    actions = alerts.add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", parser_class=Parser, help="ack (or none: list)"
    )
    ack = verb(
        actions,
        "ack",
        lazy("alerts", "ack"),
        help="say you are on it (an operator); it stays until its policy resolves it",
    )
    ack.add_argument("id", metavar="ID", help="the alert's id (alr-...)")
    add_output_flag(ack)


def _add_policy(sub: Subcommands) -> None:
    group = command_group(sub, "policy", "watchlist policies: what to watch for, and what to do")

    def command(name: str, handler: str, help: str, description: str = "") -> Parser:
        parser = verb(group, name, lazy("policies", handler), help, description)
        add_output_flag(parser)
        return parser

    apply = command(
        "apply",
        "apply",
        "apply a policy file (a new version; a correcting one needs its action's quorum)",
        "Send FILE's bytes as they are (signed with --key in a secure controller). A policy "
        "whose action corrects is proposed until it has the approvals issuing that action by "
        "hand needs; the version in force stays until then.",
    )
    apply.add_argument("file", metavar="FILE", help="the policy file (YAML), or - for stdin")
    listing = command("list", "list_policies", "the policies in force and the proposed ones")
    listing.add_argument("--all", action="store_true", help="superseded and withdrawn too")
    show = command("show", "show", "a policy: its version in force, its bytes and signatures")
    show.add_argument("name", metavar="NAME", help="the policy's name")
    show.add_argument("--history", action="store_true", help="every version, oldest first")
    approve = command(
        "approve", "approve", "approve a proposed policy version (signs its exact bytes)"
    )
    approve.add_argument("name", metavar="NAME", help="the policy's name")
    approve.add_argument(
        "--version", type=whole(1, 2**63 - 1), default=0, help="default: the newest proposed"
    )
    approve.add_argument("--yes", action="store_true", help="do not ask before signing")
    delete = command(
        "delete", "delete", "delete a policy (undoing a correcting one needs its undo quorum)"
    )
    delete.add_argument("name", metavar="NAME", help="the policy's name")
    test = command("test", "test", "what a policy file would match now; stores nothing")
    test.add_argument("file", metavar="FILE", help="the policy file (YAML), or - for stdin")


def _add_pki(sub: Subcommands) -> None:
    pki_sub = command_group(sub, "pki", "certificate authority, certificates, enrolment tokens")
    init = verb(
        pki_sub, "init", lazy("trust", "pki_init"), help="create a CA (ca.crt, ca.key) in --dir"
    )
    init.add_argument("--dir", required=True, help="the new CA's directory")
    add_output_flag(init)
    issue = verb(
        pki_sub,
        "issue",
        lazy("trust", "pki_issue"),
        help="issue a certificate from the CA in --dir",
    )
    issue.add_argument("--dir", required=True, help="the CA directory")
    issue.add_argument("--name", required=True, help="CN: controller name, node id or person")
    issue.add_argument(
        "--role",
        required=True,
        choices=("controller", "agent", "client"),
        help="what the certificate is for",
    )
    issue.add_argument("--dns", action="append", default=[], help="SAN DNS name (controller)")
    issue.add_argument("--ip", action="append", default=[], help="SAN IP address (controller)")
    issue.add_argument("--out", required=True, help="directory for the certificate and key")
    issue.add_argument(
        "--days", type=whole(1, 36_500), default=365, help="how long the certificate is valid"
    )
    add_output_flag(issue)
    token = verb(
        pki_sub,
        "token",
        lazy("trust", "pki_token"),
        help="a one-time enrolment token for a node (admin)",
    )
    token.add_argument("--node", required=True, help="the node id the token enrols")
    token.add_argument(
        "--ttl", type=seconds(0, 7 * 24 * 3600.0, low_open=True), default=3600.0, help="seconds"
    )
    add_output_flag(token)
    revoke = verb(
        pki_sub,
        "revoke",
        lazy("trust", "pki_revoke"),
        help="put certificates on the CA's revocation list (through the controller, or --dir)",
        description="Without --dir: ask the controller (admin) to revoke --node; it refuses the "
        "node at once and, holding the CA key for enrolment, adds the node's certificates to "
        "the CA's revocation list. With --dir: sign the revocation list in that CA directory "
        "(where ca.key is) for --node, --person, --cert or --serial; then copy crl.pem to "
        "every daemon's TLS directory.",
    )
    revoke.add_argument("--node", default="", help="every certificate issued to this node")
    revoke.add_argument("--person", default="", help="with --dir: every client certificate")
    revoke.add_argument("--cert", action="append", default=[], help="with --dir: a PEM file")
    revoke.add_argument("--serial", action="append", default=[], help="with --dir: hex serial")
    revoke.add_argument("--dir", default="", help="the CA directory (ca.crt, ca.key, crl.pem)")
    revoke.add_argument("--reason", required=True, help="why (recorded)")
    add_output_flag(revoke)


def _add_keys_and_audit(sub: Subcommands) -> None:
    keys_sub = command_group(sub, "keys", "operator signing keys")
    new = verb(keys_sub, "new", lazy("trust", "keys_new"), help="make an Ed25519 key pair")
    new.add_argument("--out", required=True, help="private key path (PATH.pub gets the public)")
    new.add_argument("--name", default="", help="your name, for the trust-policy snippet")
    new.add_argument("--role", default="operator", help="for the trust-policy snippet")
    add_output_flag(new)

    audit_sub = command_group(sub, "audit", "the tamper-evident record")
    verify = verb(
        audit_sub,
        "verify",
        lazy("audit_cmd", "verify"),
        help="check a chain and every witnessed head; point at the first bad entry",
    )
    verify.add_argument(
        "--journal", "--file", dest="journal", default="",
        help="an agent journal (default: the controller's chain)",
    )  # fmt: skip
    verify.add_argument(
        "--node", default="", help="hold --journal to the journal head the controller recorded"
    )
    add_output_flag(verify)
    export = verb(audit_sub, "export", lazy("audit_cmd", "export"), help="JSON lines for a SIEM")
    export.add_argument(
        "--journal", "--file", dest="journal", default="",
        help="an agent journal (default: the controller's chain)",
    )  # fmt: skip
    export.add_argument(
        "--after", type=whole(0, 2**63 - 1), default=0, help="only entries after this seq"
    )
    head = verb(
        audit_sub,
        "head",
        lazy("audit_cmd", "head"),
        help="the controller's audit head (this CLI keeps it)",
    )
    add_output_flag(head)

    whoami = verb(sub, "whoami", lazy("trust", "whoami"), help="who the controller thinks you are")
    add_output_flag(whoami)


if __name__ == "__main__":
    raise SystemExit(main())
