"""The parser's habits, without a controller: global flags anywhere, help on every option with
its default, tables that fit, the workloads filters, shell completion in a real bash."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from backstop.cli.config_sources import parse_layered
from backstop.cli.listings import workload_matches
from backstop.cli.main import build_parser
from backstop.cli.render import table
from backstop.core.models import Fingerprint, Workload


def _actions(parser: argparse.ArgumentParser, path: str = "backstop") -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    for action in parser._actions:
        found.append((path, action))
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _actions(child, f"{path} {name}")
    return found


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{path}: {'/'.join(a.option_strings) or a.dest}"  # type: ignore[attr-defined]
        for path, a in _actions(build_parser())
        if not getattr(a, "help", None)
    ]
    assert missing == []


def test_help_shows_defaults() -> None:
    parser = build_parser()
    corrections = parser.parse_args(["corrections"])  # the parser exists; now its help
    assert corrections.limit == 50
    out = subprocess.run(
        [sys.executable, "-m", "backstop", "corrections", "-h"],
        capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"},
    ).stdout  # fmt: skip
    assert "how many, at most 10000 (default: 50)" in out
    assert "(default: table)" in out
    assert "global options (also before the subcommand)" in out
    assert "--controller ADDRESS" in out


@pytest.mark.parametrize(
    ("argv", "controller"),
    [
        (["--controller", "a:1", "nodes"], "a:1"),
        (["nodes", "--controller", "b:2"], "b:2"),
        (["--controller", "a:1", "nodes", "--controller", "b:2"], "b:2"),
        (["--controller", "a:1", "pki", "token", "--node", "n", "--controller", "c:3"], "c:3"),
        (["terminate", "--all", "--reason", "r", "--controller", "d:4"], "d:4"),
    ],
)
def test_global_flags_go_before_or_after_the_command_and_after_wins(
    argv: list[str], controller: str
) -> None:
    assert build_parser().parse_args(argv).controller == controller


def test_every_global_flag_works_after_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_CONTROLLER", "env:9")
    monkeypatch.setenv("BACKSTOP_INSECURE", "1")
    args, _ = parse_layered(build_parser(), ["workloads"])
    assert (args.controller, args.insecure, args.user, args.key) == ("env:9", True, "", "")
    args, _ = parse_layered(
        build_parser(),
        ["workloads", "--as", "alice", "--tls-dir", "t", "--key", "k", "--log-format", "json"],
    )
    assert (args.controller, args.user, args.tls_dir, args.key) == ("env:9", "alice", "t", "k")
    assert args.log_format == "json"
    assert build_parser().parse_args(["--as", "bob", "whoami", "-o", "yaml"]).user == "bob"


def test_a_daemon_keeps_its_own_tls_dir() -> None:
    args = build_parser().parse_args(["agent", "run", "--tls-dir", "agent-tls"])
    assert args.agent_tls_dir == "agent-tls"
    assert args.tls_dir == ""


def test_a_table_wider_than_the_terminal_cuts_the_long_cells() -> None:
    rows = [("wl-1", "running", "python -m vllm.entrypoints.openai.api_server --model x" * 2)]
    whole = table(("workload", "state", "command"), rows)
    assert table(("workload", "state", "command"), rows, width=500, cut=("command",)) == whole
    fitted = table(("workload", "state", "command"), rows, width=40, cut=("command",))
    assert max(len(line) for line in fitted.splitlines()) == 40
    assert fitted.splitlines()[1].endswith("…")
    assert fitted.splitlines()[1].startswith("wl-1      running  python -m vllm")


def test_state_words_are_coloured_only_when_asked() -> None:
    rows = [("wl-1", "paused"), ("wl-2", "running")]
    assert "\x1b" not in table(("workload", "state"), rows)
    coloured = table(("workload", "state"), rows, colour=("state",))
    assert "wl-1      \x1b[33mpaused\x1b[0m" in coloured
    assert "wl-2      \x1b[32mrunning\x1b[0m" in coloured


def _workload(framework: str = "", state: str = "running", **labels: str) -> Workload:
    return Workload(
        "wl", "n", 1, (1,), Fingerprint(framework=framework), labels=labels, state=state
    )


def test_workloads_filters_match_framework_namespace_state_and_labels() -> None:
    vllm = _workload("vllm", **{"io.kubernetes.pod.namespace": "ml", "team": "a"})
    operator = _workload("sglang", "paused", **{"backstop.io/namespace": "ml"})
    assert workload_matches(vllm, [("framework", "VLLM")])
    assert not workload_matches(operator, [("framework", "vllm")])
    assert workload_matches(vllm, [("namespace", "ml")])
    assert workload_matches(operator, [("namespace", "ml")])
    assert not workload_matches(_workload(), [("namespace", "ml")])
    assert workload_matches(operator, [("state", "paused")])
    assert not workload_matches(vllm, [("state", "paused")])
    assert workload_matches(vllm, [("selector", "team=a")])
    assert not workload_matches(vllm, [("selector", "team!=a")])
    assert workload_matches(vllm, [("framework", "vllm"), ("namespace", "ml")])
    assert not workload_matches(vllm, [("framework", "vllm"), ("state", "paused")])


def test_a_malformed_workloads_selector_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backstop", "workloads", "--selector", "a=b,,", "--insecure"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "BACKSTOP_CONTROLLER": "127.0.0.1:1"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "malformed selector" in result.stderr


def _complete(tmp_path: Path, line: str) -> list[str]:
    """What bash offers for ``line``, through the script ``backstop completion bash`` prints."""
    launcher = tmp_path / "backstop"
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m backstop "$@"\n')
    launcher.chmod(0o755)
    words = " ".join(shlex.quote(w) for w in line.split(" "))
    script = (
        'source <(backstop completion bash)\n'
        f'COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}\n'
        f'COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n'
        '_python_argcomplete backstop\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )  # fmt: skip
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    return [w.strip() for w in result.stdout.splitlines()]


def test_bash_completes_a_command_and_its_options(tmp_path: Path) -> None:
    assert _complete(tmp_path, "backstop nod") == ["nodes"]
    assert "workloads" in _complete(tmp_path, "backstop wor")
    assert "--dry-run" in _complete(tmp_path, "backstop pause --dry")
    assert _complete(tmp_path, "backstop nodes --contr") == ["--controller"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_each_shell(shell: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backstop", "completion", shell],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "backstop" in result.stdout
    assert "_ARGCOMPLETE" in result.stdout
