"""A mapping of module name -> QuantizedWeight whose values are computed on access, so that a
weight-only build never holds more than one layer's quantized weight."""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Callable

from .qweight import QuantizedWeight


class LazyWeights(Mapping):
    def __init__(self, names: list[str], make: Callable[[str], QuantizedWeight], spec: Callable[[str], dict]):
        self._names, self._set, self._make, self.spec = list(names), set(names), make, spec
        self.seconds = 0.0  # time spent quantizing so far

    def __getitem__(self, name: str) -> QuantizedWeight:
        if name not in self._set:
            raise KeyError(name)
        t = time.perf_counter()
        try:
            return self._make(name)
        finally:
            self.seconds += time.perf_counter() - t

    def __contains__(self, name) -> bool:
        return name in self._set

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def spec_of(qw: QuantizedWeight) -> dict:
    """What the exporter must know of a weight before its data is produced."""
    return {"bits": qw.bits, "group_size": qw.group_size, "symmetric": qw.symmetric, "perm": qw.perm}
