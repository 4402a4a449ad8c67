"""GPU power throttling: cap GPUs at a fraction of their default power limit, and undo it.

The caller keeps a record of "the limit each GPU had before Backstop touched it" and
passes it to every throttle, so throttling twice (or at a new fraction) never loses the
original value, and :func:`restore_gpus` puts back exactly that. Both functions try
every GPU they are given and then raise one error naming each GPU that failed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Protocol

from backstop.agent.collectors.nvml import PowerLimits
from backstop.core.errors import ActuationError, BackstopError, InvalidInput, NotSupported

logger = logging.getLogger(__name__)


class PowerControl(Protocol):
    """What throttling needs from a GPU backend (``NvmlBackend`` provides it)."""

    def power_limits(self, gpu_uuid: str) -> PowerLimits:
        """Current, default, minimum and maximum limit of one GPU, in mW."""
        ...

    def set_power_limit(self, gpu_uuid: str, limit_mw: int) -> None:
        """Set one GPU's power limit, in mW."""
        ...


def throttled_limit(limits: PowerLimits, fraction: float) -> int:
    """``fraction`` of the default limit, clamped to what the GPU accepts."""
    return min(max(round(limits.default_mw * fraction), limits.min_mw), limits.max_mw)


def throttle_gpus(
    backend: PowerControl,
    gpu_uuids: Iterable[str],
    fraction: float,
    record: MutableMapping[str, int] | None = None,
) -> dict[str, int]:
    """Cap each GPU at ``fraction`` of its default power limit (clamped to its range).

    Returns, for each GPU given, the limit it had before Backstop touched it: its entry
    in ``record`` when there is one (a GPU throttled again keeps its original value),
    otherwise the limit read just before this call changed it. ``record``, when given,
    is updated in place before each change, so it stays complete for every GPU changed
    even when this call raises part-way. A GPU already at the target is not written.

    Raises InvalidInput (nothing touched) unless 0 < fraction <= 1; NotSupported when
    every failing GPU lacks the mechanism; otherwise ActuationError (or NotFound for a
    single unknown GPU) after trying every GPU.
    """
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, int | float)
        or not math.isfinite(fraction)
        or not 0 < fraction <= 1
    ):
        raise InvalidInput(f"power fraction must be in (0, 1], not {fraction!r}")
    kept: MutableMapping[str, int] = {} if record is None else record
    previous: dict[str, int] = {}

    def throttle(gpu_uuid: str) -> None:
        limits = backend.power_limits(gpu_uuid)
        target = throttled_limit(limits, fraction)
        kept.setdefault(gpu_uuid, limits.current_mw)
        previous[gpu_uuid] = kept[gpu_uuid]
        if limits.current_mw != target:
            backend.set_power_limit(gpu_uuid, target)
        logger.info(
            "GPU %s throttled to %d mW (%.0f%% of default %d mW; before Backstop: %d mW)",
            gpu_uuid,
            target,
            fraction * 100,
            limits.default_mw,
            previous[gpu_uuid],
            extra={"gpu_uuid": gpu_uuid},
        )

    _on_each_gpu("throttle", dict.fromkeys(gpu_uuids), throttle)
    return previous


def restore_gpus(backend: PowerControl, previous: Mapping[str, int]) -> None:
    """Set each GPU back to the limit in ``previous`` (what :func:`throttle_gpus` returned).

    Idempotent: restoring twice sets the same values. Raises like :func:`throttle_gpus`
    after trying every GPU.
    """

    def restore(gpu_uuid: str) -> None:
        backend.set_power_limit(gpu_uuid, previous[gpu_uuid])
        logger.info(
            "GPU %s power limit restored to %d mW",
            gpu_uuid,
            previous[gpu_uuid],
            extra={"gpu_uuid": gpu_uuid},
        )

    _on_each_gpu("restore", previous, restore)


def _on_each_gpu(action: str, gpu_uuids: Iterable[str], act: Callable[[str], None]) -> None:
    """``act`` on every GPU in turn, then one error for those where it failed."""
    failures: dict[str, BackstopError] = {}
    for gpu_uuid in gpu_uuids:
        try:
            act(gpu_uuid)
        except BackstopError as exc:
            failures[gpu_uuid] = exc
    _raise_failures(action, failures)


def _raise_failures(action: str, failures: Mapping[str, BackstopError]) -> None:
    """One error for every GPU that failed; its type says what kind of failure it was."""
    if not failures:
        return
    errors = list(failures.values())
    if len(errors) == 1:
        raise errors[0]
    detail = "; ".join(exc.message for exc in errors)
    message = f"GPU power {action} failed on {len(errors)} GPUs: {detail}"
    if all(isinstance(exc, NotSupported) for exc in errors):
        raise NotSupported(message) from errors[0]
    raise ActuationError(message) from errors[0]
