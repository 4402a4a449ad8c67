"""The parsers of the commands that run a daemon: ``controller serve``, ``agent run`` and
``agent enroll``, ``operator run``, ``cloud run``."""

from __future__ import annotations

import argparse

from backstop.cli.config_sources import default_config
from backstop.cli.numbers import MAX_WAIT_S, seconds
from backstop.cli.parser_style import Parser, Subcommands, command_group
from backstop.cli.verbs import lazy, verb
from backstop.core.settings import DEFAULT_CONTROLLER

_POSITIVE = seconds(0, MAX_WAIT_S, low_open=True)
_NONNEGATIVE = seconds(0, MAX_WAIT_S)


def add_config_flag(p: argparse.ArgumentParser, daemon: str) -> None:
    """``--config``: the daemon's TOML file (keys are its long flag names)."""
    p.add_argument(
        "--config",
        default=default_config(daemon),
        metavar="FILE",
        help="settings file, keys are the long flag names; flags and BACKSTOP_<FLAG> "
        "variables win over it (default %(default)s, may be missing; env BACKSTOP_CONFIG)",
    )


def _daemon_command(group: Subcommands, daemon: str, name: str, help: str) -> Parser:
    """``backstop DAEMON NAME``, run by ``daemons.DAEMON_NAME``, with the daemon's ``--config``."""
    parser = verb(group, name, lazy("daemons", f"{daemon}_{name}"), help)
    add_config_flag(parser, daemon)
    return parser


def add_daemons(sub: Subcommands) -> None:
    _add_controller(sub)
    _add_operator(sub)
    _add_cloud(sub)
    _add_agent(sub)


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


def _add_cloud(sub: Subcommands) -> None:
    cloud_sub = command_group(sub, "cloud", "run the cloud agent for one AWS or GCP account")
    cloud_run = _daemon_command(
        cloud_sub,
        "cloud",
        "run",
        "report the account's GPU instances and endpoints; stop and hold on command",
    )
    cloud_run.add_argument(
        "--provider", required=True, choices=("aws", "gcp"), help="the cloud the account is in"
    )
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
        type=_POSITIVE,
        default=30.0,
        metavar="SECONDS",
        help="between inventories (default %(default)s; cloud APIs are rate-limited)",
    )


def _add_controller(sub: Subcommands) -> None:
    ctl_sub = command_group(sub, "controller", "run the central controller")
    serve = _daemon_command(ctl_sub, "controller", "serve", "serve agents and the control API")
    serve.add_argument("--listen", default=DEFAULT_CONTROLLER, help="gRPC HOST:PORT")
    serve.add_argument(
        "--store", default="sqlite:///backstop.db", help="sqlite:///PATH (default %(default)s)"
    )
    serve.add_argument("--metrics-listen", default="", help="HOST:PORT for /metrics, /healthz")
    serve.add_argument("--report-interval", type=_POSITIVE, default=5.0, help="seconds")
    serve.add_argument(
        "--ack-timeout", type=_POSITIVE, default=10.0, help="seconds before a target is unreachable"
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
    serve.add_argument(
        "--no-reflection",
        dest="reflection",
        action="store_false",
        help="do not serve gRPC server reflection (on by default, behind the same TLS)",
    )
    alerts = serve.add_argument_group("alert sinks (see docs/alerts.md)")
    alerts.add_argument("--alert-webhook-url", default="", help="POST every alert change here")
    alerts.add_argument(
        "--alert-webhook-secret-file", default="", help="the HMAC-SHA256 key for the webhook"
    )
    alerts.add_argument("--alertmanager-url", default="", help="http://HOST:9093 (API v2)")
    alerts.add_argument(
        "--alert-external-url", default="", help="the generatorURL alerts point back to"
    )


def _add_operator(sub: Subcommands) -> None:
    op_sub = command_group(sub, "operator", "run the Kubernetes operator")
    op_run = _daemon_command(
        op_sub,
        "operator",
        "run",
        "apply Correction resources; with a controller, be this cluster's agent",
    )
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
        "--resync", type=_POSITIVE, default=30.0, metavar="SECONDS", help="between full reconciles"
    )
    op_run.add_argument("--report-interval", type=_POSITIVE, default=10.0, help="seconds")


def _add_agent(sub: Subcommands) -> None:
    agent_sub = command_group(sub, "agent", "run the node agent")
    run = _daemon_command(agent_sub, "agent", "run", "report this node and apply corrections")
    run.add_argument("--node-id", default="", help="stable node name (default: host name)")
    run.add_argument("--state-dir", default="/var/lib/backstop", help="agent journal directory")
    run.add_argument("--report-interval", type=_POSITIVE, default=5.0, help="seconds")
    run.add_argument("--metrics-listen", default="", help="HOST:PORT for /metrics, /healthz")
    run.add_argument("--nvml-library", default="", help="path of libnvidia-ml.so.1")
    run.add_argument("--label", action="append", default=[], help="node label K=V (repeatable)")
    run.add_argument("--tls-dir", dest="agent_tls_dir", default="", help="default: STATE_DIR/tls")
    run.add_argument(
        "--crl", default="", help="the CA's revocation list (default: TLS_DIR/crl.pem)"
    )
    run.add_argument(
        "--lease",
        type=_NONNEGATIVE,
        default=0.0,
        help="fail closed: pause workloads after this many seconds without the controller",
    )
    run.add_argument("--lease-selector", default="", help="which workloads the lease pauses")
    run.add_argument("--trust-policy", default="", help="operators' keys and quorum (JSON)")
    kube = run.add_argument_group("Kubernetes attribution (see docs/kubernetes.md)")
    kube.add_argument(
        "--pod-resources-socket",
        default="/var/lib/kubelet/pod-resources/kubelet.sock",
        metavar="PATH",
        help="the kubelet's PodResources socket, for GPU allocations (empty: not asked)",
    )
    kube.add_argument(
        "--container-logs-dir",
        default="/var/log/containers",
        metavar="DIR",
        help="the kubelet's container log links, for pod names (empty: pod UIDs only)",
    )
    enroll = verb(
        agent_sub,
        "enroll",
        lazy("trust", "enroll"),
        help="join with a one-time token; get a certificate",
    )
    enroll.add_argument("--enrol-address", required=True, help="controller enrolment HOST:PORT")
    enroll.add_argument("--token", required=True, help="from `backstop pki token`")
    enroll.add_argument("--ca", required=True, help="the CA certificate to trust (ca.crt)")
    enroll.add_argument("--node-id", required=True, help="the node's name (as the token says)")
    enroll.add_argument(
        "--state-dir", default="/var/lib/backstop", help="where the certificate and key go"
    )
    run.add_argument(
        "--cgroup-prefix",
        action="append",
        default=[],
        help="only processes under this cgroup v2 path can be workloads (repeatable)",
    )
