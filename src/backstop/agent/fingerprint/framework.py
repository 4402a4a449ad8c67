"""Serving and ML framework detection from a process's program, command line and mapped files.

Detection is a table (:data:`FRAMEWORKS`), not code: each row names a framework and the
evidence for it. Evidence comes in two strengths:

- *program* evidence: the executable's or script's name (``vllm``, ``tritonserver``), the
  module run with ``python -m`` (``sglang.launch_server``), or a pattern in an argument
  (``org.pytorch.serve.ModelServer``, a ``ray::ServeReplica`` process title);
- *library* evidence: a mapped file (``libtorch_cuda.so``, ``vllm/_C.abi3.so``).

Program evidence in any row beats library evidence in every row, and within one strength the
earlier row wins, so a vLLM server (which maps libtorch) is ``vllm`` and a bare PyTorch
process is ``torch``. No evidence gives ``""``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

PROGRAM = 2
LIBRARY = 1


@dataclass(frozen=True, slots=True)
class FrameworkRule:
    """The evidence that identifies one framework."""

    name: str
    programs: frozenset[str] = frozenset()
    """Executable or script base names."""
    modules: tuple[str, ...] = ()
    """``python -m`` modules, matched as a dotted prefix."""
    arg_pattern: re.Pattern[str] | None = None
    """Searched in every argument."""
    library_pattern: re.Pattern[str] | None = None
    """Searched in every mapped file path."""
    serving: bool = True
    """Whether the framework serves models (used by the behaviour classifier)."""


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


FRAMEWORKS: tuple[FrameworkRule, ...] = (
    FrameworkRule(
        "vllm",
        programs=frozenset({"vllm"}),
        modules=("vllm",),
        library_pattern=_rx(r"/vllm/[^/]*\.so$|/vllm_flash_attn/"),
    ),
    FrameworkRule(
        "tgi",
        programs=frozenset(
            {"text-generation-launcher", "text-generation-server", "text-generation-router"}
        ),
        modules=("text_generation_server",),
        library_pattern=_rx(r"/text_generation_server/"),
    ),
    FrameworkRule(
        "sglang",
        programs=frozenset({"sglang"}),
        modules=("sglang",),
        library_pattern=_rx(r"/sgl_kernel/|/sglang/"),
    ),
    FrameworkRule(
        "tensorrt-llm",
        programs=frozenset({"trtllm-serve", "trtllm-build", "trtllm-bench"}),
        modules=("tensorrt_llm",),
        library_pattern=_rx(r"/libtensorrt_llm[^/]*\.so|/tensorrt_llm/"),
    ),
    FrameworkRule(
        "triton",
        programs=frozenset({"tritonserver"}),
        library_pattern=_rx(r"/libtritonserver\.so"),
    ),
    FrameworkRule(
        "ollama",
        programs=frozenset({"ollama", "ollama_llama_server"}),
    ),
    FrameworkRule(
        "llama.cpp",
        programs=frozenset({"llama-server", "llama-cli", "llama-cpp-server"}),
        modules=("llama_cpp",),
        library_pattern=_rx(r"/libllama\.so"),
    ),
    FrameworkRule(
        "torchserve",
        programs=frozenset({"torchserve"}),
        modules=("ts.model_service_worker", "ts.model_server"),
        arg_pattern=_rx(r"org\.pytorch\.serve\.|/ts/model_service_worker\.py$"),
    ),
    FrameworkRule(
        "ray-serve",
        modules=("ray.serve",),
        arg_pattern=_rx(r"^ray::(?:Serve|ProxyActor|HTTPProxyActor)"),
    ),
    FrameworkRule(
        "transformers",
        programs=frozenset({"transformers", "transformers-cli"}),
        modules=("transformers",),
        serving=False,
    ),
    FrameworkRule(
        "torch",
        programs=frozenset({"torchrun"}),
        modules=("torch.distributed.run", "torch.distributed.launch"),
        library_pattern=_rx(r"/lib(?:torch_cuda|torch_cpu|torch_python|c10_cuda|c10)\.so"),
        serving=False,
    ),
    FrameworkRule(
        "jax",
        library_pattern=_rx(r"/jaxlib/"),
        serving=False,
    ),
    FrameworkRule(
        "tensorflow",
        library_pattern=_rx(r"/libtensorflow_(?:framework|cc)\.so"),
        serving=False,
    ),
    FrameworkRule(
        "onnxruntime",
        library_pattern=_rx(r"/libonnxruntime[^/]*\.so|/onnxruntime_pybind"),
        serving=False,
    ),
)

SERVING_FRAMEWORKS = frozenset(rule.name for rule in FRAMEWORKS if rule.serving)

_PYTHON = re.compile(r"^python(?:\d+(?:\.\d+)?)?$")


def _programs_and_module(exe: str, cmdline: Sequence[str]) -> tuple[set[str], str]:
    """Base names of the executable, argv[0] and a Python script, and the ``-m`` module."""
    names = {PurePosixPath(exe).name} if exe else set()
    module = ""
    if cmdline:
        argv0 = PurePosixPath(cmdline[0]).name
        names.add(argv0)
        if _PYTHON.match(argv0) or _PYTHON.match(PurePosixPath(exe).name):
            args = iter(cmdline[1:])
            for arg in args:
                if arg == "-m":
                    module = next(args, "")
                    break
                if arg.startswith("-m") and len(arg) > 2:
                    module = arg[2:]
                    break
                if arg in ("-c", "-"):
                    break
                if arg in ("-W", "-X", "--check-hash-based-pycs"):
                    next(args, None)
                    continue
                if not arg.startswith("-"):
                    names.add(PurePosixPath(arg).name)
                    break
    names.discard("")
    return names, module


def _strength(
    rule: FrameworkRule,
    names: set[str],
    module: str,
    cmdline: Sequence[str],
    mapped_paths: Sequence[str],
) -> int:
    if rule.programs & names:
        return PROGRAM
    if module and any(module == m or module.startswith(m + ".") for m in rule.modules):
        return PROGRAM
    if rule.arg_pattern is not None and any(rule.arg_pattern.search(a) for a in cmdline):
        return PROGRAM
    if rule.library_pattern is not None and any(
        rule.library_pattern.search(p) for p in mapped_paths
    ):
        return LIBRARY
    return 0


@dataclass(frozen=True, slots=True)
class FrameworkMatch:
    """The evidence one process shows: table rows (indexes into :data:`FRAMEWORKS`)."""

    program: int | None = None
    """The first row with program evidence."""
    library: int | None = None
    """The first row with library evidence."""


def match_process(exe: str, cmdline: Sequence[str], mapped_paths: Iterable[str]) -> FrameworkMatch:
    """The rows one process matches; cache it while the process's evidence is unchanged."""
    names, module = _programs_and_module(exe, cmdline)
    paths = tuple(mapped_paths)
    library: int | None = None
    for index, rule in enumerate(FRAMEWORKS):
        strength = _strength(rule, names, module, cmdline, paths if library is None else ())
        if strength == PROGRAM:
            return FrameworkMatch(program=index, library=library)
        if strength == LIBRARY and library is None:
            library = index
    return FrameworkMatch(library=library)


def combine_matches(matches: Iterable[FrameworkMatch]) -> str:
    """The framework of a process tree, from its processes' matches, root first.

    Program evidence wins (the first process that shows any); otherwise the earliest table
    row with library evidence in any process; otherwise ``""``.
    """
    library: int | None = None
    for match in matches:
        if match.program is not None:
            return FRAMEWORKS[match.program].name
        if match.library is not None and (library is None or match.library < library):
            library = match.library
    return "" if library is None else FRAMEWORKS[library].name


def detect_tree_framework(
    processes: Iterable[tuple[str, Sequence[str], Iterable[str]]],
) -> str:
    """The framework of a process tree, from ``(exe, cmdline, mapped_paths)`` per process."""
    return combine_matches(match_process(*process) for process in processes)


def detect_framework(exe: str, cmdline: Sequence[str], mapped_paths: Iterable[str]) -> str:
    """The framework one process runs, or ``""``."""
    return combine_matches([match_process(exe, cmdline, mapped_paths)])
