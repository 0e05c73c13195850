"""Pre-quantized checkpoints (GPTQ, AWQ GEMM, compressed-tensors): detection from config.json's
quantization_config, checks of the packed tensors, and conversion of each quantized linear to the
canonical QuantizedWeight without re-quantizing.

    pq = Prequant.from_config(raw_config["quantization_config"])     # CheckpointError if unsupported
    pq.bind(read, index, linear_shapes)   # which linears are quantized, from the safetensors headers
    pq.weights["model.layers.0.self_attn.q_proj"]  -> QuantizedWeight (read and converted on access)

The weights mapping is a quantize.LazyWeights: one linear's packed tensors are read (memory-mapped)
and converted at a time, and `weights.spec(module)` gives bits / group / symmetry / permutation
without converting (what the exporter needs first).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

import torch

from ...errors import CheckpointError
from ...quantize.lazy import LazyWeights
from ...quantize.qweight import QuantizedWeight
from .formats import FORMATS, SUPPORTED, Format, Scheme, detect

__all__ = ["Prequant", "FORMATS", "SUPPORTED", "detect"]


@dataclass
class Prequant:
    fmt: Format
    scheme: Scheme
    config: dict                                   # the raw quantization_config
    modules: list[str] = field(default_factory=list)
    _read: Callable[[str], torch.Tensor] | None = field(default=None, repr=False)
    _has: Callable[[str], bool] | None = field(default=None, repr=False)
    _shapes: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    _weights: LazyWeights | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, qcfg: dict) -> "Prequant":
        fmt, scheme = detect(qcfg)
        return cls(fmt, scheme, qcfg)

    # -- the scheme --------------------------------------------------------------------------
    @property
    def format(self) -> str:
        return self.fmt.name

    @property
    def bits(self) -> int:
        return self.scheme.bits

    @property
    def group_size(self) -> int:
        return self.scheme.group_size

    @property
    def symmetric(self) -> bool:
        return self.scheme.symmetric

    def to_dict(self) -> dict:
        """For the manifest and report: what was imported and what it implies for the artifact."""
        s = self.scheme
        return {"method": "prequantized", "format": self.format, "library": s.library, "bits": s.bits,
                "group_size": s.group_size, "symmetric": s.symmetric, "act_order": s.act_order,
                **({"zero_point_convention": s.zeros} if self.format == "gptq" else {}),
                "activations": s.activations, "quantized_linears": len(self.modules), "notes": list(s.notes),
                "quantization_config": self.config}

    def label(self) -> str:
        """Short name for artifact folders, e.g. gptq-w4-g128."""
        g = "ch" if self.group_size == -1 else self.group_size
        return f"{self.format.split('/')[-1]}-w{self.bits}-g{g}"

    # -- binding to a checkpoint -------------------------------------------------------------
    def bind(self, read: Callable[[str], torch.Tensor], index: Mapping, linear_shapes: Mapping[str, tuple[int, int]]):
        """read(name): one tensor; index: name -> TensorInfo (dtype, shape); linear_shapes: module
        -> (out_features, in_features) of every nn.Linear weight of the model."""
        marker = f".{self.fmt.marker}"
        found = sorted({n[: -len(marker)] for n in index if n.endswith(marker)})
        unknown = [m for m in found if m not in linear_shapes]
        if unknown:
            raise CheckpointError(f"quantized tensors for {unknown[0]}, which is not a linear layer of this model",
                                  "config.json and the weights come from different models: use the matching pair")
        if not found:
            raise CheckpointError(f"config.json says {self.format} but no tensor ends in {marker}",
                                  "the weights are not quantized as the config says: use the matching pair")
        order = {m: i for i, m in enumerate(linear_shapes)}
        self.modules = sorted(found, key=order.__getitem__)
        self._read, self._has = read, index.__contains__
        self._shapes = {m: tuple(linear_shapes[m]) for m in self.modules}
        self._weights = None
        return self

    def _reader(self, module: str):
        def read(suffix: str):
            name = f"{module}.{suffix}"
            return self._read(name) if self._has(name) else None
        return read

    def check(self, index: Mapping) -> None:
        """The packed tensors of every quantized linear against the config: present, shapes, dtypes."""
        for m in self.modules:
            n, k = self._shapes[m]
            if self.group_size != -1 and k % self.group_size:
                raise CheckpointError(f"{m} has {k} input channels, not a multiple of group_size {self.group_size}",
                                      "config.json's quantization_config does not match the weights")
            for suffix, (shape, dtypes, required) in self.fmt.tensors(n, k, self.scheme).items():
                info = index.get(f"{m}.{suffix}")
                if info is None:
                    if required:
                        raise CheckpointError(f"tensor {m}.{suffix} is missing ({self.format} stores it for every "
                                              "quantized linear)", "the checkpoint is incomplete: download it again")
                    continue
                if shape is not None and tuple(info.shape) != tuple(shape):
                    raise CheckpointError(
                        f"tensor {m}.{suffix} has shape {list(info.shape)}; {self.format} with bits={self.bits}, "
                        f"group_size={self.group_size} on a [{n}, {k}] linear stores {list(shape)}",
                        "config.json's quantization_config and the weights disagree: use the matching pair")
                if info.dtype not in dtypes:
                    raise CheckpointError(f"tensor {m}.{suffix} has dtype {info.dtype}, {self.format} stores "
                                          f"{'/'.join(dtypes)}", "the checkpoint is corrupt or mislabelled: re-export it")

    def packed_names(self, module: str) -> list[str]:
        """State-dict names of one quantized linear's stored tensors (not float parameters)."""
        n, k = self._shapes[module]
        return [f"{module}.{s}" for s in self.fmt.tensors(n, k, self.scheme)]

    # -- conversion --------------------------------------------------------------------------
    def convert(self, module: str) -> QuantizedWeight:
        n, k = self._shapes[module]
        qw = self.fmt.convert(self._reader(module), module, n, k, self.scheme)
        if qw.shape != (n, k):
            raise CheckpointError(f"{module} unpacks to {list(qw.shape)}, the model's layer is [{n}, {k}]",
                                  "config.json's quantization_config and the weights disagree: use the matching pair")
        return qw

    def spec(self, module: str) -> dict:
        """bits / group_size / symmetric / perm of one linear without converting its codes."""
        n, k = self._shapes[module]
        perm = self.fmt.perm(self._reader(module), module, k, self.scheme) if self.fmt.perm else None
        return {"bits": self.bits, "group_size": self.group_size, "symmetric": self.symmetric, "perm": perm}

    @property
    def weights(self) -> LazyWeights:
        """module name -> QuantizedWeight, converted on access (nothing is kept)."""
        if self._read is None:
            raise RuntimeError("Prequant.bind() first")
        if self._weights is None:
            self._weights = LazyWeights(self.modules, self.convert, self.spec)
        return self._weights

    @property
    def act_scales(self) -> dict[str, float]:
        """Static per-tensor INT8 input scales (compressed-tensors input_scale), module -> scale;
        empty when the activations were dynamic (exported weight-only)."""
        a = self.scheme.activations
        if not a or a["dynamic"] or a["strategy"] != "tensor" or not a["symmetric"]:
            return {}
        out = {}
        for m in self.modules:
            s = self._reader(m)("input_scale")
            if s is not None:
                out[m] = float(s.float().reshape(-1)[0])
        return out
