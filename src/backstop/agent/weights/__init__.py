"""Know the model: parse weights files with bounded reads and identify the model they hold.

Formats: safetensors, GGUF (v2, v3), PyTorch zip checkpoints (``data.pkl`` scanned, never
unpickled), ONNX (protobuf read by hand), and the Hugging Face layout around them (shards,
``*.index.json``, ``config.json``). Every file gets a result; invalid ones say why. The
identity (``model_id``, ``structure_id``) is computed from the tensors, so it survives
repackaging; see :mod:`backstop.agent.weights.identity` for the read bound. Standard
library only.
"""

from backstop.agent.weights.identify import identify, identify_models, parse_file
from backstop.agent.weights.identity import MODEL_SAMPLE_BYTES
from backstop.agent.weights.model import (
    MAX_HEADER_BYTES,
    Limits,
    ModelIdentity,
    ParsedWeights,
    TensorInfo,
)

__all__ = [
    "MAX_HEADER_BYTES",
    "MODEL_SAMPLE_BYTES",
    "Limits",
    "ModelIdentity",
    "ParsedWeights",
    "TensorInfo",
    "identify",
    "identify_models",
    "parse_file",
]
