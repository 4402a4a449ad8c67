"""Settings: one typed section per daemon, a docstring on every field.

Defaults are the embedded, single-machine ones (SQLite, loopback). The CLI builds these from
flags and ``BACKSTOP_*`` environment variables; nothing here reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from backstop.core.specs import DEFAULT_EXPIRY_S

DEFAULT_CONTROLLER = "127.0.0.1:7443"


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    listen: str = DEFAULT_CONTROLLER
    """gRPC address for agents and the CLI (HOST:PORT; port 0 picks a free port)."""
    store_url: str = "sqlite:///backstop.db"
    """Where state lives: ``sqlite:///PATH`` (embedded) or ``postgresql://...``."""
    metrics_listen: str = ""
    """HOST:PORT for Prometheus ``/metrics`` and ``/healthz``; empty disables it."""
    insecure: bool = False
    """Plaintext gRPC and no trust policy (open mode): only allowed on a loopback address."""
    tls_dir: Path | None = None
    """``ca.crt``, ``controller.crt``, ``controller.key`` (and ``ca.key`` to sign enrolments)."""
    trust_policy: Path | None = None
    """People, their roles and Ed25519 keys, and the approvals each action needs (JSON)."""
    enrol_listen: str = ""
    """HOST:PORT for node enrolment (server-authenticated TLS only); empty disables it."""
    crl: Path | None = None
    """The CA's revocation list; default ``TLS_DIR/crl.pem`` (where revoking writes it when
    the controller holds ``ca.key``)."""
    report_interval_s: float = 5.0
    """How often agents are asked to report (sent in the Welcome message)."""
    ack_timeout_s: float = 10.0
    """A dispatched target without acknowledgement after this long becomes unreachable."""
    default_ttl_s: float = DEFAULT_EXPIRY_S
    """Corrections expire after this long unless the request says otherwise."""
    sample_retention_s: float = 24 * 3600.0
    model_history_s: float = 90 * 24 * 3600.0
    """How long a model's sightings are kept after a workload last held it."""
    """GPU samples older than this are pruned."""
    max_message_bytes: int = 8 * 1024 * 1024
    """Largest gRPC message accepted; larger ones are refused with RESOURCE_EXHAUSTED."""
    hello_timeout_s: float = 10.0
    """An agent stream that sends no Hello within this long is closed."""
    controller_id: str = ""
    """Name of this replica in logs and Welcome messages; defaults to host:pid."""
    reflection: bool = True
    """gRPC server reflection on the agent/control port (same TLS), for grpcurl and the like."""
    alert_webhook_url: str = ""
    """Where every alert change is POSTed as JSON (http:// or https://); empty: no webhook."""
    alert_webhook_secret_file: Path | None = None
    """A file holding the webhook's HMAC secret; the requests are signed when it is set."""
    alertmanager_url: str = ""
    """A Prometheus Alertmanager (``http://HOST:9093``) alerts are sent to; empty: none."""
    alert_external_url: str = ""
    """This controller as people reach it; Alertmanager's ``generatorURL`` is made from it."""
    alert_delivery_timeout_s: float = 10.0
    """How long one delivery attempt may take before it counts as failed."""


@dataclass(frozen=True, slots=True)
class AgentSettings:
    controller: str = DEFAULT_CONTROLLER
    """Controller gRPC address, HOST:PORT."""
    node_id: str = ""
    """Stable name of this node; defaults to the host name."""
    state_dir: Path = Path("/var/lib/backstop")
    """Where the agent keeps its journal of applied corrections and sequence numbers."""
    report_interval_s: float = 5.0
    """Seconds between reports, until the controller's Welcome says otherwise."""
    metrics_listen: str = ""
    """HOST:PORT for Prometheus ``/metrics`` and ``/healthz``; empty disables it."""
    nvml_library: str = ""
    """Absolute path of ``libnvidia-ml.so.1``; empty uses the loader's search path."""
    proc_root: Path = Path("/proc")
    """The proc filesystem to read (a host's /proc mounted into a container, or a fixture)."""
    labels: dict[str, str] = field(default_factory=dict)
    """Labels of this node, reported to the controller (e.g. zone, pool)."""
    cgroup_prefixes: tuple[str, ...] = ()
    """Only processes whose cgroup v2 path starts with one of these can be workloads (e.g.
    ``/kubepods``); empty: any process. Keeps system services out of reach of corrections."""
    insecure: bool = False
    """Plaintext gRPC to a loopback controller and unsigned commands (development only)."""
    tls_dir: Path | None = None
    """``ca.crt``, ``node.crt``, ``node.key``; default: ``STATE_DIR/tls`` (written by enrol)."""
    trust_policy: Path | None = None
    """The operators' keys and quorum rules that every command is verified against."""
    crl: Path | None = None
    """The CA's revocation list (a controller certificate on it is refused); default
    ``TLS_DIR/crl.pem``."""
    reconnect_max_s: float = 10.0
    """Upper bound of the reconnect backoff."""
    default_grace_s: float = 10.0
    """SIGTERM-to-SIGKILL grace when a terminate command names none."""
    spool_max_bytes: int = 64 * 1024 * 1024
    """Disk the report spool may use while the controller is away; then oldest are dropped."""
    lease_s: float = 0.0
    """Fail-closed lease: pause workloads in ``lease_scope`` after this long without a valid
    word from the controller (0: off). Lifted when the controller is heard again."""
    lease_selector: str = ""
    """Which workloads the lease pauses (a label selector); empty: every workload."""
    pod_resources_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"
    """The kubelet's PodResources unix socket (which container holds which GPU); empty: not
    asked. Absent on a node without a kubelet, which costs nothing but the judgement."""
    container_logs_dir: Path | None = Path("/var/log/containers")
    """The kubelet's container log links, which name each container's pod and namespace;
    ``None``: workloads get the pod UID only."""
