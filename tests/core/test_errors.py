"""One table maps errors to gRPC statuses and exit codes; every side reads it the same way."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest

from backstop.cli.main import EXIT_USAGE
from backstop.controller.rpc_errors import status_for
from backstop.core.errors import (
    ERROR_TABLE,
    EXIT_INCOMPLETE,
    ActuationError,
    BackstopError,
    ErrorKind,
    InvalidInput,
    StoreError,
    error_for_status,
    exit_code_for,
    status_name_for,
)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("kind", ERROR_TABLE, ids=lambda k: k.error.__name__)
def test_each_error_travels_and_comes_back_as_itself(kind: ErrorKind) -> None:
    status = status_for(kind.error("x"))
    assert status is grpc.StatusCode[kind.status]
    assert error_for_status(status.name) is kind.error
    assert exit_code_for(kind.error("x")) == kind.exit_code


def test_unlisted_errors_are_unavailable_when_temporary_else_internal() -> None:
    assert status_name_for(StoreError("db down")) == "UNAVAILABLE"
    assert status_name_for(ActuationError("no")) == "INTERNAL"
    assert error_for_status("INTERNAL") is BackstopError
    assert exit_code_for(ActuationError("no")) == EXIT_INCOMPLETE


def test_statuses_and_exit_codes_are_each_used_once() -> None:
    assert len({k.status for k in ERROR_TABLE}) == len(ERROR_TABLE)
    codes = [k.exit_code for k in ERROR_TABLE]
    assert len(set(codes)) == len(codes)
    assert EXIT_INCOMPLETE not in codes
    assert 0 not in codes
    assert exit_code_for(InvalidInput("bad flag")) == EXIT_USAGE


def test_the_readme_lists_exactly_the_table_s_exit_codes() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("Exit codes:") :]
    listed = [int(code) for code in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)]
    assert listed == sorted([0, EXIT_INCOMPLETE, *(k.exit_code for k in ERROR_TABLE)])
