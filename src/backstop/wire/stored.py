"""Nodes, workloads and identified models as the controller's store keeps them: deterministic
protobuf bytes.

The store reads and writes these blobs through this module only, so it never touches the
generated messages itself.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message

from backstop.api.v1 import types_pb2
from backstop.core.models import IdentifiedModel, NodeInfo, Workload
from backstop.wire import convert, model_convert

M = TypeVar("M", bound=Message)


def _parsed(message: M, data: bytes) -> M:
    message.ParseFromString(data)
    return message


def node_bytes(node: NodeInfo) -> bytes:
    """A node's description as stored."""
    return convert.node_to_pb(node).SerializeToString(deterministic=True)


def node_from_bytes(data: bytes) -> NodeInfo:
    """The node description a stored row holds."""
    return convert.node_from_pb(_parsed(types_pb2.Node(), data))


def workload_bytes(workload: Workload) -> bytes:
    """A workload as stored."""
    return convert.workload_to_pb(workload).SerializeToString(deterministic=True)


def workload_from_bytes(data: bytes) -> Workload:
    """The workload a stored row holds."""
    return convert.workload_from_pb(_parsed(types_pb2.Workload(), data))


def model_bytes(model: IdentifiedModel) -> bytes:
    """An identified model as its history keeps it."""
    return model_convert.model_to_pb(model).SerializeToString(deterministic=True)


def model_from_bytes(data: bytes) -> IdentifiedModel:
    """The model a stored sighting holds."""
    return model_convert.model_from_pb(_parsed(types_pb2.ModelIdentity(), data))
