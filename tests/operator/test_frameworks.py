"""Frameworks from image names: only the obvious ones, never a guess."""

from __future__ import annotations

import pytest

from backstop.operator.frameworks import framework_of_image, framework_of_images, image_repository


@pytest.mark.parametrize(
    ("image", "framework"),
    [
        ("vllm/vllm-openai:v0.6.3", "vllm"),
        ("registry.example.com:5000/mirror/vllm/vllm-openai@sha256:abcd", "vllm"),
        ("ghcr.io/huggingface/text-generation-inference:2.4", "tgi"),
        ("lmsysorg/sglang:latest", "sglang"),
        ("nvcr.io/nvidia/tritonserver:24.08-trtllm-python-py3", "triton"),
        ("nvcr.io/nvidia/tensorrt-llm/release:0.15", "tensorrt-llm"),
        ("ollama/ollama:0.3", "ollama"),
        ("ghcr.io/ggerganov/llama.cpp:server", "llama.cpp"),
        ("pytorch/torchserve:0.12-gpu", "torchserve"),
        ("registry.invalid/model-server:1", ""),
        ("python:3.11", ""),
        ("example.com/vllmish-tool:1", ""),
    ],
)
def test_framework_from_an_image_name(image: str, framework: str) -> None:
    assert framework_of_image(image) == framework


def test_the_first_container_that_names_a_framework_wins() -> None:
    assert framework_of_images(("envoyproxy/envoy:v1", "vllm/vllm-openai:v0.6")) == "vllm"
    assert framework_of_images(()) == ""


def test_tags_digests_and_registry_ports_are_not_part_of_the_repository() -> None:
    assert image_repository("host:5000/team/app:1.2@sha256:ff") == "host:5000/team/app"
