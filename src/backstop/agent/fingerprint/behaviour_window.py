"""The time shape of a workload's GPU utilisation, kept per workload for the behaviour class.

Owns :class:`BehaviourWindow`: the last :data:`WINDOW_SAMPLES` utilisation samples of one
workload (one per discovery pass, the busiest GPU it uses) and running sums over them, so
that each new sample costs O(1) and a workload's state never exceeds the window. From it
come the features the behaviour model reads (:meth:`BehaviourWindow.features`): mean and
spread, how often the GPU sits idle or flat out, how jumpy the signal is, and whether busy
stretches are broken by dips at a regular period (training checkpoints). Every sample is
taken while the workload holds GPU memory (NVML lists it), so the idle fraction is also the
fraction of time memory is held while idle.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

WINDOW_SAMPLES = 120
"""Samples kept per workload (two minutes at one sample a second)."""

MIN_SAMPLES = 20
"""Fewer samples than this say too little about a shape; the static rules decide."""

IDLE_PCT = 5.0
FLAT_OUT_PCT = 97.0
ACTIVE_PCT = 20.0
"""A sample crosses between idle and active at this utilisation (burstiness)."""
DIP_HIGH_PCT = 70.0
DIP_LOW_PCT = 30.0
DIP_AFTER_BUSY = 8
"""A dip counts after at least this many consecutive samples at or over DIP_HIGH_PCT."""
DIP_ONSETS_KEPT = 6

FEATURE_NAMES = (
    "mean",
    "std",
    "idle",
    "flat_out",
    "jitter",
    "crossings",
    "dips",
    "periodic",
    "steady",
)
"""The names of :meth:`BehaviourWindow.features`, in order (each in [0, 1])."""


class BehaviourWindow:
    """A bounded window of one workload's GPU utilisation with O(1) updates."""

    __slots__ = (
        "_busy_run",
        "_crossings",
        "_dips",
        "_flat",
        "_idle",
        "_jitter",
        "_samples",
        "_seen",
        "_sum",
        "_sumsq",
    )

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=WINDOW_SAMPLES)
        self._sum = 0.0
        self._sumsq = 0.0
        self._idle = 0
        self._flat = 0
        self._jitter = 0.0
        """Sum of |difference| between neighbouring samples in the window."""
        self._crossings = 0
        """Neighbouring pairs in the window on either side of ACTIVE_PCT."""
        self._seen = 0
        self._busy_run = 0
        self._dips: deque[int] = deque(maxlen=DIP_ONSETS_KEPT)
        """Sample numbers at which a dip began after a busy stretch."""

    def __len__(self) -> int:
        return len(self._samples)

    def push(self, util_pct: float) -> None:
        """Fold in one sample (percent, clamped to [0, 100])."""
        util = min(100.0, max(0.0, util_pct))
        samples = self._samples
        if len(samples) == samples.maxlen:
            self._forget(samples.popleft())
        if samples:
            self._pair(samples[-1], util, 1)
        samples.append(util)
        self._sum += util
        self._sumsq += util * util
        self._idle += util < IDLE_PCT
        self._flat += util >= FLAT_OUT_PCT
        self._track_dips(util)
        self._seen += 1

    def _forget(self, old: float) -> None:
        self._sum -= old
        self._sumsq -= old * old
        self._idle -= old < IDLE_PCT
        self._flat -= old >= FLAT_OUT_PCT
        if self._samples:
            self._pair(old, self._samples[0], -1)

    def _pair(self, a: float, b: float, sign: int) -> None:
        self._jitter += sign * abs(b - a)
        self._crossings += sign * ((a < ACTIVE_PCT) != (b < ACTIVE_PCT))

    def _track_dips(self, util: float) -> None:
        if util >= DIP_HIGH_PCT:
            self._busy_run += 1
            return
        if util < DIP_LOW_PCT and self._busy_run >= DIP_AFTER_BUSY:
            self._dips.append(self._seen)
        if util < DIP_LOW_PCT:
            self._busy_run = 0

    def _recent_dips(self) -> list[int]:
        oldest = self._seen - len(self._samples)
        return [d for d in self._dips if d >= oldest]

    def features(self) -> tuple[float, ...]:
        """The shape of the window, named by :data:`FEATURE_NAMES` (zeros when empty)."""
        n = len(self._samples)
        if n == 0:
            return (0.0,) * len(FEATURE_NAMES)
        mean = self._sum / n
        var = max(0.0, self._sumsq / n - mean * mean)
        pairs = max(1, n - 1)
        dips = self._recent_dips()
        gaps = [b - a for a, b in itertools.pairwise(dips)]
        periodic = 0.0
        if len(gaps) >= 2:
            gap_mean = sum(gaps) / len(gaps)
            spread = math.sqrt(sum((g - gap_mean) ** 2 for g in gaps) / len(gaps))
            periodic = max(0.0, 1.0 - spread / gap_mean)
        std = math.sqrt(var)
        return (
            mean / 100.0,
            std / 50.0,
            self._idle / n,
            self._flat / n,
            min(1.0, self._jitter / pairs / 50.0),
            self._crossings / pairs,
            min(1.0, len(dips) / 3.0),
            periodic,
            1.0 if std < 3.0 and mean >= FLAT_OUT_PCT else 0.0,
        )
