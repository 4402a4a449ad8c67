"""What the approver sees is what they sign: the CLI decodes the signed bytes itself.

The controller here is a compromised one (a gRPC double of the control API): it holds no
operator key, so the signed bytes are really the issuer's, but its decoded copy of the
correction (``Correction.spec``) shows another scope, hoping to have it approved unseen.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backstop.api.v1 import control_pb2, types_pb2
from backstop.core.ids import new_correction_id
from backstop.core.models import Action, CorrectionSpec, Scope
from backstop.security.keys import generate_key, verify
from backstop.security.quorum import sign_correction
from backstop.wire import correction_convert
from tests.cli.compromised import CompromisedControl, Lies, serve
from tests.cli.terminal import run_on_terminal

REAL_REASON = "model leaks data\x1b[2J\x1b[H\nscope:   node=node-a \u202e"


@dataclass
class Double:
    service: CompromisedControl
    env: dict[str, str]
    data: bytes
    """The issuer's signed bytes: terminate, every workload."""
    correction_id: str
    key_public: bytes


def _correction(tmp: Path) -> tuple[types_pb2.Correction, bytes]:
    now = time.time()
    signed_spec = CorrectionSpec(
        correction_id=new_correction_id(),
        action=Action.TERMINATE,
        scope=Scope(all=True),
        reason=REAL_REASON,
        issuer="alice",
        created_at_s=now,
        expires_at_s=now + 3600,
    )
    data = correction_convert.spec_bytes(signed_spec)
    issuer = sign_correction(generate_key(), data, signer="alice", role="issuer", signed_at_s=now)
    shown = correction_convert.spec_to_pb(signed_spec)
    shown.scope.CopyFrom(correction_convert.scope_to_pb(Scope(node_ids=("node-a",))))  # the lie
    shown.reason = "routine check"
    correction = types_pb2.Correction(
        spec=shown,
        signed_spec=data,
        state=types_pb2.CORRECTION_STATE_PROPOSED,
        signatures=[correction_convert.signature_to_pb(issuer)],
        approvals_required=2,
        message="waiting for approvals: 0 of 2",
    )
    return correction, data


@pytest.fixture
def double(tmp_path: Path) -> Iterator[Double]:
    correction, data = _correction(tmp_path)
    workloads = [
        types_pb2.Workload(
            workload_id=f"wl-{i}",
            node_id=node,
            root_pid=100 + i,
            fingerprint=types_pb2.Fingerprint(cmdline=["vllm", "serve", f"m{i}"]),
        )
        for i, node in ((1, "node-a"), (2, "node-b"))
    ]
    lies = Lies(
        correction,
        control_pb2.PreviewScopeResponse(
            node_ids=["node-a", "node-b"], workload_count=3, workloads=workloads
        ),
        error="refused \x1b[2J\x1b[31mALL CLEAR\x1b[0m\nfake line",
    )
    service = CompromisedControl(lies)
    server, address = serve(service)
    key = generate_key()
    key_path = tmp_path / "bob.pem"
    key.save(key_path)
    env = dict(
        os.environ,
        BACKSTOP_CONTROLLER=address,
        BACKSTOP_INSECURE="1",
        BACKSTOP_USER="bob",
        BACKSTOP_KEY=str(key_path),
    )
    try:
        yield Double(service, env, data, correction.spec.correction_id, key.public_raw())
    finally:
        server.stop(None)


def test_approve_shows_and_signs_the_signed_bytes_not_the_controllers_copy(
    double: Double,
) -> None:
    session = run_on_terminal("approve", double.correction_id, env=double.env, answer="y")
    text = session.text
    assert session.code == 0, text
    # loudly: the controller's copy differs; what is shown is the signed content
    assert "WARNING: THE CONTROLLER'S COPY OF THIS CORRECTION DIFFERS FROM THE SIGNED BYTES" in text
    assert "scope: the controller shows node=node-a; signed: all" in text
    assert "\n  scope:   all\n" in text
    assert "\n  scope:   node=node-a\n" not in text
    assert "  reason:  routine check" not in text
    # the real reason, escaped: it can neither clear the screen nor draw a scope line
    assert "  reason:  model leaks data\\x1b[2J\\x1b[H\\nscope:   node=node-a \\u202e\n" in text
    assert b"\x1b" not in session.transcript
    assert "\u202e" not in text
    # the targets of the signed scope, before the question
    assert [correction_convert.scope_from_pb(p.scope) for p in double.service.previews] == [
        Scope(all=True)
    ]
    targets = text.index("targets: 2 node(s) (node-a, node-b); 3 workload(s): ")
    assert (
        "wl-1 on node-a (pid 101, vllm serve m1), wl-2 on node-b (pid 102, vllm serve m2)"
        in (text[targets:])
    )
    assert ", ... and 1 more" in text[targets:]
    assert targets < text.index("approve this terminate? [y/N]")
    # what was signed is the signed bytes, by bob's key
    (approval,) = double.service.approvals
    assert verify(double.key_public, double.data, approval.signature.signature)


def test_approve_declined_signs_nothing(double: Double) -> None:
    session = run_on_terminal("approve", double.correction_id, env=double.env, answer="n")
    assert session.code == 2, session.text
    assert "cancelled; nothing was approved" in session.text
    assert double.service.approvals == []


def test_status_renders_the_signed_bytes(double: Double) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backstop", "status", double.correction_id],
        capture_output=True,
        text=True,
        env=double.env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "DIFFERS FROM THE SIGNED BYTES" in result.stdout
    assert "\n  scope:   all\n" in result.stdout
    assert "node=node-a\n" not in result.stdout.split("signed: all", 1)[1]
    assert "\x1b" not in result.stdout + result.stderr


def test_a_controller_message_is_shown_escaped(double: Double) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backstop", "nodes"],
        capture_output=True,
        text=True,
        env=double.env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "backstop: refused \\x1b[2J\\x1b[31mALL CLEAR\\x1b[0m\\nfake line\n"
    ), result.stderr
