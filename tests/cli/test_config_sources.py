"""Where a daemon's settings come from, through the real CLI: each source alone and in every
pair (flag over environment over file over default), an empty variable as unset, a bad file
or variable refused with its name, key and reason before anything starts, and ``backstop
config show`` naming each setting's source."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backstop.cli.config_sources import parse_layered
from backstop.cli.main import build_parser

FLAG, ENV, FILE = "3", "4", "6"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BACKSTOP_")}
    return {**clean, **(extra or {})}


def _backstop(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv, full = [sys.executable, "-m", "backstop", *args], _env(env)
    return subprocess.run(argv, check=False, capture_output=True, text=True, env=full, timeout=60)


def _show(
    daemon: str, *flags: str, config: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, tuple[object, str]]:
    conf = ["--config", str(config)] if config else []
    done = _backstop(
        "config", "show", "--daemon", daemon, *conf, "-o", "json", "--", *flags, env=env
    )
    assert done.returncode == 0, done.stderr
    return {s["key"]: (s["value"], s["source"]) for s in json.loads(done.stdout)["settings"]}


def _file(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("sources", "value", "source"),
    [
        ((), 5.0, "default"),
        (("flag",), 3.0, "flag"),
        (("env",), 4.0, "env BACKSTOP_REPORT_INTERVAL"),
        (("file",), 6.0, "file"),
        (("flag", "env"), 3.0, "flag"),
        (("flag", "file"), 3.0, "flag"),
        (("env", "file"), 4.0, "env BACKSTOP_REPORT_INTERVAL"),
        (("flag", "env", "file"), 3.0, "flag"),
    ],
)
def test_flag_over_environment_over_file_over_default(
    tmp_path: Path, sources: tuple[str, ...], value: float, source: str
) -> None:
    config = _file(tmp_path, f"report-interval = {FILE}\n")
    flags = ["--report-interval", FLAG] if "flag" in sources else []
    env = {"BACKSTOP_REPORT_INTERVAL": ENV} if "env" in sources else {}
    shown = _show("agent", *flags, config=config if "file" in sources else None, env=env)
    expected = f"file {config}" if source == "file" else source
    assert shown["report-interval"] == (value, expected)


def test_an_empty_variable_is_unset(tmp_path: Path) -> None:
    config = _file(tmp_path, "report-interval = 6\n")
    env = {"BACKSTOP_REPORT_INTERVAL": "", "BACKSTOP_CONTROLLER": "", "BACKSTOP_INSECURE": ""}
    shown = _show("agent", config=config, env=env)
    assert shown["report-interval"] == (6.0, f"file {config}")
    assert shown["controller"] == ("127.0.0.1:7443", "default")
    assert shown["insecure"] == (False, "default")


def test_file_keys_take_dashes_or_underscores_and_the_global_flags(tmp_path: Path) -> None:
    config = _file(
        tmp_path,
        'metrics_listen = "127.0.0.1:9465"\nnode-id = "gpu-17"\ncontroller = "ctl:7443"\n'
        'insecure = true\nlog_level = "debug"\ntls-dir = "/srv/tls"\n'
        'cgroup-prefix = ["/kubepods", "/batch"]\n',
    )
    shown = _show("agent", config=config)
    where = f"file {config}"
    assert shown["metrics-listen"] == ("127.0.0.1:9465", where)
    assert shown["node-id"] == ("gpu-17", where)
    assert shown["controller"] == ("ctl:7443", where)
    assert shown["insecure"] == (True, where)
    assert shown["log-level"] == ("debug", where)
    assert shown["tls-dir"] == ("/srv/tls", where)  # the agent's own --tls-dir
    assert shown["cgroup-prefix"] == (["/kubepods", "/batch"], where)
    assert shown["config"] == (str(config), "flag")


def test_a_repeatable_flag_replaces_the_list_from_below(tmp_path: Path) -> None:
    config = _file(tmp_path, 'label = ["zone=a", "pool=x"]\n')
    assert _show("agent", config=config)["label"] == (["zone=a", "pool=x"], f"file {config}")
    env = {"BACKSTOP_LABEL": "zone=b, pool=y"}
    assert _show("agent", config=config, env=env)["label"] == (
        ["zone=b", "pool=y"],
        "env BACKSTOP_LABEL",
    )
    shown = _show("agent", "--label", "zone=c", config=config, env=env)
    assert shown["label"] == (["zone=c"], "flag")


def test_the_variables_from_before_keep_working() -> None:
    env = {
        "BACKSTOP_CONTROLLER": "a:1,b:2",
        "BACKSTOP_USER": "alice",
        "BACKSTOP_INSECURE": "1",
        "BACKSTOP_TLS_DIR": "/etc/backstop/tls",
    }
    shown = _show("controller", env=env)
    assert shown["controller"] == ("a:1,b:2", "env BACKSTOP_CONTROLLER")
    assert shown["as"] == ("alice", "env BACKSTOP_USER")
    assert shown["insecure"] == (True, "env BACKSTOP_INSECURE")
    assert shown["tls-dir"] == ("/etc/backstop/tls", "env BACKSTOP_TLS_DIR")
    assert _show("controller", env={"BACKSTOP_INSECURE": "0"})["insecure"] == (
        False,
        "env BACKSTOP_INSECURE",
    )


def test_config_show_says_every_source_in_text(tmp_path: Path) -> None:
    config = _file(tmp_path, 'store = "sqlite:///x.db"\n', "controller.toml")
    done = _backstop(
        "config", "show", "--config", str(config), "--", "--listen", "0.0.0.0:7443",
        env={"BACKSTOP_ACK_TIMEOUT": "20"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in done.stdout.splitlines()[1:]}
    assert rows["listen"] == ["0.0.0.0:7443", "flag"]
    assert rows["ack-timeout"] == ["20.0", "env BACKSTOP_ACK_TIMEOUT"]
    assert rows["store"] == ["sqlite:///x.db", f"file {config}"]
    assert rows["report-interval"] == ["5.0", "default"]


def test_a_missing_default_file_is_fine_a_missing_named_one_is_not(tmp_path: Path) -> None:
    if Path("/etc/backstop/operator.toml").exists():
        pytest.skip("this machine has an operator.toml")
    assert _show("operator")["config"] == ("/etc/backstop/operator.toml", "default")
    missing = tmp_path / "nope.toml"
    for how in (["--config", str(missing)], []):
        env = {} if how else {"BACKSTOP_CONFIG": str(missing)}
        done = _backstop("operator", "run", *how, env=env)
        assert done.returncode == 2
        assert f"{missing}: no such configuration file" in done.stderr


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("bogus = 1\n", "'bogus'", "unknown key"),
        ('report_interval = "fast"\n', "'report_interval'", "wrong type: expected a number"),
        ("metrics-listen = 9465\n", "'metrics-listen'", "wrong type: expected a string"),
        ('insecure = "yes"\n', "'insecure'", "wrong type: expected true or false"),
        ("ack-timeout = 0\n", "'ack-timeout'", "'0' is not allowed: give seconds within (0,"),
        ('log-format = "xml"\n', "'log-format'", "'xml' is not allowed: choose from"),
        ("listen = \n", "", "Invalid value"),
    ],
)
def test_a_bad_file_is_refused_and_nothing_starts(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    config = _file(tmp_path, text, "controller.toml")
    ready = tmp_path / "ready"
    done = _backstop(
        "controller", "serve", "--config", str(config), "--listen", "127.0.0.1:0",
        "--ready-file", str(ready), "--store", f"sqlite:///{tmp_path / 'b.db'}", "--insecure",
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{config}: " in done.stderr
    assert key in done.stderr
    assert reason in done.stderr
    assert not ready.exists()
    assert not (tmp_path / "b.db").exists()


@pytest.mark.parametrize(
    ("var", "value", "reason"),
    [
        ("BACKSTOP_REPORT_INTERVAL", "-1", "'-1' is not allowed"),
        ("BACKSTOP_LEASE", "soon", "'soon' is not allowed"),
        ("BACKSTOP_INSECURE", "maybe", "'maybe' is not a switch"),
    ],
)
def test_a_bad_variable_is_refused_with_its_name(var: str, value: str, reason: str) -> None:
    done = _backstop("agent", "run", "--state-dir", "/nonexistent", env={var: value})
    assert done.returncode == 2
    assert f"environment variable {var}: {reason}" in done.stderr


def test_a_daemon_runs_with_the_settings_of_its_file(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    config = _file(
        tmp_path,
        f'listen = "127.0.0.1:0"\nready_file = "{ready}"\n'
        f'store = "sqlite:///{tmp_path / "c.db"}"\ninsecure = true\nlog-format = "json"\n',
        "controller.toml",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "backstop", "controller", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "no ready file"
        assert ready.read_text().split()[0].startswith("127.0.0.1:")
        assert (tmp_path / "c.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_only_the_global_flags_come_from_the_environment_outside_a_daemon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var, value in {"BACKSTOP_ALL": "1", "BACKSTOP_NODE": "n1", "BACKSTOP_KEY": "k"}.items():
        monkeypatch.setenv(var, value)
    args, settings = parse_layered(build_parser(), ["terminate", "--reason", "r"])
    assert (args.all, args.node, args.key) == (False, [], "k")  # a scope never from the env
    assert {s.name for s in settings} == {
        "controller", "as", "tls-dir", "key", "insecure", "log-level", "log-format"
    }  # fmt: skip


def test_a_global_flag_after_the_daemon_command_is_a_flag() -> None:
    shown = _show("agent", "--controller", "x:1", env={"BACKSTOP_CONTROLLER": "y:2"})
    assert shown["controller"] == ("x:1", "flag")
