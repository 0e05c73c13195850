"""Per-layer quantization error, measured where each weight is produced.

Weight-only builds stream their weights (quantize/lazy.py): a QuantizedWeight exists only while
the exporter writes it or the PyTorch check applies it. LayerErrors wraps that mapping and, the
first time each weight is produced, records its SQNR against the float weight it came from —
one float weight in memory at a time, never all of them."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Callable

import torch

from .primitives import quant_sqnr_db


class LayerErrors(Mapping):
    def __init__(self, weights: Mapping, float_weight: Callable[[str], torch.Tensor] | None):
        """weights: module name -> QuantizedWeight (lazy or not); float_weight: state-dict key ->
        the float (N, K) weight that was quantized, or None where there is none to compare with."""
        self.weights, self._float = weights, float_weight
        self._rows: dict[str, dict] = {}

    def __getitem__(self, name: str):
        qw = self.weights[name]
        if name not in self._rows and self._float is not None:
            db = qw.sqnr_db
            if db is None:
                w = self._float(f"{name}.weight")                         # (N, K) float
                db = quant_sqnr_db(w, qw.codes, qw.group_size, qw.scale, qw.zero_point, qw.perm)
            self._rows[name] = {"name": name, "sqnr_db": None if math.isinf(db) else round(db, 3),
                                "bits": qw.bits, "group_size": qw.group_size, "shape": list(qw.shape)}
        return qw

    def __contains__(self, name) -> bool:
        return name in self.weights

    def __iter__(self):
        return iter(self.weights)

    def __len__(self) -> int:
        return len(self.weights)

    def complete(self) -> None:
        """Measure the weights nobody produced yet (a cached export, a check on the first layers only)."""
        if self._float is None:
            return
        for name in self.weights:
            if name not in self._rows:
                self[name]

    def to_list(self) -> list[dict]:
        """[{name, sqnr_db (None: exact), bits, group_size, shape}] in the model's order."""
        return [self._rows[n] for n in self.weights if n in self._rows]
