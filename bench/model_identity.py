"""Model identity cost: identify() on a 100 GB safetensors model in 8 shards and a 100 GB GGUF.

Writes, in a temporary folder, a 50B-parameter BF16 model laid out as ``save_pretrained``
writes it (8 ``model-0000i-of-00008.safetensors`` shards, ``model.safetensors.index.json``,
``config.json``) and a Q4_K GGUF file with a 128k-token vocabulary (header written by the
gguf library), each file cut to its full size with ``truncate`` after the header: sparse, so
no disk is used and no data is written. Before each run the files are dropped from the page
cache (``posix_fadvise(DONTNEED)``). Reports the median, min and max time of ``identify()``
over the runs, the bytes it says it read, and the bytes this process read (``rchar`` in
/proc/self/io) as a check on that count.

    .venv/bin/python bench/model_identity.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import gguf
import numpy as np

from backstop.agent.weights import ModelIdentity, identify

GB = 10**9
MIB = 1 << 20


def llama_like(
    layers: int, hidden: int, inner: int, kv: int, vocab: int
) -> list[tuple[str, list[int]]]:
    """Tensor names and shapes of a Llama-style decoder."""
    shapes = [("model.embed_tokens.weight", [vocab, hidden])]
    for i in range(layers):
        p = f"model.layers.{i}"
        shapes += [
            (f"{p}.input_layernorm.weight", [hidden]),
            (f"{p}.self_attn.q_proj.weight", [hidden, hidden]),
            (f"{p}.self_attn.k_proj.weight", [kv, hidden]),
            (f"{p}.self_attn.v_proj.weight", [kv, hidden]),
            (f"{p}.self_attn.o_proj.weight", [hidden, hidden]),
            (f"{p}.post_attention_layernorm.weight", [hidden]),
            (f"{p}.mlp.gate_proj.weight", [inner, hidden]),
            (f"{p}.mlp.up_proj.weight", [inner, hidden]),
            (f"{p}.mlp.down_proj.weight", [hidden, inner]),
        ]
    return [*shapes, ("model.norm.weight", [hidden]), ("lm_head.weight", [vocab, hidden])]


def write_sparse_safetensors(folder: Path, shards: int) -> list[Path]:
    """A 50B-parameter BF16 Llama-style model: 100 GB of tensors."""
    tensors = llama_like(layers=56, hidden=8192, inner=28672, kv=1024, vocab=128256)
    sizes = [(name, shape, 2 * int(np.prod(shape))) for name, shape in tensors]
    total = sum(size for *_, size in sizes)
    per_shard = -(-total // shards)
    groups: list[list[tuple[str, list[int], int]]] = [[]]
    filled = 0
    for entry in sizes:
        if filled >= per_shard * len(groups) and len(groups) < shards:
            groups.append([])
        groups[-1].append(entry)
        filled += entry[2]
    paths: list[Path] = []
    weight_map: dict[str, str] = {}
    for part, group in enumerate(groups, 1):
        name = f"model-{part:05d}-of-{len(groups):05d}.safetensors"
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for tensor, shape, size in group:
            header[tensor] = {
                "dtype": "BF16",
                "shape": shape,
                "data_offsets": [offset, offset + size],
            }
            offset += size
            weight_map[tensor] = name
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        path = folder / name
        with path.open("wb") as out:
            out.write(len(raw).to_bytes(8, "little") + raw)
        os.truncate(path, 8 + len(raw) + offset)
        paths.append(path)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                    "hidden_size": 8192, "num_hidden_layers": 56, "torch_dtype": "bfloat16",
                    "max_position_embeddings": 131072})
    )  # fmt: skip
    print(f"safetensors: {len(paths)} shards, {total / GB:.1f} GB of tensors")
    return paths


def write_sparse_gguf(path: Path) -> Path:
    q4k = gguf.GGMLQuantizationType.Q4_K
    block, block_bytes = gguf.GGML_QUANT_SIZES[q4k]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("Bench 180B")
    writer.add_context_length(131072)
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q4_K_M))
    writer.add_token_list([f"token-{i}" for i in range(128256)])
    writer.add_token_scores([0.0] * 128256)
    tensors = llama_like(layers=104, hidden=12288, inner=36864, kv=1024, vocab=128256)
    for name, shape in tensors:
        elements = int(np.prod(shape))
        kind = q4k if shape[-1] % block == 0 and len(shape) == 2 else gguf.GGMLQuantizationType.F32
        nbytes = elements // block * block_bytes if kind == q4k else 4 * elements
        writer.add_tensor_info(
            name, list(reversed(shape)), np.dtype(np.float32), nbytes, raw_dtype=kind
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    total = 0
    for info in writer.tensors[0].values():
        total += info.nbytes + (-info.nbytes % writer.data_alignment)
    alignment = writer.data_alignment or 32
    header = -(-path.stat().st_size // alignment) * alignment
    os.truncate(path, header + total)
    print(
        f"gguf: {len(tensors)} tensors, {(header + total) / GB:.1f} GB, "
        f"header {header / MIB:.1f} MiB"
    )
    return path


def drop_cache(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def measure(label: str, paths: list[Path], runs: int) -> None:
    folder_files = sorted(p for p in paths[0].parent.iterdir() if p.is_file())
    times: list[float] = []
    result: ModelIdentity | None = None
    syscall_bytes = 0
    for _ in range(runs):
        drop_cache(folder_files)
        before = rchar()
        start = time.perf_counter()
        result = identify(paths[:1])
        times.append(time.perf_counter() - start)
        syscall_bytes = rchar() - before
    assert result is not None
    assert result.valid, result.reason
    size = sum(f.size_bytes for f in result.files)
    print(
        f"{label}: {len(result.files)} file(s), {size / GB:.1f} GB, {result.tensors} tensors, "
        f"{result.parameters / 1e9:.1f}B parameters ({result.size_class}), "
        f"{result.quantisation or ','.join(result.bytes_by_dtype)}\n"
        f"  identify(): median {statistics.median(times) * 1000:.0f} ms, "
        f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms over {runs} runs\n"
        f"  bytes read: {result.bytes_read / MIB:.2f} MiB reported, "
        f"{syscall_bytes / MIB:.2f} MiB by rchar; model_id {result.model_id[:16]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        (root / "hf").mkdir()
        shards = write_sparse_safetensors(root / "hf", 8)
        (root / "gguf").mkdir()
        model = write_sparse_gguf(root / "gguf" / "bench-180b-Q4_K_M.gguf")
        used = sum(p.stat().st_blocks * 512 for p in [*shards, model])
        print(f"disk used by the sparse files: {used / MIB:.1f} MiB")
        measure("safetensors, 8 shards", shards, args.runs)
        measure("gguf", [model], args.runs)


if __name__ == "__main__":
    main()
