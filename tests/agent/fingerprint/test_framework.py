"""Framework detection from program names, python modules, arguments and mapped libraries."""

from __future__ import annotations

import pytest

from backstop.agent.fingerprint.framework import (
    FRAMEWORKS,
    SERVING_FRAMEWORKS,
    detect_framework,
    detect_tree_framework,
)

PY = "/usr/bin/python3.11"
TORCH = "/opt/venv/lib/python3.11/site-packages/torch/lib/libtorch_cuda.so"
VLLM_C = "/opt/venv/lib/python3.11/site-packages/vllm/_C.abi3.so"
OPENAI_TRITON = "/opt/venv/lib/python3.11/site-packages/triton/_C/libtriton.so"


@pytest.mark.parametrize(
    ("exe", "cmdline", "expected"),
    [
        (PY, [PY, "/usr/local/bin/vllm", "serve", "meta-llama/Llama-3.1-8B"], "vllm"),
        (PY, ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"], "vllm"),
        (PY, ["python3", "-u", "-m", "vllm.entrypoints.api_server"], "vllm"),
        (PY, ["python3", "-mvllm.entrypoints.api_server"], "vllm"),
        ("/usr/local/bin/vllm", ["vllm", "serve", "m"], "vllm"),
        ("/usr/local/bin/text-generation-launcher", ["text-generation-launcher"], "tgi"),
        (PY, [PY, "/opt/conda/bin/text-generation-server", "serve", "m"], "tgi"),
        (PY, ["python", "-m", "sglang.launch_server", "--model-path", "m"], "sglang"),
        (PY, [PY, "/usr/local/bin/trtllm-serve", "m"], "tensorrt-llm"),
        ("/opt/tritonserver/bin/tritonserver", ["tritonserver", "--model-repository=/m"], "triton"),
        ("/usr/bin/ollama", ["/usr/bin/ollama", "serve"], "ollama"),
        ("/usr/bin/ollama", ["/usr/bin/ollama", "runner", "--model", "/root/.ollama/b"], "ollama"),
        (
            "/app/llama-server",
            ["./llama-server", "-m", "model.gguf", "--port", "8080"],
            "llama.cpp",
        ),
        ("/app/llama-cli", ["llama-cli", "-m", "model.gguf"], "llama.cpp"),
        (PY, ["python3", "-m", "llama_cpp.server", "--model", "m.gguf"], "llama.cpp"),
        (
            "/usr/lib/jvm/bin/java",
            ["java", "-cp", "x.jar", "org.pytorch.serve.ModelServer"],
            "torchserve",
        ),
        (PY, [PY, "/opt/ts/model_service_worker.py", "--sock-type", "unix"], "torchserve"),
        (PY, ["ray::ServeReplica:default:Llama"], "ray-serve"),
        (PY, ["ray::ProxyActor"], "ray-serve"),
        (PY, ["torchrun", "--nproc-per-node=8", "train.py"], "torch"),
        (PY, [PY, "-m", "torch.distributed.run", "train.py"], "torch"),
        (PY, [PY, "-m", "transformers.commands.transformers_cli", "serve"], "transformers"),
        (PY, [PY, "serve.py"], ""),
        ("/usr/bin/sleep", ["sleep", "60"], ""),
        ("", [], ""),
    ],
)
def test_program_evidence(exe: str, cmdline: list[str], expected: str) -> None:
    assert detect_framework(exe, cmdline, []) == expected


@pytest.mark.parametrize(
    ("mapped", "expected"),
    [
        ([TORCH], "torch"),
        (["/usr/lib/x86_64-linux-gnu/libc.so.6", TORCH, VLLM_C], "vllm"),
        (["/opt/tritonserver/lib/libtritonserver.so"], "triton"),
        (["/usr/local/lib/libllama.so"], "llama.cpp"),
        (["/site-packages/jaxlib/xla_extension.so"], "jax"),
        (["/site-packages/tensorflow/libtensorflow_framework.so.2"], "tensorflow"),
        (["/site-packages/onnxruntime/capi/libonnxruntime_providers_cuda.so"], "onnxruntime"),
        ([OPENAI_TRITON], ""),  # the OpenAI Triton compiler is not the Triton server
        (["/usr/lib/x86_64-linux-gnu/libc.so.6"], ""),
    ],
)
def test_library_evidence(mapped: list[str], expected: str) -> None:
    assert detect_framework(PY, [PY, "app.py"], mapped) == expected


def test_program_evidence_beats_library_evidence() -> None:
    assert detect_framework("/usr/bin/ollama", ["ollama", "serve"], [TORCH]) == "ollama"
    assert detect_framework(PY, ["python", "-m", "sglang.launch_server"], [VLLM_C]) == "sglang"


def test_tree_prefers_program_evidence_anywhere_then_the_earliest_library_row() -> None:
    root: tuple[str, list[str], list[str]] = ("/bin/sh", ["sh", "-c", "start.sh"], [])
    torch_worker = (PY, [PY, "worker.py"], [TORCH])
    vllm_worker = (PY, [PY, "engine.py"], [VLLM_C])
    tgi_shard = (PY, [PY, "/usr/bin/text-generation-server", "serve"], [TORCH])

    assert detect_tree_framework([root, torch_worker, tgi_shard]) == "tgi"
    assert detect_tree_framework([root, torch_worker, vllm_worker]) == "vllm"
    assert detect_tree_framework([root, torch_worker]) == "torch"
    assert detect_tree_framework([root]) == ""
    assert detect_tree_framework([]) == ""


def test_table_names_are_unique_and_serving_set_is_the_servers() -> None:
    names = [rule.name for rule in FRAMEWORKS]

    assert len(names) == len(set(names))
    assert {"vllm", "tgi", "sglang", "triton", "ollama", "llama.cpp", "torchserve"} <= (
        SERVING_FRAMEWORKS
    )
    assert not {"torch", "transformers", "jax"} & SERVING_FRAMEWORKS
