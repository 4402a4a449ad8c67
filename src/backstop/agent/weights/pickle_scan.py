"""Tensors described by a PyTorch ``data.pkl``, found by scanning pickle opcodes.

Nothing is unpickled and nothing is imported: opcodes (from :func:`pickletools.genops`, which
only decodes them) drive a small stack machine whose values are inert records. ``GLOBAL``
yields a name, never an object; ``BINPERSID`` of a ``('storage', torch.<T>Storage, key,
location, numel)`` tuple yields a :class:`Storage`; ``REDUCE`` of
``torch._utils._rebuild_tensor_v2`` yields a :class:`TensorRef`. A global outside the few a
checkpoint needs (containers, storages, tensor rebuilders) makes the pickle invalid, with
the name in the reason: it is reported, never looked up.
"""

from __future__ import annotations

import pickletools
from collections.abc import Iterator
from dataclasses import dataclass

from backstop.agent.weights.dtypes import TORCH_STORAGES
from backstop.agent.weights.model import InvalidWeights

MAX_OPCODES = 20_000_000

_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "Size"),
} | {("torch", storage) for storage in TORCH_STORAGES}
_REBUILD_TENSOR = ("torch._utils", "_rebuild_tensor_v2")
_REBUILD_PARAMETER = ("torch._utils", "_rebuild_parameter")


@dataclass(frozen=True, slots=True)
class Global:
    """A ``GLOBAL`` reference, by name only (nothing is imported)."""

    module: str
    name: str


@dataclass(frozen=True, slots=True)
class Storage:
    """A storage a persistent id names: its element type, its key in ``data/`` and size."""

    dtype: str
    key: str
    numel: int


@dataclass(frozen=True, slots=True)
class TensorRef:
    """A tensor ``_rebuild_tensor_v2`` would make: a view of ``shape`` into a storage."""

    storage: Storage
    storage_offset: int
    shape: tuple[int, ...]


class _Mark:
    """The stack marker ``MARK`` pushes."""


_MARK = _Mark()
_POP_PUSH = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_ARGUMENT_OPS = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
}  # fmt: skip
_IGNORED = {"PROTO", "FRAME", "MEMOIZE_SKIP"}


def scan(data: bytes, max_tensors: int) -> dict[str, TensorRef]:
    """The tensors in a ``data.pkl``, by their key path (``"model.layer.weight"``)."""
    machine = _Machine()
    count = 0
    try:
        for count, (opcode, arg, _pos) in enumerate(pickletools.genops(data), 1):
            if count > MAX_OPCODES:
                raise InvalidWeights(f"data.pkl has over {MAX_OPCODES} opcodes")
            if opcode.name == "STOP":
                break
            machine.step(opcode.name, arg)
        else:
            raise InvalidWeights("data.pkl ends without STOP")
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise InvalidWeights(f"data.pkl is not a valid pickle: {exc}") from exc
    if len(machine.stack) != 1:
        raise InvalidWeights("data.pkl does not leave one object")
    tensors: dict[str, TensorRef] = {}
    for name, tensor in _walk(machine.stack[0], "", [count]):
        if len(tensors) >= max_tensors:
            raise InvalidWeights(f"over {max_tensors} tensors")
        tensors[name] = tensor
    return tensors


class _Machine:
    def __init__(self) -> None:
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}

    def _pop_mark(self) -> list[object]:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index] is _MARK:
                items = self.stack[index + 1 :]
                del self.stack[index:]
                return items
        raise InvalidWeights("data.pkl pops a MARK it never pushed")

    def step(self, name: str, arg: object) -> None:  # noqa: PLR0912 - one branch per opcode
        stack = self.stack
        if name in _ARGUMENT_OPS:
            stack.append(arg)
        elif name in _CONSTANTS:
            stack.append(_CONSTANTS[name])
        elif name in _IGNORED:
            pass
        elif name == "MARK":
            stack.append(_MARK)
        elif name in ("EMPTY_DICT", "EMPTY_LIST"):
            stack.append({} if name == "EMPTY_DICT" else [])
        elif name in ("TUPLE", "LIST", "DICT"):
            items = self._pop_mark()
            built: object = tuple(items) if name == "TUPLE" else items
            if name == "DICT":
                built = _pairs_into({}, items)
            stack.append(built)
        elif name in _POP_PUSH:
            n = _POP_PUSH[name]
            items = stack[-n:]
            del stack[-n:]
            stack.append(tuple(items))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            self.memo[int(str(arg))] = stack[-1]
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(self.memo[int(str(arg))])
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            stack.append(_global(name, arg, stack))
        elif name in ("BINPERSID", "PERSID"):
            stack.append(_storage(stack.pop() if name == "BINPERSID" else arg))
        elif name in ("REDUCE", "NEWOBJ"):
            args = stack.pop()
            stack.append(_reduce(stack.pop(), args))
        elif name == "BUILD":
            stack.pop()
        elif name in ("SETITEM", "SETITEMS"):
            items = stack[-2:] if name == "SETITEM" else self._pop_mark()
            if name == "SETITEM":
                del stack[-2:]
            _pairs_into(stack[-1], items)
        elif name in ("APPEND", "APPENDS"):
            items = [stack.pop()] if name == "APPEND" else self._pop_mark()
            target = stack[-1]
            if isinstance(target, list):
                target.extend(items)
        else:
            raise InvalidWeights(f"data.pkl uses opcode {name}, which a checkpoint does not need")


def _global(name: str, arg: object, stack: list[object]) -> Global:
    if name == "GLOBAL":
        module, _, attr = str(arg).partition(" ")
    else:
        attr, module = str(stack.pop()), str(stack.pop())
    if (module, attr) not in _ALLOWED_GLOBALS:
        raise InvalidWeights(
            f"data.pkl references {module}.{attr}, which a checkpoint does not need (not loaded)"
        )
    return Global(module, attr)


def _storage(pid: object) -> Storage:
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
        raise InvalidWeights(f"data.pkl has a persistent id that is not a storage: {pid!r:.80}")
    _, kind, key, _location, numel = pid
    dtype = TORCH_STORAGES.get(kind.name) if isinstance(kind, Global) else None
    if dtype is None or not isinstance(numel, int) or numel < 0:
        raise InvalidWeights("data.pkl has a storage without a type or size")
    return Storage(dtype, str(key), numel)


def _reduce(func: object, args: object) -> object:
    if not isinstance(func, Global) or not isinstance(args, tuple):
        return None
    target = (func.module, func.name)
    if target == _REBUILD_TENSOR:
        if len(args) < 4 or not isinstance(args[0], Storage) or not isinstance(args[1], int):
            raise InvalidWeights("data.pkl rebuilds a tensor without a storage and offset")
        shape = args[2]
        if not isinstance(shape, tuple) or not all(isinstance(d, int) for d in shape):
            raise InvalidWeights("data.pkl rebuilds a tensor without a shape")
        return TensorRef(args[0], args[1], shape)
    if target == _REBUILD_PARAMETER and args:
        return args[0]
    if target == ("collections", "OrderedDict"):
        return {}
    return None


def _pairs_into(target: object, items: list[object]) -> object:
    if isinstance(target, dict):
        for key, value in zip(items[::2], items[1::2], strict=False):
            target[key if isinstance(key, str | int) else repr(key)] = value
    return target


def _walk(
    value: object, prefix: str, budget: list[int], depth: int = 0
) -> Iterator[tuple[str, TensorRef]]:
    """Tensors under ``value``; ``budget`` (the opcode count) bounds visits of shared objects."""
    budget[0] -= 1
    if budget[0] < 0 or depth > 32:
        raise InvalidWeights("data.pkl refers to its own objects too often or too deeply")
    if isinstance(value, TensorRef):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{prefix}.{key}" if prefix else str(key), budget, depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            name = f"{prefix}.{index}" if prefix else str(index)
            yield from _walk(item, name, budget, depth + 1)
