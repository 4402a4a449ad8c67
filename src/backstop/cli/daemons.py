"""``backstop controller serve``, ``agent run``, ``operator run`` and ``cloud run``: settings
from flags, then run."""

from __future__ import annotations

import argparse
from pathlib import Path

from backstop.core.errors import InvalidInput
from backstop.core.scope import parse_selector
from backstop.core.settings import AgentSettings, ControllerSettings
from backstop.telemetry import logs
from backstop.telemetry.service import run_until_signal


def controller_serve(args: argparse.Namespace) -> int:
    from backstop.controller.server import serve

    logs.configure(args.log_level, args.log_format)
    if args.report_interval <= 0 or args.ack_timeout <= 0:
        raise InvalidInput("--report-interval and --ack-timeout must be positive")
    settings = ControllerSettings(
        listen=args.listen,
        store_url=args.store,
        metrics_listen=args.metrics_listen,
        report_interval_s=args.report_interval,
        ack_timeout_s=args.ack_timeout,
        insecure=args.insecure,
        tls_dir=Path(args.server_tls_dir) if args.server_tls_dir else None,
        trust_policy=Path(args.trust_policy) if args.trust_policy else None,
        enrol_listen=args.enrol_listen,
        crl=Path(args.crl) if args.crl else None,
        controller_id=args.replica_id,
        reflection=args.reflection,
        alert_webhook_url=args.alert_webhook_url,
        alert_webhook_secret_file=(
            Path(args.alert_webhook_secret_file) if args.alert_webhook_secret_file else None
        ),
        alertmanager_url=args.alertmanager_url,
        alert_external_url=args.alert_external_url,
    )
    ready = Path(args.ready_file) if args.ready_file else None
    return run_until_signal(serve(settings, ready), "controller")


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"malformed --label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def agent_run(args: argparse.Namespace) -> int:
    from backstop.agent.daemon import AgentDaemon

    logs.configure(args.log_level, args.log_format)
    if args.report_interval <= 0:
        raise InvalidInput("--report-interval must be positive")
    if args.lease and args.lease < 2 * args.report_interval:
        raise InvalidInput("--lease must be at least twice --report-interval (or 0 for off)")
    if args.lease_selector:
        parse_selector(args.lease_selector)
    settings = AgentSettings(
        controller=args.controller,
        node_id=args.node_id,
        state_dir=Path(args.state_dir),
        report_interval_s=args.report_interval,
        metrics_listen=args.metrics_listen,
        nvml_library=args.nvml_library,
        labels=_labels(args.label),
        cgroup_prefixes=tuple(args.cgroup_prefix),
        insecure=args.insecure,
        tls_dir=Path(args.agent_tls_dir) if args.agent_tls_dir else None,
        trust_policy=Path(args.trust_policy) if args.trust_policy else None,
        crl=Path(args.crl) if args.crl else None,
        lease_s=args.lease,
        lease_selector=args.lease_selector,
        pod_resources_socket=args.pod_resources_socket,
        container_logs_dir=Path(args.container_logs_dir) if args.container_logs_dir else None,
    )
    return run_until_signal(AgentDaemon(settings).run(), "agent")


def operator_run(args: argparse.Namespace) -> int:
    try:
        from backstop.operator.run import Operator
        from backstop.operator.settings import OperatorSettings
    except ImportError as exc:
        raise InvalidInput(
            f"the operator needs the Kubernetes client ({exc.name} is missing): "
            "pip install 'backstop[k8s]'"
        ) from exc

    logs.configure(args.log_level, args.log_format)
    settings = OperatorSettings(
        kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
        cluster_name=args.cluster_name,
        controller="" if args.no_controller else args.controller,
        insecure=args.insecure,
        tls_dir=Path(args.operator_tls_dir) if args.operator_tls_dir else None,
        trust_policy=Path(args.trust_policy) if args.trust_policy else None,
        state_dir=Path(args.state_dir),
        resync_s=args.resync,
        report_interval_s=args.report_interval,
    )
    return run_until_signal(Operator(settings).run(), "operator")


def cloud_run(args: argparse.Namespace) -> int:
    from backstop.cloud.settings import CloudSettings

    logs.configure(args.log_level, args.log_format)
    settings = CloudSettings(
        provider=args.provider,
        controller=args.controller,
        regions=tuple(args.region),
        project=args.project,
        zones=tuple(args.zone),
        endpoint_url=args.endpoint_url,
        node_id=args.node_id,
        insecure=args.insecure,
        tls_dir=Path(args.cloud_tls_dir) if args.cloud_tls_dir else None,
        trust_policy=Path(args.trust_policy) if args.trust_policy else None,
        state_dir=Path(args.state_dir),
        report_interval_s=args.report_interval,
    )
    from backstop.cloud.agent import CloudAgent, check_settings

    check_settings(settings)
    try:
        from backstop.cloud.providers import open_provider

        provider = open_provider(settings)
    except ImportError as exc:
        raise InvalidInput(
            f"the cloud agent needs its cloud SDK ({exc.name} is missing): "
            "pip install 'backstop[cloud]'"
        ) from exc
    return run_until_signal(CloudAgent(settings, provider).run(), "cloud agent")


def demo(args: argparse.Namespace) -> int:
    """The narrated local demo."""
    from backstop.demo.narrated import run_demo

    return run_demo(pace_s=args.pace)
