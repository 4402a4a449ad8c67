"""Entry point of ``backstop``: the parser, and the mapping of errors to exit codes.

Exit codes: 0 success; 1 the operation ran but did not fully succeed (a correction failed or a
target was unreachable, or an audit chain is broken); 2 bad input; 3 controller unreachable;
4 not found; 5 conflict; 6 permission denied.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from backstop import __version__
from backstop.cli.numbers import MAX_WAIT_S, finite, log_level, seconds, whole
from backstop.cli.verbs import Handler, lazy
from backstop.core.errors import BackstopError, InvalidInput, exit_code_for
from backstop.core.settings import DEFAULT_CONTROLLER

EXIT_USAGE = exit_code_for(InvalidInput("usage"))
_WAIT = seconds(0, MAX_WAIT_S, low_open=True)

CORRECTION_VERBS = {
    "observe": "raise the sampling rate of workloads in scope (no effect on them)",
    "throttle": "cap GPU power (and optionally CPU) of workloads in scope",
    "pause": "freeze workloads in scope (GPU memory stays allocated)",
    "terminate": "stop workloads in scope: SIGTERM, grace period, SIGKILL",
    "shutdown": "terminate every model-serving workload in scope and fence the nodes",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        from backstop.cli.render import escape

        self.print_usage(sys.stderr)
        sys.stderr.write(f"backstop: error: {escape(message)}\n")
        raise SystemExit(EXIT_USAGE)


def _output_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="output format"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="backstop",
        description="See what runs on your accelerators and correct it fast.",
    )
    parser.add_argument("--version", action="version", version=f"backstop {__version__}")
    parser.add_argument(
        "--controller",
        default=os.environ.get("BACKSTOP_CONTROLLER", DEFAULT_CONTROLLER),
        help="controller address HOST:PORT, or several replicas HOST:PORT,HOST:PORT tried in "
        "order (env BACKSTOP_CONTROLLER; default %(default)s)",
    )
    parser.add_argument(
        "--as",
        dest="user",
        default=os.environ.get("BACKSTOP_USER", ""),
        help="who is acting (env BACKSTOP_USER; default: the login name)",
    )
    parser.add_argument(
        "--tls-dir",
        default=os.environ.get("BACKSTOP_TLS_DIR", ""),
        help="ca.crt, client.crt, client.key for mutual TLS (env BACKSTOP_TLS_DIR)",
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("BACKSTOP_KEY", ""),
        help="your Ed25519 key: corrections and approvals are signed with it (env BACKSTOP_KEY)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=os.environ.get("BACKSTOP_INSECURE", "") == "1",
        help="plaintext to a loopback controller in open mode (env BACKSTOP_INSECURE=1)",
    )
    parser.add_argument(
        "--log-level", type=log_level, default="info", help="debug, info, warning, error"
    )
    parser.add_argument(
        "--log-format", choices=("auto", "text", "json"), default="auto", help="daemon log format"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_controller(sub)
    _add_operator(sub)
    _add_cloud(sub)
    _add_agent(sub)
    _add_listings(sub)
    _add_corrections(sub)
    _add_pki(sub)
    _add_keys_and_audit(sub)
    demo = sub.add_parser("demo", help="run everything locally and narrate a correction")
    demo.set_defaults(handler=lazy("daemons", "demo"))
    demo.add_argument("--pace", type=seconds(0, 3600), default=1.0, help="seconds between steps")
    return parser


def _group(
    sub: argparse._SubParsersAction[_Parser], name: str, help_text: str
) -> argparse._SubParsersAction[_Parser]:
    """A command that does its work through one of its subcommands (``backstop pki init``)."""
    group = sub.add_parser(name, help=help_text)
    subcommands = group.add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser
    )
    subcommands.required = True
    return subcommands


def _node_files(
    p: argparse.ArgumentParser, *, state_dir: str, state_help: str, tls_dest: str, tls_help: str
) -> None:
    """--state-dir, --tls-dir and --trust-policy of a daemon that reports to the controller as
    a node (the cloud agent, the operator)."""
    p.add_argument("--state-dir", default=state_dir, metavar="DIR", help=state_help)
    p.add_argument("--tls-dir", dest=tls_dest, default="", metavar="DIR", help=tls_help)
    p.add_argument(
        "--trust-policy", default="", metavar="FILE", help="operators' keys and quorum (JSON)"
    )


def _add_cloud(sub: argparse._SubParsersAction[_Parser]) -> None:
    cloud_sub = _group(sub, "cloud", "run the cloud agent for one AWS or GCP account")
    cloud_run = cloud_sub.add_parser(
        "run", help="report the account's GPU instances and endpoints; stop and hold on command"
    )
    cloud_run.set_defaults(handler=lazy("daemons", "cloud_run"))
    cloud_run.add_argument("--provider", required=True, choices=("aws", "gcp"))
    cloud_run.add_argument(
        "--region", action="append", default=[], help="AWS region to watch (repeatable)"
    )
    cloud_run.add_argument("--project", default="", help="GCP project id")
    cloud_run.add_argument(
        "--zone", action="append", default=[], help="GCP zone to watch (repeatable)"
    )
    cloud_run.add_argument(
        "--endpoint-url", default="", help="the cloud API's address (private or test endpoint)"
    )
    cloud_run.add_argument(
        "--node-id", default="", help="the controller's name for it (default PROVIDER-ACCOUNT)"
    )
    _node_files(
        cloud_run,
        state_dir="/var/lib/backstop-cloud",
        state_help="report spool and action journal",
        tls_dest="cloud_tls_dir",
        tls_help="ca.crt, node.crt, node.key (default: STATE_DIR/tls)",
    )
    cloud_run.add_argument(
        "--report-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="between inventories (default %(default)s; cloud APIs are rate-limited)",
    )


def _add_controller(sub: argparse._SubParsersAction[_Parser]) -> None:
    ctl_sub = _group(sub, "controller", "run the central controller")
    serve = ctl_sub.add_parser("serve", help="serve agents and the control API")
    serve.set_defaults(handler=lazy("daemons", "controller_serve"))
    serve.add_argument("--listen", default=DEFAULT_CONTROLLER, help="gRPC HOST:PORT")
    serve.add_argument(
        "--store", default="sqlite:///backstop.db", help="sqlite:///PATH (default %(default)s)"
    )
    serve.add_argument("--metrics-listen", default="", help="HOST:PORT for /metrics, /healthz")
    serve.add_argument("--report-interval", type=float, default=5.0, help="seconds")
    serve.add_argument(
        "--ack-timeout", type=float, default=10.0, help="seconds before a target is unreachable"
    )
    serve.add_argument("--ready-file", default="", help="write the bound address here when ready")
    serve.add_argument(
        "--replica-id",
        default="",
        help="this replica's name among several on one PostgreSQL store (default HOST:PID)",
    )
    serve.add_argument(
        "--tls-dir", dest="server_tls_dir", default="", help="ca.crt, controller.crt/.key, ca.key"
    )
    serve.add_argument("--trust-policy", default="", help="people, roles, keys and quorum (JSON)")
    serve.add_argument("--enrol-listen", default="", help="HOST:PORT for node enrolment")
    serve.add_argument(
        "--crl", default="", help="the CA's revocation list (default: TLS_DIR/crl.pem)"
    )


def _add_operator(sub: argparse._SubParsersAction[_Parser]) -> None:
    op_sub = _group(sub, "operator", "run the Kubernetes operator")
    op_run = op_sub.add_parser(
        "run", help="apply Correction resources; with a controller, be this cluster's agent"
    )
    op_run.set_defaults(handler=lazy("daemons", "operator_run"))
    op_run.add_argument(
        "--kubeconfig", default="", metavar="PATH", help="default: in-cluster, else ~/.kube/config"
    )
    op_run.add_argument(
        "--cluster-name",
        default="default",
        metavar="NAME",
        help="the controller knows it as node k8s-NAME",
    )
    op_run.add_argument(
        "--no-controller", action="store_true", help="Correction resources only; no controller"
    )
    _node_files(
        op_run,
        state_dir="/var/lib/backstop-operator",
        state_help="report spool directory",
        tls_dest="operator_tls_dir",
        tls_help="ca.crt, node.crt, node.key of node k8s-NAME (default: STATE_DIR/tls)",
    )
    op_run.add_argument(
        "--resync", type=float, default=30.0, metavar="SECONDS", help="between full reconciles"
    )
    op_run.add_argument("--report-interval", type=float, default=10.0, help="seconds")


def _add_agent(sub: argparse._SubParsersAction[_Parser]) -> None:
    agent_sub = _group(sub, "agent", "run the node agent")
    run = agent_sub.add_parser("run", help="report this node and apply corrections")
    run.set_defaults(handler=lazy("daemons", "agent_run"))
    run.add_argument("--node-id", default="", help="stable node name (default: host name)")
    run.add_argument("--state-dir", default="/var/lib/backstop", help="agent journal directory")
    run.add_argument("--report-interval", type=float, default=5.0, help="seconds")
    run.add_argument("--metrics-listen", default="", help="HOST:PORT for /metrics, /healthz")
    run.add_argument("--nvml-library", default="", help="path of libnvidia-ml.so.1")
    run.add_argument("--label", action="append", default=[], help="node label K=V (repeatable)")
    run.add_argument("--tls-dir", dest="agent_tls_dir", default="", help="default: STATE_DIR/tls")
    run.add_argument(
        "--crl", default="", help="the CA's revocation list (default: TLS_DIR/crl.pem)"
    )
    run.add_argument(
        "--lease",
        type=float,
        default=0.0,
        help="fail closed: pause workloads after this many seconds without the controller",
    )
    run.add_argument("--lease-selector", default="", help="which workloads the lease pauses")
    run.add_argument("--trust-policy", default="", help="operators' keys and quorum (JSON)")
    enroll = agent_sub.add_parser("enroll", help="join with a one-time token; get a certificate")
    enroll.set_defaults(handler=lazy("trust", "enroll"))
    enroll.add_argument("--enrol-address", required=True, help="controller enrolment HOST:PORT")
    enroll.add_argument("--token", required=True, help="from `backstop pki token`")
    enroll.add_argument("--ca", required=True, help="the CA certificate to trust (ca.crt)")
    enroll.add_argument("--node-id", required=True)
    enroll.add_argument("--state-dir", default="/var/lib/backstop")
    run.add_argument(
        "--cgroup-prefix",
        action="append",
        default=[],
        help="only processes under this cgroup v2 path can be workloads (repeatable)",
    )


def _add_listings(sub: argparse._SubParsersAction[_Parser]) -> None:
    nodes = sub.add_parser("nodes", help="list nodes and their GPUs")
    nodes.set_defaults(handler=lazy("operate", "nodes"))
    _output_flag(nodes)
    workloads = sub.add_parser("workloads", help="list workloads and fingerprints")
    workloads.set_defaults(handler=lazy("operate", "workloads"))
    workloads.add_argument("--node", default="", help="only this node")
    workloads.add_argument(
        "--model", default="", help="only workloads holding this model (id prefix, 12+ digits)"
    )
    _output_flag(workloads)
    models = sub.add_parser(
        "models", help="list identified models: copies, nodes, GPUs, tokens/s; or one's history"
    )
    models.set_defaults(handler=lazy("models", "models"))
    models.add_argument(
        "model_id", nargs="?", default="", help="one model (id prefix, 12+ digits) and its history"
    )
    _output_flag(models)
    corrections = sub.add_parser("corrections", help="list corrections, newest first")
    corrections.set_defaults(handler=lazy("operate", "corrections"))
    corrections.add_argument(
        "--limit", type=whole(1, 10_000), default=50, help="at most 10000 (default %(default)s)"
    )
    _output_flag(corrections)


def _add_corrections(sub: argparse._SubParsersAction[_Parser]) -> None:
    for verb, text in CORRECTION_VERBS.items():
        p = sub.add_parser(verb, help=text, description=text)
        p.set_defaults(handler=lazy("operate", "correct"))
        scope = p.add_argument_group("scope (one or more; --all alone)")
        scope.add_argument("--all", action="store_true", help="every workload on every node")
        scope.add_argument("--node", action="append", default=[], help="node id (repeatable)")
        scope.add_argument("--selector", default="", help="labels, e.g. backstop.io/framework=vllm")
        scope.add_argument(
            "--model", action="append", default=[], help="model id or weights hash (prefix)"
        )
        scope.add_argument("--workload", action="append", default=[], help="workload id")
        p.add_argument("--reason", required=True, help="why (recorded with the correction)")
        p.add_argument("--wait", action="store_true", help="wait for every target to answer")
        p.add_argument(
            "--timeout", type=_WAIT, default=60.0, help="seconds to --wait (default %(default)s)"
        )
        p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        p.add_argument(
            "--ttl", type=seconds(0, MAX_WAIT_S), default=0.0, help="expiry in seconds (0: 1 h)"
        )
        if verb == "throttle":
            p.add_argument(
                "--power-fraction", type=finite, default=None, help="GPU power cap (0-1]; 0.5"
            )
            p.add_argument("--cpu-cores", type=finite, default=None, help="CPU quota in cores")
        if verb in ("terminate", "shutdown"):
            p.add_argument("--grace", type=finite, default=None, help="SIGTERM→SIGKILL seconds")
        if verb == "observe":
            p.add_argument("--interval", type=finite, default=None, help="sampling seconds")
        _output_flag(p)

    approve = sub.add_parser("approve", help="approve a proposed correction (signed)")
    approve.set_defaults(handler=lazy("operate", "approve"))
    approve.add_argument("id")
    approve.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _output_flag(approve)
    resume = sub.add_parser("resume", help="undo an observe, throttle, pause or shutdown")
    resume.set_defaults(handler=lazy("operate", "resume"))
    resume.add_argument("id")
    resume.add_argument("--reason", default="", help="why")
    resume.add_argument("--wait", action="store_true")
    resume.add_argument("--timeout", type=_WAIT, default=60.0)
    _output_flag(resume)
    status = sub.add_parser("status", help="show a correction and its targets")
    status.set_defaults(handler=lazy("operate", "status"))
    status.add_argument("id")
    status.add_argument("--watch", action="store_true", help="follow until it finishes")
    status.add_argument("--timeout", type=_WAIT, default=300.0)
    _output_flag(status)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        handler: Handler = args.handler
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BackstopError as exc:
        from backstop.cli.render import escape  # the message may come from the controller

        sys.stderr.write(f"backstop: {escape(exc.message)}\n")
        return exit_code_for(exc)


def _add_pki(sub: argparse._SubParsersAction[_Parser]) -> None:
    pki_sub = _group(sub, "pki", "certificate authority, certificates, enrolment tokens")
    init = pki_sub.add_parser("init", help="create a CA (ca.crt, ca.key) in --dir")
    init.set_defaults(handler=lazy("trust", "pki_init"))
    init.add_argument("--dir", required=True)
    issue = pki_sub.add_parser("issue", help="issue a certificate from the CA in --dir")
    issue.set_defaults(handler=lazy("trust", "pki_issue"))
    issue.add_argument("--dir", required=True, help="the CA directory")
    issue.add_argument("--name", required=True, help="CN: controller name, node id or person")
    issue.add_argument("--role", required=True, choices=("controller", "agent", "client"))
    issue.add_argument("--dns", action="append", default=[], help="SAN DNS name (controller)")
    issue.add_argument("--ip", action="append", default=[], help="SAN IP address (controller)")
    issue.add_argument("--out", required=True, help="directory for the certificate and key")
    issue.add_argument("--days", type=whole(1, 36_500), default=365)
    token = pki_sub.add_parser("token", help="a one-time enrolment token for a node (admin)")
    token.set_defaults(handler=lazy("trust", "pki_token"))
    token.add_argument("--node", required=True)
    token.add_argument(
        "--ttl", type=seconds(0, 7 * 24 * 3600.0, low_open=True), default=3600.0, help="seconds"
    )
    revoke = pki_sub.add_parser(
        "revoke",
        help="put certificates on the CA's revocation list (through the controller, or --dir)",
        description="Without --dir: ask the controller (admin) to revoke --node; it refuses the "
        "node at once and, holding the CA key for enrolment, adds the node's certificates to "
        "the CA's revocation list. With --dir: sign the revocation list in that CA directory "
        "(where ca.key is) for --node, --person, --cert or --serial; then copy crl.pem to "
        "every daemon's TLS directory.",
    )
    revoke.set_defaults(handler=lazy("trust", "pki_revoke"))
    revoke.add_argument("--node", default="", help="every certificate issued to this node")
    revoke.add_argument("--person", default="", help="with --dir: every client certificate")
    revoke.add_argument("--cert", action="append", default=[], help="with --dir: a PEM file")
    revoke.add_argument("--serial", action="append", default=[], help="with --dir: hex serial")
    revoke.add_argument("--dir", default="", help="the CA directory (ca.crt, ca.key, crl.pem)")
    revoke.add_argument("--reason", required=True)


def _add_keys_and_audit(sub: argparse._SubParsersAction[_Parser]) -> None:
    keys_sub = _group(sub, "keys", "operator signing keys")
    new = keys_sub.add_parser("new", help="make an Ed25519 key pair")
    new.set_defaults(handler=lazy("trust", "keys_new"))
    new.add_argument("--out", required=True, help="private key path (PATH.pub gets the public)")
    new.add_argument("--name", default="", help="your name, for the trust-policy snippet")
    new.add_argument("--role", default="operator", help="for the trust-policy snippet")

    audit_sub = _group(sub, "audit", "the tamper-evident record")
    verify = audit_sub.add_parser(
        "verify",
        help="check a chain and every witnessed head; point at the first bad entry",
    )
    verify.set_defaults(handler=lazy("audit_cmd", "verify"))
    verify.add_argument(
        "--journal", "--file", dest="journal", default="",
        help="an agent journal (default: the controller's chain)",
    )  # fmt: skip
    verify.add_argument(
        "--node", default="", help="hold --journal to the journal head the controller recorded"
    )
    verify.add_argument("-o", "--output", choices=("table", "json"), default="table")
    export = audit_sub.add_parser("export", help="JSON lines for a SIEM")
    export.set_defaults(handler=lazy("audit_cmd", "export"))
    export.add_argument(
        "--journal", "--file", dest="journal", default="",
        help="an agent journal (default: the controller's chain)",
    )  # fmt: skip
    export.add_argument(
        "--after", type=whole(0, 2**63 - 1), default=0, help="only entries after this seq"
    )
    head = audit_sub.add_parser("head", help="the controller's audit head (this CLI keeps it)")
    head.set_defaults(handler=lazy("audit_cmd", "head"))
    head.add_argument("-o", "--output", choices=("table", "json"), default="table")

    whoami = sub.add_parser("whoami", help="who the controller thinks you are")
    whoami.set_defaults(handler=lazy("trust", "whoami"))


if __name__ == "__main__":
    raise SystemExit(main())
