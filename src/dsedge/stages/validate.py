"""The validate stage of `dsedge build`: the exported graph (or, where the build's own graph is
not what can be checked here, the same weights exported as a check variant) against the
fake-quantized PyTorch model, step by step and by greedy decoding."""
from __future__ import annotations

import copy
import gc
from dataclasses import dataclass
from pathlib import Path

import torch

from ..check.fidelity import Fidelity, compare_with, torch_reference
from ..check.session import OnnxDecoder
from ..export import TOLERANCE, export_onnx
from ..load.lean import lean_model
from ..quantize import apply_act_fake_quant, apply_fake_quant, apply_tensors
from ..quantize.kv_cache import int8_cache_factory
from ..check.greedy import greedy_agreement, torch_greedy
from .quantize import round_to_fp16


@dataclass
class Validated:
    fidelity: Fidelity
    greedy: dict
    fp32_variant: bool              # the graph checked is an FP32 variant of the artifact's (W8A8)
    decoder: OnnxDecoder | None     # that graph's session (the check stage measures with it)
    ref_model: object = None        # full scope: the FP16 reference in PyTorch (FP32 compute)
    q_model: object = None          # full scope: the same with the quantized weights applied

    def release(self) -> None:
        self.decoder = self.ref_model = self.q_model = None


def validate_stage(job, q, exp, act_dtype: torch.dtype, scratch: Path, cache, generate_tokens: int) -> Validated:
    """job: Loaded; q: Quantized; exp: the export's ExportResult."""
    ckpt, plan, qres = job.ckpt, job.plan, q.result
    full = plan.scope == "full"
    layers = None if full else plan.check_layers
    # INT8 activations (W8A8) in an FP16 graph flip codes at rounding boundaries against the
    # FP32 PyTorch reference: such graphs are checked through an FP32 variant (same weights
    # and scales), and the report says so.
    check_dtype = torch.float32 if qres.act_scales else act_dtype
    if full and check_dtype == act_dtype:
        checked_onnx = exp.path
    else:  # the same weights (first layers only when truncated), exported the same way, before
        # the PyTorch model is loaded: the export's one tensor in flight never sits beside it
        config = ckpt.config if full else ckpt.truncated_config(layers)
        checked_onnx = export_onnx(config, q.weights_of, q.qweights, qres.spec, scratch / "check.onnx",
                                   check_dtype, act_scales=qres.act_scales, cache=cache, kv_scales=q.kv_scales).path
    # FP16 reference weights, run in FP32; the whole model, or its first layers + head
    ref_model = _reference(ckpt, job.source.tensor, layers)
    q_model = copy.deepcopy(ref_model) if full and job.ref_ckpt is None else ref_model
    if job.ref_ckpt is not None:  # the original the imported checkpoint was quantized from
        ref_model = _reference(job.ref_ckpt, job.ref_weights, layers)
    modules = {name for name, _ in ref_model.named_modules()}
    apply_tensors(q_model, qres.tensors)
    apply_fake_quant(q_model, q.qweights, only=modules)
    apply_act_fake_quant(q_model, qres.act_scales, only=modules)
    # PyTorch first: on the truncated scope the models are freed before onnxruntime loads the
    # graph (on a 7B checkpoint both hold the FP32/FP16 embedding and head).
    # an INT8 cache: PyTorch decodes through the same fake-quantized cache (quantize/kv_cache.py)
    new_cache = int8_cache_factory(q_model.config, q.kv_scales) if q.kv_scales else None
    steps = torch_reference(q_model, new_cache=new_cache)
    prompts = job.data.windows[:4, :16]                                   # (4, 16)
    torch_gen = torch_greedy(q_model, torch.from_numpy(prompts), generate_tokens, new_cache)
    if not full:
        q_model = ref_model = None
        gc.collect()
    decoder = OnnxDecoder(checked_onnx, arena=False)
    atol, rtol = TOLERANCE[check_dtype]
    fidelity = compare_with(decoder, *steps, atol, rtol, q.kv_scales)
    gen = greedy_agreement(decoder, prompts, *torch_gen, atol + rtol * fidelity.max_abs_logit)
    return Validated(fidelity, gen, check_dtype != act_dtype, decoder, ref_model, q_model)


def _reference(ckpt, fp16_tensor, layers: int | None):
    """The FP16-rounded model in FP32: whole, or its first `layers` layers with the embedding and
    head in FP16 storage (load/lean.py) where the checkpoint's layout allows."""
    if layers is not None:
        model = lean_model(ckpt, layers, fp16_tensor)
        if model is not None:
            return model
    return round_to_fp16(ckpt.load_model(torch.float32, layers=layers))
