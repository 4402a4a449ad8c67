"""The serving framework a container image obviously is, from its name alone.

The node agent identifies frameworks from processes and mapped libraries; at the orchestrator
level only the image name is known, so this is a table of well-known image names. No match
means "unknown" (an empty string), never a guess. Pure.
"""

from __future__ import annotations

import re

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("vllm", re.compile(r"(^|[/_-])vllm([/_:-]|$)")),
    ("tgi", re.compile(r"text-generation-inference|(^|/)tgi([/_:-]|$)")),
    ("sglang", re.compile(r"(^|[/_-])sglang([/_:-]|$)")),
    ("tensorrt-llm", re.compile(r"tensorrt[-_]?llm|trtllm")),
    ("triton", re.compile(r"tritonserver|(^|/)triton([/_:-]|$)")),
    ("ollama", re.compile(r"(^|/)ollama([/_:-]|$)")),
    ("llama.cpp", re.compile(r"llama[.-]?cpp|llama-server")),
    ("torchserve", re.compile(r"torchserve")),
    ("ray-serve", re.compile(r"ray-?serve")),
)


def image_repository(image: str) -> str:
    """The repository part of an image reference: no registry port, tag or digest."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: len(name) - len(last[-1])] + last[-1].split(":", 1)[0]
    return name.lower()


def framework_of_image(image: str) -> str:
    """``vllm``, ``tgi``, ... when the image name says so; ``""`` otherwise."""
    repository = image_repository(image)
    for framework, pattern in _RULES:
        if pattern.search(repository):
            return framework
    return ""


def framework_of_images(images: tuple[str, ...]) -> str:
    """The first framework any of the images (in container order) names."""
    return next((f for f in map(framework_of_image, images) if f), "")
