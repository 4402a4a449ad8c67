"""Policy evaluation cost: 100 policies (field-only and CEL) against 1,000 workloads.

Builds 1,000 workloads from real core models (a mix of frameworks, namespaces, models, nodes
and serving figures) and 100 parsed policies: 60 with field matches only, 20 with a field
match and a CEL expression (the expression runs only where the fields matched) and 20 with a
CEL expression alone (it runs on every workload). One pass judges every policy against every
workload; each kind of pass runs 5 times and the median, min and max are reported, with the
cost per (policy, workload) pair and the number of matches.

An expression's answers are kept per value of the keys it reads, so passes are measured three
ways: with freshly parsed policies each run (empty caches: the first report), with the same
policies and the same workloads again (a report that repeats the last), and with the same
policies while every serving workload's tokens per second change each run (what reports do).
The baseline, in the same run, is fresh policies whose expressions keep no answers.

    PYTHONPATH=src .venv/bin/python bench/policy_eval.py --runs 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from backstop.core.models import Behaviour, Fingerprint, GpuUse, IdentifiedModel, Workload
from backstop.core.serving import ServingStats
from backstop.policy import CompiledPolicy, compile_policy, matching_policies, parse_policy

FRAMEWORKS = ("vllm", "sglang", "tgi", "pytorch", "ollama")
ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "GPT2LMHeadModel")
NAMESPACES = ("prod", "staging", "research", "batch")


def workloads(count: int) -> list[Workload]:
    """``count`` workloads spread over 100 nodes, 40 models and the lists above."""
    out = []
    for i in range(count):
        model = IdentifiedModel(
            model_id=f"{i % 40:012x}" + "ab" * 26,
            structure_id=f"{i % 8:012x}" + "cd" * 26,
            architecture=ARCHITECTURES[i % len(ARCHITECTURES)],
            name=f"model-{i % 40}",
            parameters=(1 + i % 70) * 1_000_000_000,
            quantisation="bf16",
        )
        serving = ServingStats("vllm", 8000, f"model-{i % 40}", generated_tokens_per_s=i % 500)
        out.append(
            Workload(
                workload_id=f"wl-{i}",
                node_id=f"gpu-{i % 100}",
                root_pid=1000 + i,
                pids=(1000 + i,),
                fingerprint=Fingerprint(
                    exe="/usr/bin/python3",
                    cmdline=("python3", "-m", FRAMEWORKS[i % len(FRAMEWORKS)], "--port", "8000"),
                    framework=FRAMEWORKS[i % len(FRAMEWORKS)],
                    behaviour=Behaviour.SERVING if i % 3 else Behaviour.TRAINING,
                    gpus=tuple(GpuUse(f"GPU-{i}-{g}", 20 << 30) for g in range(1 + i % 4)),
                    model=model if i % 10 else None,
                ),
                labels={"backstop.io/namespace": NAMESPACES[i % 4], "team": f"t{i % 12}"},
                serving=serving if i % 2 else None,
                unattributed="pid in another namespace" if i % 97 == 0 else "",
            )
        )
    return out


def _field_match(i: int) -> str:
    return (
        f"model_id: {i % 40:012x}",
        f"architecture: {ARCHITECTURES[i % 4]}\n  min_parameters: {(i % 70) * 10**9}",
        f"framework: {FRAMEWORKS[i % 5]}\n  namespace: {NAMESPACES[i % 4]}",
        f"labels: {{team: t{i % 12}}}\n  behaviour: serving",
        f"node: gpu-{i % 100}",
        f"structure_id: {i % 8:012x}\n  unattributed: false",
    )[i % 6]


EXPRESSIONS = (
    'workload.gpus >= {gpus} && workload.labels["team"] == "t{team}"',
    "has(workload.serving) && workload.serving.generated_tokens_per_s > {tokens}.0",
    "has(workload.model) && workload.model.parameters > {billions} * 1000000000",
    'workload.namespace == "{namespace}" && "--port" in workload.cmdline',
)
"""The expressions of the CEL policies, filled in per policy by :func:`_expression`."""


def _expression(i: int) -> str:
    return EXPRESSIONS[i % 4].format(
        gpus=1 + i % 4, team=i % 12, tokens=i * 20, billions=i % 70, namespace=NAMESPACES[i % 4]
    )


def policy_texts() -> list[str]:
    """60 field-only, 20 fields + CEL, 20 CEL-only policies (action alert), as YAML text."""
    texts = []
    for i in range(100):
        if i < 60:
            match = _field_match(i)
        elif i < 80:
            match = f"{_field_match(i)}\n  expression: '{_expression(i)}'"
        else:
            match = f"expression: '{_expression(i)}'"
        texts.append(f"name: p-{i}\nmatch:\n  {match}\naction: alert\n")
    return texts


def policies() -> list[CompiledPolicy]:
    """:func:`policy_texts`, parsed and compiled."""
    return [
        compile_policy(parse_policy(t.encode(), f"p-{i}.yaml"))
        for i, t in enumerate(policy_texts())
    ]


def by_matching_policies(ps: Sequence[CompiledPolicy], ws: Sequence[Workload]) -> int:
    return sum(len(matching_policies(ps, w, now_s=0.0)) for w in ws)


def by_matches(ps: Sequence[CompiledPolicy], ws: Sequence[Workload]) -> int:
    return sum(p.matches(w) for w in ws for p in ps)


Inputs = tuple[Sequence[CompiledPolicy], Sequence[Workload]]


def measure(
    run: Callable[[Sequence[CompiledPolicy], Sequence[Workload]], int],
    inputs: Callable[[int], Inputs],
    runs: int,
) -> dict[str, object]:
    """Time ``run`` on ``inputs(i)`` for each run ``i`` (the inputs are made untimed)."""
    times, found = [], []
    for i in range(runs):
        ps, ws = inputs(i)
        start = time.perf_counter()
        found.append(run(ps, ws))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "policies": len(ps),
        "workloads": len(ws),
        "matches": found if len(set(found)) > 1 else found[0],
        "median_s": round(median, 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "per_pair_us": round(median / (len(ps) * len(ws)) * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workloads", type=int, default=1000)
    args = parser.parse_args()
    ws = workloads(args.workloads)
    start = time.perf_counter()
    kept = policies()
    result: dict[str, object] = {"parse_and_compile_100_s": round(time.perf_counter() - start, 4)}

    def fresh(part: slice) -> Callable[[int], Inputs]:
        return lambda _: (policies()[part], ws)

    def uncached(_: int) -> Inputs:
        ps = policies()
        for p in ps:
            if p.policy.match.program is not None:
                p.policy.match.program.keys = None  # as if it read the whole variable
        return ps, ws

    def new_figures(i: int) -> Inputs:
        return kept, [with_tokens(w, i) for w in ws]

    by_matching_policies(kept, ws)  # the reports before: answers kept
    passes = {
        "all 100, no answer cache (baseline)": (by_matching_policies, uncached),
        "all 100, fresh policies each run": (by_matching_policies, fresh(slice(None))),
        "all 100, matches() each, fresh": (by_matches, fresh(slice(None))),
        "all 100, the same reports again": (by_matching_policies, lambda _: (kept, ws)),
        "all 100, new serving figures each run": (by_matching_policies, new_figures),
        "60 field-only, fresh": (by_matching_policies, fresh(slice(0, 60))),
        "20 fields + CEL, fresh": (by_matching_policies, fresh(slice(60, 80))),
        "20 CEL only, fresh": (by_matching_policies, fresh(slice(80, 100))),
    }
    for name, (run, inputs) in passes.items():
        result[name] = measure(run, inputs, args.runs)
    print(json.dumps(result, indent=2))


def with_tokens(w: Workload, i: int) -> Workload:
    """``w`` as its next report might say it: other tokens per second, the rest unchanged."""
    if w.serving is None:
        return w
    figure = (w.serving.generated_tokens_per_s or 0.0) + 7.5 * (i + 1)
    return dataclasses.replace(
        w, serving=dataclasses.replace(w.serving, generated_tokens_per_s=figure)
    )


if __name__ == "__main__":
    main()
