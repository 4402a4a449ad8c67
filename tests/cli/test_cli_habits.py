"""The CLI's habits against a real controller and agents: global flags after the command,
``--dry-run`` on the correcting verbs, ``-o wide|yaml``, tables cut to COLUMNS, colour only
on a terminal."""

from __future__ import annotations

import os

import yaml

from tests.cli.conftest import Rig
from tests.cli.terminal import run_on_terminal

UNREACHABLE = "127.0.0.1:1"


def _terminal_env(rig: Rig, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")}
    return {
        **env, "BACKSTOP_CONTROLLER": rig.cluster.address, "BACKSTOP_INSECURE": "1",
        "BACKSTOP_USER": "e2e", **extra,
    }  # fmt: skip


def test_global_flags_after_the_command_win(rig: Rig) -> None:
    address = rig.cluster.address
    elsewhere = {"BACKSTOP_CONTROLLER": UNREACHABLE, "BACKSTOP_INSECURE": "0"}
    after = rig.cluster.cli("nodes", "--controller", address, "--insecure", env=elsewhere)
    assert after.code == 0, after.err
    assert "node-a" in after.out
    both = rig.cluster.cli("--controller", UNREACHABLE, "nodes", "--controller", address)
    assert both.code == 0, both.err
    before = rig.cluster.cli("--controller", address, "nodes", "--controller", UNREACHABLE)
    assert before.code == 3, before.out  # the one after the command is the one used


def test_dry_run_shows_the_targets_and_creates_nothing(rig: Rig) -> None:
    b1, b2 = (rig.workload_id(p.pid) for p in (rig.b1, rig.b2))
    shown = rig.cluster.cli("pause", "--node", "node-b", "--dry-run")
    assert shown.code == 0, shown.err
    assert shown.out.startswith(
        "dry run: pause would reach 1 node(s) (node-b) and 2 workload(s); nothing was changed\n"
    )
    assert b1 in shown.out
    assert b2 in shown.out
    data = rig.cluster.json(
        "terminate", "--all", "--reason", "drill", "--dry-run", "--key", "/nonexistent/key"
    )
    assert data["node_ids"] == ["node-a", "node-b"]
    assert (data["apiVersion"], data["kind"]) == ("backstop.io/v1", "ScopePreview")
    assert {w["kind"] for w in data["workloads"]} == {"Workload"}  # as `workloads` prints them
    assert all("model_id" in w["fingerprint"] for w in data["workloads"])
    assert data["workload_count"] == 3
    assert {w["root_pid"] for w in data["workloads"]} == {
        rig.hostile.pid, rig.b1.pid, rig.b2.pid,
    }  # fmt: skip
    session = run_on_terminal(
        "shutdown", "--all", "--reason", "drill", "--dry-run", env=_terminal_env(rig), answer=None
    )
    assert session.code == 0, session.text
    assert "[y/N]" not in session.text
    assert "would reach 2 node(s) (node-a, node-b) and 3 workload(s)" in session.text
    assert rig.cluster.json("corrections") == []
    assert all(p.poll() is None for p in (rig.hostile, rig.b1, rig.b2))
    refused = rig.cluster.cli("pause", "--node", "node-b")
    assert refused.code == 2
    assert "--reason is required" in refused.err


def test_resume_dry_run_and_yaml_is_the_same_data_as_json(rig: Rig) -> None:
    paused = rig.cluster.cli("pause", "--node", "node-b", "--reason", "incident", "--wait")
    assert paused.code == 0, paused.err
    cid = paused.out.split()[0]
    preview = rig.cluster.cli("resume", cid, "--dry-run", "-o", "yaml")
    assert preview.code == 0, preview.err
    assert yaml.safe_load(preview.out)["workload_count"] == 2
    listed = rig.cluster.cli("corrections", "-o", "yaml")
    assert listed.code == 0, listed.err
    assert yaml.safe_load(listed.out) == rig.cluster.json("corrections")
    assert len(yaml.safe_load(listed.out)) == 1  # the dry run resumed nothing
    status = rig.cluster.cli("status", cid, "-o", "yaml")
    assert yaml.safe_load(status.out) == rig.cluster.json("status", cid)
    shown = yaml.safe_load(status.out)
    assert (shown["kind"], shown["state"], shown["spec"]["action"]) == (
        "Correction", "completed", "pause",
    )  # fmt: skip
    assert isinstance(shown["completed_at"], str)  # RFC 3339, a string in YAML too
    assert shown["completed_at"].endswith("Z")
    held = rig.cluster.json("workloads", "--node", "node-b", "--state", "paused")
    assert {w["root_pid"] for w in held} == {rig.b1.pid, rig.b2.pid}
    assert rig.cluster.json("workloads", "--state", "running") != []
    assert rig.cluster.json("workloads", "--framework", "no-such-framework") == []
    assert rig.cluster.json("workloads", "--namespace", "ml") == []


def test_wide_shows_whole_commands_and_columns_cut_the_table(rig: Rig) -> None:
    plain = rig.cluster.cli("workloads", env={"COLUMNS": ""})
    assert plain.code == 0, plain.err
    assert "sleep(600)" not in plain.out  # the table keeps 48 characters of a command
    wide = rig.cluster.cli("workloads", "-o", "wide", env={"COLUMNS": "80"})
    assert "import time; time.sleep(600)" in wide.out
    assert "…" not in wide.out
    widest = max(len(line) for line in plain.out.splitlines())
    narrow = rig.cluster.cli("workloads", env={"COLUMNS": str(widest - 10)})
    assert narrow.code == 0, narrow.err
    assert max(len(line) for line in narrow.out.splitlines()) == widest - 10
    assert "…" in narrow.out
    assert len(narrow.out.splitlines()) == len(plain.out.splitlines())
    assert "\x1b" not in narrow.out + plain.out + wide.out  # piped: no colour


def test_state_words_are_coloured_on_a_terminal_only_without_no_color(rig: Rig) -> None:
    coloured = run_on_terminal("nodes", env=_terminal_env(rig), answer=None)
    assert coloured.code == 0, coloured.text
    assert "\x1b[32mconnected\x1b[0m" in coloured.text
    plain = run_on_terminal("nodes", env=_terminal_env(rig, NO_COLOR="1"), answer=None)
    assert plain.code == 0, plain.text
    assert b"\x1b" not in plain.transcript
    assert "connected" in plain.text


def test_a_table_fits_the_terminal_it_is_shown_on(rig: Rig) -> None:
    whole = rig.cluster.cli("workloads", env={"COLUMNS": ""})
    assert whole.code == 0, whole.err
    widest = max(len(line) for line in whole.out.splitlines())
    env = _terminal_env(rig, NO_COLOR="1")
    shown = run_on_terminal("workloads", env=env, answer=None, columns=widest - 12)
    assert shown.code == 0, shown.text
    lines = shown.text.splitlines()
    assert len(lines) == len(whole.out.splitlines())
    assert max(len(line) for line in lines) == widest - 12
    assert "…" in shown.text
    wide = run_on_terminal("workloads", "-o", "wide", env=env, answer=None, columns=widest - 12)
    assert "…" not in wide.text
    assert "import time; time.sleep(600)" in wide.text
