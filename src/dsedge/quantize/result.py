"""What a quantization handler reads (WeightSource) and what it hands back (QuantResult)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

import torch

from .configs import QuantConfig
from .lazy import LazyWeights, spec_of
from .qweight import QuantizedWeight


@dataclass
class WeightSource:
    tensor: Callable[[str], torch.Tensor]              # state-dict key -> float tensor
    model: Callable[[], torch.nn.Module] | None = None  # the whole model, for calibrated methods
    # folder -> dsedge.load Checkpoint: reads back what a backend wrote (GPTQModel saves a checkpoint)
    open_checkpoint: Callable | None = None


@dataclass
class QuantResult:
    config: QuantConfig
    weights: Mapping[str, QuantizedWeight] = field(default_factory=dict)  # module name -> weight
    seconds: float = 0.0
    # float tensors the method changed that are not quantized linears (smoothed / AWQ-scaled norm
    # weights, scaled biases), state-dict name -> tensor: the exporter reads these instead of the checkpoint's
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    # module name -> static per-tensor symmetric INT8 scale of the linear's input (SmoothQuant W8A8)
    act_scales: dict[str, float] = field(default_factory=dict)
    # MoE, calibrated methods: router module -> calibration tokens routed to each expert
    expert_tokens: dict[str, list[int]] | None = None
    # linears stored differently from the config (a group that does not divide them): name -> LayerScheme
    fallbacks: dict = field(default_factory=dict)

    def spec(self, module: str) -> dict:
        """bits / group / symmetry / permutation of one weight, without computing it when lazy."""
        if isinstance(self.weights, LazyWeights):
            return self.weights.spec(module)
        return spec_of(self.weights[module])

    @property
    def total_seconds(self) -> float:
        """Quantization time including what lazy weights spent when they were used."""
        return self.seconds + getattr(self.weights, "seconds", 0.0)
