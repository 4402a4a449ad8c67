"""Command-line redaction: secrets hidden, everything else kept, size capped."""

from __future__ import annotations

import pytest

from backstop.agent.fingerprint.redact import (
    MASK,
    MAX_ARG_CHARS,
    MAX_ARGS,
    MAX_TOTAL_CHARS,
    TRUNCATED,
    is_secret_flag,
    redact_cmdline,
)

SECRET = "s3cr3t-VALUE-123"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["vllm", "serve", "--api-key", SECRET], ["vllm", "serve", "--api-key", MASK]),
        (["vllm", "serve", f"--api-key={SECRET}"], ["vllm", "serve", f"--api-key={MASK}"]),
        (["x", "--api_key", SECRET], ["x", "--api_key", MASK]),
        (["x", "--token", SECRET, "--port", "8000"], ["x", "--token", MASK, "--port", "8000"]),
        (["x", f"--hf-token={SECRET}"], ["x", f"--hf-token={MASK}"]),
        (["x", "--password", SECRET], ["x", "--password", MASK]),
        (["x", "--db-password", SECRET], ["x", "--db-password", MASK]),
        (["x", "--secret", SECRET], ["x", "--secret", MASK]),
        (["x", "--client-secret", SECRET], ["x", "--client-secret", MASK]),
        (["x", "--aws-secret-access-key", SECRET], ["x", "--aws-secret-access-key", MASK]),
        (["env", f"OPENAI_API_KEY={SECRET}", "x"], ["env", f"OPENAI_API_KEY={MASK}", "x"]),
        (["env", f"HF_TOKEN={SECRET}"], ["env", f"HF_TOKEN={MASK}"]),
        (["env", f"HUGGINGFACEHUBTOKEN={SECRET}"], ["env", f"HUGGINGFACEHUBTOKEN={MASK}"]),
        (["env", f"DB_PASSWORD={SECRET}"], ["env", f"DB_PASSWORD={MASK}"]),
        (["train.py", f"wandb.api_key={SECRET}"], ["train.py", f"wandb.api_key={MASK}"]),
    ],
)
def test_secret_flag_and_variable_values_are_hidden(argv: list[str], expected: list[str]) -> None:
    redacted = redact_cmdline(argv)

    assert list(redacted) == expected
    assert all(SECRET not in arg for arg in redacted)


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("https://user:pa55@host.example/models", f"https://{MASK}@host.example/models"),
        ("--url=postgresql://app:pa55@db:5432/x", f"--url=postgresql://{MASK}@db:5432/x"),
        (
            "https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/o/r",
            f"https://{MASK}@github.com/o/r",
        ),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", f"Authorization: Bearer {MASK}"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {MASK}"),
        ("hf_abcdefghijklmnopqrstuvwxyz0123", MASK),
        ("--header=x-key:sk-abcdefghijklmnopqrstuvwx", f"--header=x-key:{MASK}"),
        ("AKIAABCDEFGHIJKLMNOP", MASK),
    ],
)
def test_embedded_credentials_are_hidden(arg: str, expected: str) -> None:
    assert redact_cmdline(["prog", arg]) == ("prog", expected)


def test_a_bearer_token_in_the_next_argument_is_hidden() -> None:
    argv = ["curl", "-H", "Authorization: Bearer", SECRET, "http://localhost:8000/v1/models"]

    assert redact_cmdline(argv) == (
        "curl",
        "-H",
        "Authorization: Bearer",
        MASK,
        "http://localhost:8000/v1/models",
    )


def test_model_names_ports_and_paths_stay() -> None:
    argv = [
        "/usr/bin/python3",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "meta-llama/Llama-3.1-8B-Instruct",
        "--tokenizer",
        "meta-llama/Llama-3.1-8B-Instruct",
        "--max-num-batched-tokens",
        "8192",
        "--port",
        "8000",
        "--host=0.0.0.0",
        "--download-dir",
        "/models/cache",
        "--ssl-keyfile",
        "/etc/tls/server.key",
        "http://localhost:8000/health",
    ]

    assert redact_cmdline(argv) == tuple(argv)


@pytest.mark.parametrize(
    ("flag", "secret"),
    [
        ("--api-key", True),
        ("--apikey", True),
        ("--HF_TOKEN", True),
        ("--auth-token", True),
        ("--access-token", True),
        ("--private-key", True),
        ("--tokenizer", False),
        ("--max-tokens", False),
        ("--tokenizer-mode", False),
        ("--ssl-keyfile", False),
        ("--model", False),
        ("--", False),
    ],
)
def test_secret_flags_are_told_apart(flag: str, secret: bool) -> None:
    assert is_secret_flag(flag) is secret


def test_a_flag_after_a_secret_flag_is_not_taken_as_its_value() -> None:
    argv = ["x", "--use-auth-token", "--model", "m"]

    assert redact_cmdline(argv) == ("x", "--use-auth-token", "--model", "m")


def test_a_trailing_secret_flag_without_value_is_kept() -> None:
    assert redact_cmdline(["x", "--token"]) == ("x", "--token")


def test_long_arguments_are_cut_after_redaction() -> None:
    long_url = "https://user:pa55@host/" + "a" * (MAX_ARG_CHARS * 2)

    (redacted,) = redact_cmdline([long_url])

    assert redacted.startswith(f"https://{MASK}@host/")
    assert redacted.endswith(TRUNCATED)
    assert len(redacted) == MAX_ARG_CHARS + len(TRUNCATED)
    assert "pa55" not in redacted


def test_many_arguments_are_capped() -> None:
    redacted = redact_cmdline([f"arg{i}" for i in range(MAX_ARGS + 50)])

    assert len(redacted) == MAX_ARGS + 1
    assert redacted[-1] == TRUNCATED


def test_total_length_is_capped() -> None:
    redacted = redact_cmdline(["x" * (MAX_ARG_CHARS - 1)] * 40)

    assert sum(len(a) for a in redacted if a != TRUNCATED) <= MAX_TOTAL_CHARS + len(TRUNCATED)
    assert redacted[-1] == TRUNCATED


def test_empty_command_line() -> None:
    assert redact_cmdline([]) == ()
