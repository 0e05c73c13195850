"""Calibrated quantization: GPTQ, AWQ and SmoothQuant W8A8, run by a maintained library
(llm-compressor by default, GPTQModel as a second implementation) and converted into the
canonical QuantizedWeight. Nothing here re-implements a method: the configs name the options,
the handlers pick a backend (dsedge.quantize.backends) and hand back a QuantResult whose
`tensors` hold the float tensors a method changed besides quantized linears (smoothed / AWQ-scaled
norm weights, scaled biases) and whose `act_scales` hold SmoothQuant's static activation scales.

Memory: every handler works on the whole FP32 PyTorch model (`source.model()`, 4 bytes per
parameter) plus the library's calibration state. Both libraries run layer by layer, so on top of
the model they hold one decoder layer's inputs for every calibration sample
(N x T x hidden x 4 bytes, twice: inputs and outputs) and per-linear statistics (GPTQ: a K x K
FP32 Hessian per linear of the layer; AWQ: the layer's activations per mapping). For the
reference checkpoints (~3 M parameters, 32 x 128 tokens) that is well under 100 MB; for
a 7B dense checkpoint with 128 x 512 tokens it is ~31 GB (model) + ~1 GB (activations) + ~0.2 GB
(Hessians of one layer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import ConfigError
from .configs import WeightOnlyConfig
from .registry import register_handler

BACKENDS = ("llmcompressor", "gptqmodel")
# GPTQModel 7.6 hard-codes these (gptqmodel/quantization/gptq.py: quantize(blocksize=128);
# gptqmodel/looper/awq_processor.py: n_grid = 20): other values cannot be passed to it
GPTQMODEL_FIXED = {"block_size": 128, "grid": 20}


@dataclass(frozen=True)
class CalibratedConfig(WeightOnlyConfig):
    """Weight quantization that needs the whole model and calibration data."""
    needs_model: ClassVar[bool] = True
    allowed_bits: ClassVar[tuple[int, ...]] = (4, 8)
    supported_backends: ClassVar[tuple[str, ...]] = BACKENDS
    # symmetric by default: TensorRT's INT4/INT8 DequantizeLinear takes no zero point (the AWQ and
    # GPTQ papers use zero points; --asym gives them, for runtimes other than TensorRT)
    backend: str = "llmcompressor"

    def __post_init__(self):
        super().__post_init__()
        if self.backend not in self.supported_backends:
            raise ConfigError(f"--backend {self.backend} is not supported by method {self.method}",
                              f"use --backend {' or '.join(self.supported_backends)}")

    def label(self) -> str:
        return super().label() + ("" if self.backend == "llmcompressor" else f"-{self.backend}")


@dataclass(frozen=True)
class GptqConfig(CalibratedConfig):
    """GPTQ (Frantar et al. 2022): column-by-column rounding with second-order error feedback."""
    method: ClassVar[str] = "gptq"
    damping: float = 0.01        # fraction of mean Hessian diagonal: the paper, AutoGPTQ, llm-compressor
                                 # (GPTQModel's own default is 0.05; we pass 0.01 to both)
    block_size: int = 128        # columns per lazy batch update: the paper, both libraries
    # quantize columns by decreasing Hessian diagonal. None: the backend's own default, resolved in
    # __post_init__ (and so recorded in the manifest): llm-compressor's GPTQModifier defaults to
    # actorder="static" (act-order, groups in channel order), GPTQModel's desc_act to off. Measured on
    # the real-text / tiny references (README, "Beside llm-compressor run directly"): off costs KL.
    act_order: bool | None = None
    # with act_order: groups stay contiguous in the original channel order (no permutation at run
    # time). None: on with llm-compressor (its only act-order), off with GPTQModel (g_idx)
    static_groups: bool | None = None
    true_sequential: bool = True  # quantize attention before MLP inside a layer, MLP calibrated on the
                                  # quantized attention's output (GPTQModel's default; llm-compressor
                                  # calibrates a whole decoder layer at once and only supports True
                                  # as "layer-sequential", see backends/llmcompressor.py)

    def __post_init__(self):
        super().__post_init__()
        lc = self.backend == "llmcompressor"
        if self.act_order is None:
            object.__setattr__(self, "act_order", lc)
        if self.static_groups is None:
            object.__setattr__(self, "static_groups", lc and self.act_order)
        if self.static_groups and not self.act_order:
            raise ConfigError("--static-groups only applies with --act-order", "add --act-order, or drop --static-groups")
        if self.backend == "gptqmodel" and self.block_size != GPTQMODEL_FIXED["block_size"]:
            raise ConfigError(f"GPTQModel's GPTQ block size is fixed at {GPTQMODEL_FIXED['block_size']}; "
                              f"--block-size {self.block_size} cannot be passed to it",
                              "drop --block-size, or use --backend llmcompressor")
        if not 0 < self.damping < 1:
            raise ConfigError(f"--damping {self.damping} is not in (0, 1)", "use --damping 0.01")
        if self.block_size < 1:
            raise ConfigError(f"--block-size {self.block_size} must be positive", "use --block-size 128")


@dataclass(frozen=True)
class AwqConfig(CalibratedConfig):
    """AWQ (Lin et al. 2023): per-input-channel scales from activation magnitudes, searched on a
    grid, folded into the preceding norm / linear, then round-to-nearest."""
    method: ClassVar[str] = "awq"
    grid: int = 20               # grid points for the scale exponent in [0, 1): the paper, AutoAWQ,
                                 # llm-compressor (n_grid), GPTQModel
    clipping: bool | None = None  # AWQ's weight-clipping search (paper, AutoAWQ: on). None: what the
                                  # backend does — llm-compressor dropped it (off), GPTQModel always
                                  # runs it (on); asking a backend for the other is refused
    duo_scaling: bool = True     # scales from activations and weights (AutoAWQ, llm-compressor default)
    # v_proj -> o_proj scaling is skipped under GQA (v_proj's outputs are shared by several heads):
    # both backends skip it when the shapes do not match, as AutoAWQ does

    def __post_init__(self):
        super().__post_init__()
        if self.grid < 2:
            raise ConfigError(f"--grid {self.grid} must be at least 2", "use --grid 20")
        if self.backend == "gptqmodel" and self.grid != GPTQMODEL_FIXED["grid"]:
            raise ConfigError(f"GPTQModel's AWQ grid is fixed at {GPTQMODEL_FIXED['grid']} points; --grid {self.grid} "
                              "cannot be passed to it", "drop --grid, or use --backend llmcompressor")
        if self.clipping is True and self.backend == "llmcompressor":
            raise ConfigError("llm-compressor's AWQ has no clipping search (it was dropped there)",
                              "use --backend gptqmodel (always clips), or drop --clip")
        if self.clipping is False and self.backend == "gptqmodel":
            raise ConfigError("GPTQModel's AWQ always runs the clipping search",
                              "use --backend llmcompressor (never clips), or drop --no-clip")

    @property
    def clips(self) -> bool:
        """Whether the weight-clipping search runs (the backend's behaviour when not asked)."""
        return self.backend == "gptqmodel" if self.clipping is None else self.clipping


@dataclass(frozen=True)
class SmoothQuantConfig(CalibratedConfig):
    """SmoothQuant W8A8 (Xiao et al. 2022): migrate activation outliers into the weights with
    per-channel scales s = max|X|^alpha / max|W|^(1-alpha) folded into the preceding norm, then
    INT8 per-channel symmetric weights and INT8 static per-tensor symmetric activations (the scheme
    TensorRT's explicit quantization consumes; dynamic per-token scales cannot be expressed there)."""
    method: ClassVar[str] = "smoothquant"
    allowed_bits: ClassVar[tuple[int, ...]] = (8,)
    supported_backends: ClassVar[tuple[str, ...]] = ("llmcompressor",)  # GPTQModel has no SmoothQuant
    bits: int = 8
    group_size: int = -1         # per output channel, as in the paper and TensorRT INT8
    alpha: float = 0.5           # migration strength: the paper's default, llm-compressor's too
    # what the artifact's activations use (record it in the manifest / report)
    activation_scheme: ClassVar[str] = "static-per-tensor-symmetric-int8"
    matmul_precision: ClassVar[str] = "int8"

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"--alpha {self.alpha} is not in [0, 1]", "use --alpha 0.5")
        if not self.symmetric:
            raise ConfigError("SmoothQuant W8A8 is symmetric (TensorRT INT8 takes no zero point)",
                              "drop --asym")


def _run(method: str, config: CalibratedConfig, source, names: list[str], calib):
    """The backend's `method` on the whole model. GPTQModel writes a checkpoint, read back through
    `source.open_checkpoint` (dsedge's loader and importers: load/ is above quantize/)."""
    _require(source, calib, method)
    if config.backend == "gptqmodel":
        from .backends import gptqmodel as b

        if source.open_checkpoint is None:
            raise ConfigError("--backend gptqmodel needs a checkpoint reader", "pass WeightSource(open_checkpoint=...)")
        return getattr(b, method)(config, source.model(), names, calib, open_checkpoint=source.open_checkpoint)
    from .backends import llmcompressor as b

    return getattr(b, method)(config, source.model(), names, calib)


def _require(source, calib, method: str):
    if source.model is None:
        raise ConfigError(f"method {method} needs the whole PyTorch model", "pass WeightSource(model=...)")
    if calib is None:
        raise ConfigError(f"method {method} needs calibration data", "pass --calib FILE|RECIPE")


@register_handler(GptqConfig)
def quantize_gptq(config: GptqConfig, source, names: list[str], calib):
    """Handler for GptqConfig -> QuantResult(weights). Peak memory: the FP32 model + one decoder
    layer's calibration activations + one layer's Hessians (see the module docstring); on 2 CPU
    cores the reference checkpoints take a few seconds."""
    return _run("gptq", config, source, names, calib)


@register_handler(AwqConfig)
def quantize_awq(config: AwqConfig, source, names: list[str], calib):
    """Handler for AwqConfig -> QuantResult(weights, tensors = scaled norm weights / biases).
    Peak memory: the FP32 model + one decoder layer's calibration activations, kept per mapping
    during the grid search (see the module docstring)."""
    return _run("awq", config, source, names, calib)


@register_handler(SmoothQuantConfig)
def quantize_smoothquant(config: SmoothQuantConfig, source, names: list[str], calib):
    """Handler for SmoothQuantConfig -> QuantResult(weights, tensors = smoothed norm weights,
    act_scales). Peak memory: the FP32 model + one decoder layer's calibration activations."""
    return _run("smoothquant", config, source, names, calib)

