"""llm-compressor backend (GPTQModifier, AWQModifier, SmoothQuantModifier + QuantizationModifier).

The modifiers run through `oneshot` on the FP32 model in place. They leave, on every quantized
linear, the compressed-tensors quantization parameters as module attributes (weight_scale,
weight_zero_point, weight_g_idx; input_scale for static activations) and a weight that is either
still float (AWQ / RTN: quantized when compressed) or already fake-quantized (GPTQ). We read them
before any compression and turn them into QuantizedWeight with compressed-tensors' own `quantize`,
so codes are exactly the library's; `library_dequantized` gives the library's own dequantization
(compressed-tensors `fake_quantize`) for the equality check.
"""
from __future__ import annotations

import contextlib

import torch

from . import changed_tensors, snapshot
from ...archs import ArchSpec, arch_for
from ...archs.moe import compensate_routers, expert_tokens, routers_behind_norms
from ...errors import ConfigError
from ..qweight import QuantizedWeight


def _weight_args(config, bits: int | None = None, group_size: int | None = None):
    from compressed_tensors.quantization import QuantizationArgs

    g = config.group_size if group_size is None else group_size
    kw = dict(num_bits=bits or config.bits, type="int", symmetric=config.symmetric,
              strategy="channel" if g == -1 else "group", group_size=None if g == -1 else g)
    return QuantizationArgs(**kw)


def _scheme(weights, input_activations=None) -> dict:
    from compressed_tensors.quantization import QuantizationScheme

    return {"group_0": QuantizationScheme(targets=["Linear"], weights=weights,
                                          input_activations=input_activations)}


def _loader(calib):
    """The calibration samples as a DataLoader of single-sample batches (llm-compressor takes a
    DataLoader as is: no tokenizer, no dataset processing)."""
    from torch.utils.data import DataLoader

    ids = calib.input_ids.long()
    rows = [{"input_ids": r, "attention_mask": torch.ones_like(r)} for r in ids]
    return DataLoader(rows, batch_size=1, shuffle=False)


def _oneshot(model, recipe, calib, **kwargs) -> None:
    from llmcompressor import oneshot

    # MoE: every expert's statistics come from every calibration token (llm-compressor's default,
    # stated here): an expert the router rarely picks is still calibrated, not left to chance
    oneshot(model=model, dataset=_loader(calib), recipe=recipe, moe_calibrate_all_experts=True, **kwargs)


def _linearize(model) -> bool:
    """MoE models: transformers' fused (E, 2I, H) experts -> llm-compressor's per-expert linears
    (`experts.{e}.gate_proj`, DeepSeek's on-disk names, which dsedge quantizes and exports), in
    place. False for a dense model."""
    if not any(hasattr(m, "gate_up_proj") for m in model.modules()):
        return False
    from llmcompressor.modeling.moe.linearize import linearize_moe

    linearize_moe(model)
    return True


def _ignore(model, names: list[str]) -> list[str]:
    """Every Linear that is not a target (lm_head by default)."""
    targets = set(names)
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n not in targets]


# ---- conversion ----------------------------------------------------------------------------
def _args_of(module):
    return module.quantization_scheme.weights


def library_dequantized(module) -> torch.Tensor:
    """The library's own fake-quantized weight of a calibrated module (compressed-tensors)."""
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize

    return fake_quantize(module.weight.detach(), module.weight_scale, getattr(module, "weight_zero_point", None),
                         _args_of(module)).float()


def to_qweight(module) -> QuantizedWeight:
    """compressed-tensors parameters of one module -> QuantizedWeight, exactly: the codes are
    compressed-tensors' own `quantize` of the module's weight with its weight_scale / zero point.

    Act-order: compressed-tensors 0.19 removed actorder="group" (g_idx); its only act-order is
    "weight" (= static groups: columns are quantized in Hessian order during GPTQ, groups stay
    contiguous in the original channel order), so no permutation is ever needed here (perm None)."""
    from compressed_tensors.quantization.lifecycle.forward import quantize

    args = _args_of(module)
    w = module.weight.detach()
    scale = module.weight_scale.detach()
    zp = getattr(module, "weight_zero_point", None)
    codes = quantize(w, scale, zp, args).to(torch.int8)  # already rounded and clamped
    n, _ = codes.shape
    group = -1 if args.strategy == "channel" else int(args.group_size)
    zero = None if args.symmetric else zp.detach().reshape(n, -1).to(torch.int8)
    return QuantizedWeight(codes=codes, scale=scale.float().reshape(n, -1), zero_point=zero,
                           bits=int(args.num_bits), group_size=group)


def _result(config, model, names, before, act_scales=None, expert_tokens=None):
    from ..result import QuantResult

    weights = {n: to_qweight(model.get_submodule(n)) for n in names}
    return QuantResult(config, weights, tensors=changed_tensors(before, model), act_scales=act_scales or {},
                       expert_tokens=expert_tokens)


# ---- methods -------------------------------------------------------------------------------
def gptq(config, model, names: list[str], calib):
    """GPTQModifier. true_sequential: llm-compressor calibrates and quantizes one "sequential
    target" at a time, feeding the next the quantized one's output; True splits each decoder layer
    at its attention and MLP modules (MLP calibrated on quantized attention), False quantizes a
    whole decoder layer from one pass."""
    from llmcompressor.modifiers.gptq import GPTQModifier

    if config.act_order and not config.static_groups:
        raise ConfigError("llm-compressor 0.14 has no act-order with a channel permutation (g_idx): "
                          "compressed-tensors removed it", "drop --no-static-groups, or use --backend gptqmodel")
    # actorder "weight" is GPTQModifier's default "static" (compressed-tensors 0.19 names it
    # "weight"); None turns act-order off as the paper has it
    recipe = GPTQModifier(actorder="weight" if config.act_order else None,
                          config_groups=_scheme(_weight_args(config)), ignore=_ignore(model, names),
                          block_size=config.block_size, dampening_frac=config.damping)
    spec = arch_for(model.config)
    tokens = expert_tokens(model, calib.input_ids) if _linearize(model) else None
    layers = model.get_submodule(spec.layers_prefix)   # MoE: dense first layers' MLP and MoE blocks both
    targets = (sorted({type(layer.get_submodule(m)).__name__ for layer in layers for m in spec.sequential})
               if config.true_sequential else [type(layers[0]).__name__])
    before = snapshot(model, names)
    _oneshot(model, recipe, calib, sequential_targets=targets)
    return _result(config, model, names, before, expert_tokens=tokens)


def awq(config, model, names: list[str], calib):
    """AWQModifier (scale search on a `grid`-point grid, then round-to-nearest; no clipping search:
    llm-compressor dropped it). Its default mappings skip v_proj -> o_proj when the shapes differ
    (GQA). The scales are folded into the norms / preceding linears: returned in `tensors`."""
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    from llmcompressor.modifiers.transform.awq import AWQMapping

    spec = arch_for(model.config)
    tokens = expert_tokens(model, calib.input_ids) if _linearize(model) else None
    # AWQModifier only scales; the QuantizationModifier after it does the round-to-nearest
    mappings = [AWQMapping(m.smooth, list(m.balance)) for m in spec.awq_mappings]
    recipe = [AWQModifier(mappings=mappings, n_grid=config.grid, duo_scaling=config.duo_scaling),
              QuantizationModifier(config_groups=_scheme(_weight_args(config)), ignore=_ignore(model, names))]
    before = snapshot(model, names)
    routers = routers_behind_norms(spec, model)
    with _cpu_pin_memory_workaround():
        _oneshot(model, recipe, calib)
    compensate_routers(routers)
    return _result(config, model, names, before, expert_tokens=tokens)


def smoothquant(config, model, names: list[str], calib):
    """SmoothQuantModifier(alpha) folded into the norms, then QuantizationModifier: INT8
    per-channel symmetric weights (round to nearest, as in the paper) and INT8 static per-tensor
    symmetric input activations (min-max observer over the calibration set)."""
    from compressed_tensors.quantization import QuantizationArgs
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform import SmoothQuantModifier

    act_kw = dict(num_bits=8, type="int", symmetric=True, strategy="tensor", dynamic=False)
    acts = QuantizationArgs(**act_kw)
    spec: ArchSpec = arch_for(model.config)
    mappings = [[list(m.balance), m.smooth] for m in spec.smoothquant_mappings]
    recipe = [SmoothQuantModifier(smoothing_strength=config.alpha, mappings=mappings),
              QuantizationModifier(config_groups=_scheme(_weight_args(config, 8, -1), acts),
                                   ignore=_ignore(model, names))]
    before = snapshot(model, names)
    _oneshot(model, recipe, calib)
    act_scales = {n: float(model.get_submodule(n).input_scale.detach().reshape(())) for n in names}
    return _result(config, model, names, before, act_scales)


@contextlib.contextmanager
def _cpu_pin_memory_workaround():
    """llm-compressor 0.14's AWQ calls IntermediatesCache.pin_memory unconditionally (its
    activation cache pins host memory for faster GPU copies); on a machine with no accelerator
    torch raises "Cannot access accelerator device when none is available". Pinning is only a
    transfer optimisation, so on CPU-only machines, and only around the AWQ run, it becomes a
    no-op. tests/quantize/test_calibrated.py fails once the library no longer needs this."""
    if torch.cuda.is_available() or (hasattr(torch, "accelerator") and torch.accelerator.is_available()):
        yield
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, *a, **k: None
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original
