"""The quantize stage of `dsedge build`: the config's handler over the checkpoint's linears (or
an imported checkpoint's own codes), the tensors the graph and the PyTorch check then read, and the
per-layer error measured as each weight is produced."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..calib import CalibData
from ..calib.recipes import resolve_calibration
from ..quantize import ImportedConfig, QuantResult, quantize_model
from ..quantize.layer_errors import LayerErrors


@dataclass
class Quantized:
    result: QuantResult
    weights_of: Callable[[str], torch.Tensor]   # state-dict key -> the float tensor the graph holds
    qweights: LayerErrors                       # the quantized linears, SQNR recorded as produced
    layers_note: str | None                     # why no per-layer SQNR, where there is none
    calib: CalibData | None
    kv_scales: dict | None = None               # --kv-cache int8: past_key_values.* -> (H, D) scales
    kv_calib: str | None = None                 # what they were calibrated on
    fit: dict | None = None                     # --fit: the fit stage's record (stages/fit.py)


def quantize_stage(job, calib_spec, chat_template: bool | None = None) -> Quantized:
    """job: the load stage's Loaded. chat_template: render the calibration records through the
    tokenizer's chat template (None: as the recipe says)."""
    ckpt, quant, source = job.ckpt, job.quant, job.source
    calib = None
    if quant.needs_model:
        # Calibrated methods need the whole model (FP32 on FP16-rounded weights, its own copy:
        # the library edits it) and calibration data; peak memory is that model plus one
        # layer's calibration activations (see quantize/backends/llmcompressor.py).
        # One load for both: a `generate` recipe (--calib self) only samples from the model, then
        # the library gets that same model to edit.
        kept = {}

        def fp16_model():
            m = kept.pop("m", None)
            return m if m is not None else round_to_fp16(ckpt.load_model(torch.float32))
        calib = resolve_calibration(calib_spec, job.tokenizer, chat_template=chat_template,
                                    model=lambda: kept.setdefault("m", fp16_model()))
        source.model = fp16_model
    if isinstance(quant, ImportedConfig):  # nothing to quantize: the codes come from the checkpoint
        qres = QuantResult(quant, ckpt.prequant.weights)
    else:
        qres = quantize_model(quant, source, ckpt.spec, ckpt.n_layers,
                              lambda n: ckpt.index[f"{n}.weight"].shape[1], calib, ckpt.raw_config)
    if calib is not None:
        round_scales_to_fp16(qres)
    # what the graph and the PyTorch check read: the method's changed tensors (smoothed norms), else the checkpoint's
    weights_of = source.tensor if not qres.tensors else (
        lambda key: qres.tensors[key].float() if key in qres.tensors else source.tensor(key))
    float_of, note = _sqnr_source(quant, qres, source.tensor, job.ref_weights)
    return Quantized(qres, weights_of, LayerErrors(qres.weights, float_of), note, calib)


def kv_cache_stage(job, q: Quantized, calib_spec, chat_template: bool | None = None) -> dict | None:
    """--kv-cache int8: the cache's static scales, measured on the calibration windows (the
    method's own, else the --calib recipe's) through the model with the quantized weights applied:
    the caches the artifact will hold. None for an FP16 cache."""
    if job.kv_cache != "int8":
        return None
    from ..quantize import apply_act_fake_quant, apply_fake_quant, apply_tensors
    from ..quantize.kv_cache import calibrate

    calib = q.calib or resolve_calibration(calib_spec, job.tokenizer, chat_template=chat_template,
                                           model=lambda: round_to_fp16(job.ckpt.load_model(torch.float32)))
    model = round_to_fp16(job.ckpt.load_model(torch.float32)).eval()
    apply_tensors(model, q.result.tensors)
    apply_fake_quant(model, q.qweights)
    apply_act_fake_quant(model, q.result.act_scales)
    q.kv_calib = f"{calib.source} {tuple(calib.input_ids.shape)}"
    return calibrate(model, calib.input_ids)


def _sqnr_source(quant, qres: QuantResult, float_weights, reference_weights) -> tuple[Callable | None, str | None]:
    """The float weights each quantized weight is compared with for per-layer SQNR, or None and why not."""
    if not qres.weights:
        return None, "no quantized linears (FP16 build)"
    if isinstance(quant, ImportedConfig):
        if reference_weights is None:
            return None, "imported checkpoint without --reference: no float weights to compare with"
        return reference_weights, None
    if qres.tensors:  # AWQ / SmoothQuant scale the weights and fold the inverse into the norms
        return None, (f"{quant.method} rescales each linear's input channels before quantizing (folded into the "
                      "norms): its quantized weights are not comparable with the checkpoint's")
    return float_weights, None


def round_scales_to_fp16(qres: QuantResult) -> None:
    """Libraries return FP32 scales; the graph stores FP16 ones. Round them here so the PyTorch
    check and the ONNX graph use the same values (a change of at most 2^-11 relative)."""
    for w in qres.weights.values():
        w.scale = w.scale.half().float()
    qres.act_scales = {k: float(torch.tensor(v).half()) for k, v in qres.act_scales.items()}


def round_to_fp16(model):
    """FP32 parameters rounded to FP16 values, in place (FP16-stored ones already are)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dtype == torch.float32:
                p.copy_(p.half().float())
    return model


__all__ = ["Quantized", "quantize_stage", "round_to_fp16", "round_scales_to_fp16"]
