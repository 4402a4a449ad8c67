"""The metrics text reader: real servers' lines, and what a hostile server may send."""

from __future__ import annotations

from backstop.agent.serving.exposition import parse_samples
from backstop.agent.serving.servers import read_metrics, read_ollama_ps


def test_reads_labelled_samples_with_escapes_and_skips_the_rest() -> None:
    text = "\n".join(
        [
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            'vllm:generation_tokens_total{engine="0",model_name="meta/llama \\"3\\""} 1234.0',
            "other_metric 5",
            "vllm:num_requests_running 3 1700000000000",
            "vllm:num_requests_waiting{broken 7",
            "vllm:num_requests_waiting NaN",
            'vllm:prompt_tokens_total{model_name="m"} not-a-number',
        ]
    )
    wanted = {
        "vllm:generation_tokens_total",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:prompt_tokens_total",
    }
    found = parse_samples(text, wanted)
    (tokens,) = found["vllm:generation_tokens_total"]
    assert tokens.value == 1234.0
    assert tokens.labels == {"engine": "0", "model_name": 'meta/llama "3"'}
    assert found["vllm:num_requests_running"][0].value == 3.0
    assert "vllm:num_requests_waiting" not in found  # a broken block and a NaN are skipped
    assert "vllm:prompt_tokens_total" not in found
    assert "other_metric" not in found


def test_stops_after_the_line_budget() -> None:
    text = "\n".join(f"vllm:num_requests_running {i}" for i in range(100))
    assert (
        len(
            parse_samples(text, {"vllm:num_requests_running"}, max_lines=10)[
                "vllm:num_requests_running"
            ]
        )
        == 10
    )


def test_each_known_server_is_told_by_its_metric_names() -> None:
    vllm = read_metrics(
        'vllm:generation_tokens_total{model_name="a"} 10\n'
        'vllm:generation_tokens_total{model_name="b"} 5\n'
        'vllm:num_requests_waiting{model_name="a"} 2\n'
    )
    assert vllm is not None
    assert (vllm.server, vllm.model_name, vllm.generated_tokens_total) == ("vllm", "a,b", 15.0)
    assert vllm.waiting == 2.0
    assert vllm.prompt_tokens_total is None  # not reported: unknown, not zero
    tgi = read_metrics("tgi_request_generated_tokens_sum 99\ntgi_queue_size 4\n")
    assert tgi is not None
    assert (tgi.server, tgi.generated_tokens_total, tgi.waiting) == (
        "tgi",
        99.0,
        4.0,
    )
    sglang = read_metrics('sglang:num_running_reqs{model_name="q"} 1\n')
    assert sglang is not None
    assert (sglang.server, sglang.running) == ("sglang", 1.0)
    triton = read_metrics('nv_inference_count{model="resnet",version="1"} 7\n')
    assert triton is not None
    assert (triton.server, triton.model_name) == ("triton", "resnet")
    assert read_metrics("process_cpu_seconds_total 3\n") is None


def test_ollama_ps_lists_loaded_models_and_refuses_other_json() -> None:
    ps = read_ollama_ps('{"models": [{"name": "llama3:8b", "size": 1}, {"name": "qwen:7b"}]}')
    assert ps is not None
    assert (ps.server, ps.model_name) == ("ollama", "llama3:8b,qwen:7b")
    assert read_ollama_ps("[1, 2]") is None
    assert read_ollama_ps("{not json") is None
