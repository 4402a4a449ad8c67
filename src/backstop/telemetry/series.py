"""Prometheus series of the daemons: counters, gauges and histograms, and their text.

The daemons declare their series with these classes and serve :meth:`Registry.exposition`
on ``/metrics``, in the Prometheus text format (0.0.4): the same escaping, float spelling
and ``_total`` counters as the official client's text, which the tests read back with its
parser. The official client is not used in the daemons because importing it brings a
push-gateway client, ``urllib.request`` and ``wsgiref``, 2.3 MiB of the agent's 60 MiB
budget, for series that need none of it; it also adds a ``*_created`` gauge to every
counter and histogram, which no Backstop dashboard or rule reads.

Every method is thread-safe: the sampler and the RPC handlers write while the telemetry
thread renders.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


Sample = tuple[str, Sequence[tuple[str, str]], float]
"""A sample's name, its own labels and its value."""

Source = Callable[[Mapping[str, str]], Iterable[str]]
"""Writes exposition lines, the server's labels (the given mapping) first on each sample."""


class Registry:
    """The series a daemon serves, in the order they were declared."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[Source] = []

    def register(self, source: Source) -> None:
        with self._lock:
            self._sources.append(source)

    def lines(self, labels: Mapping[str, str]) -> Iterator[str]:
        """The text of every series, ``labels`` first on each sample that lacks them."""
        with self._lock:
            sources = list(self._sources)
        for source in sources:
            yield from source(labels)


ChildT = TypeVar("ChildT", bound="_Child")

REGISTRY = Registry()
"""The process's series, served by :class:`backstop.telemetry.endpoint.TelemetryServer`."""


def family_lines(
    name: str, kind: str, text: str, samples: Iterable[Sample], labels: Mapping[str, str]
) -> Iterator[str]:
    """One family's lines: ``# HELP``, ``# TYPE`` (``counter``, ``gauge`` or ``histogram``),
    then a line a sample, ``labels`` given to each sample that has none of that name."""
    yield f"# HELP {name} {escape_help(text)}\n"
    yield f"# TYPE {name} {kind}\n"
    for sample, own, value in samples:
        pairs = ",".join(f'{k}="{escape_label(v)}"' for k, v in {**labels, **dict(own)}.items())
        yield (
            f"{sample}{{{pairs}}} {go_float(value)}\n" if pairs else f"{sample} {go_float(value)}\n"
        )


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def go_float(value: float) -> str:
    """``value`` as Prometheus (written in Go) spells it: ``+Inf``, ``1e+07``, ``0.5``."""
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go turns to an exponent sooner than Python does
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


class Metric(Generic[ChildT]):
    """A family of one kind, each label combination a child holding its value(s)."""

    kind = ""
    _child: type[ChildT]

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: Registry = REGISTRY,
    ) -> None:
        self._check(name)
        self.name = name
        self._help = documentation
        self._labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], list[float]] = {}
        if not self._labelnames:
            self._children[()] = self._fresh()
        registry.register(self._lines)

    @staticmethod
    def _check(name: str) -> None:
        """Refuse a name this kind of metric cannot have."""

    def _fresh(self) -> list[float]:
        return [0.0]

    def _key(self, values: Sequence[object], named: Mapping[str, object]) -> tuple[str, ...]:
        if named:
            if values or set(named) != set(self._labelnames):
                raise ValueError(f"{self.name}: labels are {self._labelnames}, got {named}")
            values = [named[n] for n in self._labelnames]
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self.name}: labels are {self._labelnames}, got {values}")
        return tuple(str(v) for v in values)

    def labels(self, *values: object, **named: object) -> ChildT:
        """The series of these label values (by position or by name)."""
        return self._child(self, self._key(values, named))

    def _cell(self, key: tuple[str, ...]) -> list[float]:
        cell = self._children.get(key)
        if cell is None:
            cell = self._children[key] = self._fresh()
        return cell

    def remove(self, *values: object) -> None:
        """Drop the series of these label values (nothing when there is none)."""
        key = self._key(values, {})
        with self._lock:
            self._children.pop(key, None)

    def _lines(self, labels: Mapping[str, str]) -> Iterator[str]:
        with self._lock:
            children = [(key, list(cell)) for key, cell in self._children.items()]
        samples: list[Sample] = []
        for key, cell in children:
            samples += self._samples(tuple(zip(self._labelnames, key, strict=True)), cell)
        return family_lines(self.name, self.kind, self._help, samples, labels)

    def _samples(self, labels: tuple[tuple[str, str], ...], cell: list[float]) -> list[Sample]:
        return [(self.name, labels, cell[0])]


class _Child:
    """One label combination of a metric."""

    def __init__(self, metric: Metric[Any], key: tuple[str, ...]) -> None:
        self._metric = metric
        self._key = key

    def _add(self, amount: float) -> None:
        with self._metric._lock:
            self._metric._cell(self._key)[0] += amount

    @property
    def value(self) -> float:
        """The current value (a histogram's: the sum of its observations)."""
        with self._metric._lock:
            return self._metric._cell(self._key)[0]


class GaugeChild(_Child):
    def set(self, value: float) -> None:
        with self._metric._lock:
            self._metric._cell(self._key)[0] = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self._add(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._add(-amount)


class CounterChild(_Child):
    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up, not by {amount}")
        self._add(amount)


class Gauge(Metric[GaugeChild]):
    kind = "gauge"
    _child = GaugeChild

    def set(self, value: float) -> None:
        self.labels().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)


class Counter(Metric[CounterChild]):
    """A counter; its name ends in ``_total``, as the exposition names it."""

    kind = "counter"
    _child = CounterChild

    @staticmethod
    def _check(name: str) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"a counter's name ends in _total: {name}")

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)


class HistogramChild(_Child):
    def __init__(self, metric: Histogram, key: tuple[str, ...]) -> None:
        super().__init__(metric, key)
        self._buckets = metric.buckets

    def observe(self, value: float) -> None:
        with self._metric._lock:
            cell = self._metric._cell(self._key)
            cell[0] += value  # the sum, then the count, then one count a bucket
            cell[1] += 1
            for i, bound in enumerate(self._buckets):
                if value <= bound:
                    cell[2 + i] += 1
                    break


class Histogram(Metric[HistogramChild]):
    """Observations counted into buckets (upper bounds, ``+Inf`` added), with sum and count."""

    kind = "histogram"
    _child = HistogramChild

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        registry: Registry = REGISTRY,
    ) -> None:
        bounds = sorted(float(b) for b in buckets if b != math.inf)
        self.buckets = (*bounds, math.inf)
        super().__init__(name, documentation, labelnames, registry)

    def _fresh(self) -> list[float]:
        return [0.0] * (2 + len(self.buckets))

    def observe(self, value: float) -> None:
        self.labels().observe(value)

    def _samples(self, labels: tuple[tuple[str, str], ...], cell: list[float]) -> list[Sample]:
        out: list[Sample] = []
        running = 0.0
        for bound, count in zip(self.buckets, cell[2:], strict=True):
            running += count
            out.append((f"{self.name}_bucket", (*labels, ("le", go_float(bound))), running))
        out.append((f"{self.name}_count", labels, cell[1]))
        out.append((f"{self.name}_sum", labels, cell[0]))
        return out
