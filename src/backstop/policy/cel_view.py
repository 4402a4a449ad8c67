"""CEL for policy expressions: compiling an expression once (:func:`compile_expression`), the
one variable an expression sees (``workload``, built by :func:`workload_view`), and evaluating
a compiled expression to a verdict that never raises (:func:`evaluate`).

The variable is a JSON-like map (documented in ``docs/policies.md``)::

    workload_id, node, namespace, state: string     labels: map(string, string)
    framework, behaviour, exe: string               cmdline: list(string)
    gpus: int (GPUs in use)   gpu_memory_bytes: int (their memory in use, summed)
    ports: list(int)          unattributed: bool
    model: {model_id, structure_id, architecture, name, quantisation: string, parameters: int}
    serving: {server, model_name: string, port: int, generated_tokens_per_s,
              prompt_tokens_per_s, requests_running, requests_waiting, inferences_per_s: double}

``model`` and ``serving`` are absent when the workload has none (test with ``has()``), and so
is each serving figure its server does not report.

The expressions run on cel-python's interpreter. Its transpiler is faster but fails
``has(workload.serving) && ...`` on a workload without serving figures (the interpreter
answers false), keeps the activation in a module global while it runs (two threads would see
each other's) and logs every evaluation error.
Each compiled expression keeps its answers per value of the keys it reads (:class:`CelProgram`).

cel-python (with lark, pendulum and regex behind it, about 8 MiB) is imported when the first
expression is compiled, not with this module: an agent with no policies never loads it.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from backstop.core.models import Workload
from backstop.core.scope import workload_namespace

if TYPE_CHECKING:
    import celpy

VARIABLE = "workload"
"""The one variable an expression sees."""
CACHE_ENTRIES = 4096
"""Answers kept per expression; all are dropped when it is full."""
Verdict = tuple[bool, str]
"""(matched, why the expression gave no answer, or ``""``)."""
MAX_EXPRESSION_CHARS = 4096
"""An expression longer than this is refused: a filter, not a program."""
MAX_EXPRESSION_DEPTH = 250
"""An expression whose parse tree is deeper is refused: the interpreter recurses per level and
runs out of stack near 500 at the interpreter's default recursion limit (``Environment`` raises
it to 2500 for the whole process; the limit it found is put back, so code elsewhere keeps the
guard it was written for)."""

_LOCK = threading.Lock()
_ENVIRONMENT: celpy.Environment | None = None


@functools.cache
def _cel() -> ModuleType:
    """cel-python, imported on first use (see the module docstring)."""
    import celpy  # heavy: only where an expression is compiled or run
    import celpy.adapter
    import celpy.celparser
    import celpy.celtypes
    import celpy.evaluation

    return celpy


class CelCompileError(Exception):
    """An expression that does not compile; ``line`` and ``column`` are 1-based, within it."""

    def __init__(self, reason: str, line: int = 1, column: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.column = column


class CelProgram:
    """A compiled expression, ready to evaluate against any number of workloads.

    An expression's answer depends only on the keys of ``workload`` it reads; when those are
    all plain ``workload.KEY`` references (:func:`referenced_keys`), answers are kept per
    value of those keys (up to :data:`CACHE_ENTRIES`), so workloads alike in what it reads,
    or a workload reported again unchanged, cost one lookup."""

    __slots__ = ("_answers", "_runner", "keys", "text")

    def __init__(self, text: str, runner: celpy.Runner, keys: frozenset[str] | None) -> None:
        self.text = text
        self._runner = runner
        self.keys = keys
        """The keys of ``workload`` it reads; ``None``: it uses the variable otherwise."""
        self._answers: dict[str, tuple[bool, str]] = {}

    def __repr__(self) -> str:
        return f"CelProgram({self.text!r})"

    def run(self, activation: Mapping[str, Any]) -> Any:
        """The raw result (a celpy value); raises whatever celpy raises."""
        return self._runner.evaluate(dict(activation))

    def judge(self, view: Mapping[str, Any], bind: Callable[[], Mapping[str, Any]]) -> Verdict:
        """(matched, error) for ``view``; ``bind()`` gives its activation when it must run."""
        if self.keys is None:
            return evaluate(self, bind())
        key = json.dumps({k: view[k] for k in self.keys if k in view}, sort_keys=True)
        answer = self._answers.get(key)
        if answer is None:
            answer = evaluate(self, bind())
            if len(self._answers) >= CACHE_ENTRIES:
                self._answers.clear()
            self._answers[key] = answer
        return answer


def referenced_keys(ast: Any) -> frozenset[str] | None:
    """The ``KEY`` of every ``workload.KEY`` in a parsed expression (cel-python's tree:
    nodes with ``data`` and ``children``, tokens as strings), or ``None`` when ``workload``
    also appears otherwise (``workload["gpus"]``, a macro variable of that name, ...)."""
    keys: set[str] = set()
    stack: list[Any] = [ast]
    while stack:
        tree = stack.pop()
        children = tree.children
        for i, child in enumerate(children):
            if not hasattr(child, "data"):
                continue
            if _is_workload(child):
                after = children[i + 1] if i + 1 < len(children) else None
                if tree.data != "member_dot" or i != 0 or not isinstance(after, str):
                    return None
                keys.add(str(after))
            else:
                stack.append(child)
    return frozenset(keys)


def _is_workload(tree: Any) -> bool:
    """Whether ``tree`` is the bare identifier ``workload`` (as ``member`` > ``primary``)."""
    while tree.data in ("member", "primary") and len(tree.children) == 1:
        tree = tree.children[0]
        if not hasattr(tree, "data"):
            return False
    return tree.data == "ident" and [str(c) for c in tree.children] == [VARIABLE]


def compile_expression(text: str) -> CelProgram:
    """Parse and prepare ``text`` once; raises :class:`CelCompileError` saying why not."""
    global _ENVIRONMENT  # noqa: PLW0603 (one environment: it raises the recursion limit)
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CelCompileError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    if not text.strip():
        raise CelCompileError("empty")
    cel = _cel()
    with _LOCK:
        if _ENVIRONMENT is None:
            limit = sys.getrecursionlimit()
            _ENVIRONMENT = cel.Environment()
            sys.setrecursionlimit(limit)  # the process's own, not the library's 2500
        try:
            ast = _ENVIRONMENT.compile(text)
            runner = _ENVIRONMENT.program(ast)
            keys = referenced_keys(ast)
            levels = _depth(ast)
        except cel.celparser.CELParseError as exc:
            first = str(exc.args[0]).splitlines()[:1] if exc.args else []
            near = f" near {first[0].strip()[-40:]!r}" if first else ""
            line, column = getattr(exc, "line", None) or 1, getattr(exc, "column", None) or 0
            raise CelCompileError(f"syntax error at column {column}{near}", line, column) from None
        except RecursionError:
            raise CelCompileError("nested too deeply") from None
        except Exception as exc:  # noqa: BLE001 (lark raises its own tree of errors)
            raise CelCompileError(f"does not compile ({type(exc).__name__})") from None
    if levels > MAX_EXPRESSION_DEPTH:
        raise CelCompileError(
            f"nested too deeply ({levels} levels, at most {MAX_EXPRESSION_DEPTH})"
        )
    return CelProgram(text, runner, keys)


def _depth(ast: Any) -> int:
    """How many levels deep a parsed expression is (each parenthesis adds about ten)."""
    deepest, stack = 0, [(ast, 1)]
    while stack:
        tree, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((c, level + 1) for c in tree.children if hasattr(c, "data"))
    return deepest


def workload_view(workload: Workload, labels: Mapping[str, str]) -> dict[str, Any]:
    """The ``workload`` variable, as plain JSON-like data (``labels``: the merged labels)."""
    fp = workload.fingerprint
    view: dict[str, Any] = {
        "workload_id": workload.workload_id,
        "node": workload.node_id,
        "namespace": workload_namespace(workload) or "",
        "labels": dict(labels),
        "framework": fp.framework,
        "behaviour": str(fp.behaviour),
        "cmdline": list(fp.cmdline),
        "exe": fp.exe,
        "gpus": len(fp.gpus),
        "gpu_memory_bytes": sum(g.used_memory_bytes for g in fp.gpus),
        "ports": list(fp.listening_ports),
        "unattributed": bool(workload.unattributed),
        "state": workload.state,
    }
    if fp.model is not None:
        m = fp.model
        view["model"] = {
            "model_id": m.model_id,
            "structure_id": m.structure_id,
            "architecture": m.architecture,
            "name": m.name,
            "parameters": m.parameters,
            "quantisation": m.quantisation,
        }
    if workload.serving is not None:
        s = workload.serving
        serving: dict[str, Any] = {"server": s.server, "port": s.port, "model_name": s.model_name}
        for name in (
            "generated_tokens_per_s",
            "prompt_tokens_per_s",
            "requests_running",
            "requests_waiting",
            "inferences_per_s",
        ):
            value = getattr(s, name)
            if value is not None:
                serving[name] = float(value)
        view["serving"] = serving
    return view


def activation(view: Mapping[str, Any]) -> dict[str, Any]:
    """The activation an expression runs with: ``workload`` bound to ``view`` as CEL values."""
    return {VARIABLE: _cel().adapter.json_to_cel(dict(view))}


def evaluate(program: CelProgram, bound: Mapping[str, Any]) -> Verdict:
    """(matched, error): a runtime error or a result that is not a bool is no match, and says
    why in ``error``; nothing is raised."""
    cel = _cel()
    eval_error = cel.evaluation.CELEvalError
    try:
        result = program.run(bound)
    except eval_error as exc:
        return False, f"expression failed: {_eval_reason(exc)}"
    except RecursionError:
        return False, "expression failed: nested too deeply"
    except Exception as exc:  # noqa: BLE001 (an expression must never fail its caller)
        return False, f"expression failed: {type(exc).__name__}"
    if isinstance(result, eval_error):
        return False, f"expression failed: {_eval_reason(result)}"
    if not isinstance(result, cel.celtypes.BoolType):
        return False, f"expression gave {type(result).__name__}, not a bool"
    return bool(result), ""


def _eval_reason(exc: BaseException) -> str:
    first = exc.args[0] if exc.args else type(exc).__name__
    return repr(str(first)[:200])
