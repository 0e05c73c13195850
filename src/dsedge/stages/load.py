"""The load stage of `dsedge build`: open and check everything the build reads before any work
(checkpoint, the original of an imported one, target and budgets, destination, host memory,
tokenizer, eval data) and hand on one typed value."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .. import reference
from ..artifact import Artifact
from ..check.accuracy import EvalData, eval_from_stream, load_eval
from ..errors import CheckpointError, HostMemoryError, UsageError
from ..options import QUICK_TASK, QUICK_WINDOWS, BuildOptions
from ..plan.host import TRUNCATED_LAYERS, HostPlan, plan_host
from ..quantize import ImportedConfig, Int4WeightOnlyConfig, QuantConfig, WeightSource
from ..targets import apply_budget_overrides, find_target
from ..targets.schema import Target
from ..load.checkpoint import Checkpoint, open_checkpoint


@dataclass
class Loaded:
    ckpt: Checkpoint
    ref_ckpt: Checkpoint | None     # --reference: the original an imported checkpoint was quantized from
    is_reference: bool              # the bundled reference checkpoint
    quant: QuantConfig              # the config every later stage reads (ImportedConfig for an import)
    target: Target
    out: Artifact
    plan: HostPlan
    tokenizer: object
    data: EvalData
    source: WeightSource            # FP16-rounded float weights, one tensor at a time
    ref_weights: object = None      # the same of ref_ckpt (key -> tensor), or None
    kv_cache: str = "fp16"          # --kv-cache


def default_output(model_name: str, quant: QuantConfig, target: str) -> Path:
    return Path("artifacts") / f"{model_name}-{quant.label()}-{target}"


def finite(key: str, t: torch.Tensor) -> torch.Tensor:
    """t, after checking it holds no NaN / Inf: one max over |t| (NaN propagates through it),
    4-5 x faster than isfinite().all() on BF16 / FP16 tensors."""
    if t.is_floating_point() and t.numel() and not torch.isfinite(t.abs().amax()):
        bad = "NaN" if torch.isnan(t).any() else "Inf"
        raise CheckpointError(f"weight {key} contains {bad} values",
                              "the checkpoint is corrupt (or overflowed when converted): use a clean copy")
    return t


def fp16_weights(ckpt: Checkpoint):
    """state-dict key -> the tensor memory-mapped, rounded to FP16 (the reference precision)
    whatever the checkpoint's dtype, in FP16 storage: its users compute in FP32 (.float() where
    they need it, quantize/rtn.py, per row block), and the exporter writes FP16
    initializers from it without an FP32 copy of the whole tensor (4 B per value more on the
    151,936-row embeddings of the Qwen distills). Checked after rounding: an FP32 value beyond
    FP16's range is an Inf in the graph."""
    return lambda key: finite(key, ckpt.tensor(key).to(torch.float16))


def load_stage(o: BuildOptions) -> Loaded:
    is_reference = o.model is None
    ckpt = open_checkpoint(reference.checkpoint_path() if is_reference else o.model, o.allow_pickle)
    quant = o.quant or Int4WeightOnlyConfig()
    if ckpt.prequant is not None:  # an imported GPTQ / AWQ / compressed-tensors checkpoint
        if o.quant is not None:
            raise UsageError(f"{ckpt.name} is already quantized ({ckpt.prequant.label()}, "
                             f"{ckpt.prequant.format}); it is imported as it is",
                             "drop --method / --bits / --group-size (pass --reference ORIGINAL for accuracy)")
        quant = ImportedConfig(ckpt.prequant)
    ref_ckpt = open_checkpoint(o.reference_model, o.allow_pickle) if o.reference_model else None
    if ref_ckpt is not None and ckpt.prequant is None:
        raise UsageError("--reference is for imported (already quantized) checkpoints",
                         "drop --reference: dsedge quantizes --model itself and compares with it")
    tgt = apply_budget_overrides(find_target(o.target, o.targets_dir, o.jetpack), o.budgets)
    inputs = [ckpt.path, ref_ckpt.path if ref_ckpt else None, None if o.eval_self else o.eval_path,
              o.calib_spec if o.calib_spec is not None and Path(o.calib_spec).exists() else None]
    out = Artifact(Path(o.output) if o.output else default_output(ckpt.name, quant, tgt.name), o.overwrite,
                   protected=tuple(Path(p) for p in inputs if p is not None))
    out.check_destination()
    try:
        return _load_rest(o, ckpt, ref_ckpt, is_reference, quant, tgt, out)
    except BaseException:
        out.release()
        raise


def _load_rest(o: BuildOptions, ckpt, ref_ckpt, is_reference, quant, tgt, out) -> Loaded:
    ckpt.validate()
    if getattr(quant, "needs_fit", False):   # --fit: refused before any work
        from ..fit.units import fittable

        why = fittable(ckpt.spec)
        if why:
            raise UsageError(f"--fit does not take {ckpt.name}: {why}",
                             "build it with --method rtn, gptq or awq (one precision for every linear)")
    plan = _host_plan(ckpt, o, quant)
    if getattr(quant, "method", None) == "fit" and plan.scope != "full":
        raise UsageError(f"--fit measures every unit on the whole model in PyTorch; this build would check "
                         f"{ckpt.name}'s first {plan.check_layers} layers only (--check {o.check_scope})",
                         "pass --check full (with --force where the host plan says it lacks the memory), or drop --fit")
    if o.kv_cache == "int8" and plan.scope != "full":   # refused before any work (stages/quantize.kv_cache_stage)
        why = ("--check truncated asks for its first layers only" if o.check_scope == "truncated" else
               f"that needs ~{plan.full_check_bytes / 2**30:.0f} GiB and this host has "
               f"{plan.available_bytes / 2**30:.0f} GiB available")
        raise HostMemoryError(f"--kv-cache int8 calibrates the cache on the whole model in PyTorch: {why}",
                              "build with --check auto on a host with that much memory (or --kv-cache fp16)")
    tokenizer = ckpt.tokenizer()
    _check_eval_window(ckpt, o.eval_window)
    few = dict(max_windows=QUICK_WINDOWS, max_task=QUICK_TASK) if o.check_scope == "quick" else {}
    windows = few.get("max_windows", o.eval_windows)
    if o.eval_self:
        data = _self_eval(ref_ckpt or ckpt, tokenizer, o.chat_template, windows, o.eval_window)
    else:
        if o.eval_path is None:  # the reference corpus: one sentence per line, trained with </s> between
            eval_file, task_file, sep = reference.eval_text_path(), reference.task_path(), "eos"
        else:
            eval_file, task_file, sep = Path(o.eval_path), None, o.eval_separator
        if o.chat_template:   # each line one user turn, as the chat model sees a prompt
            sep = "chat"
        data = load_eval(tokenizer, eval_file, task_file, window=o.eval_window, separator=sep,
                         **{**few, "max_windows": windows})
    if few:
        data.shortcut = (f"--check quick: the eval's first {QUICK_WINDOWS} windows and {QUICK_TASK} task examples "
                         f"only (--eval-windows {o.eval_windows} and 100 otherwise); the ONNX-vs-PyTorch and "
                         "greedy checks are unchanged")
    return Loaded(ckpt, ref_ckpt, is_reference, quant, tgt, out, plan, tokenizer, data,
                  WeightSource(tensor=fp16_weights(ckpt), open_checkpoint=open_checkpoint), fp16_weights(ref_ckpt) if ref_ckpt else None,
                  o.kv_cache)


def _check_eval_window(ckpt: Checkpoint, window: int) -> None:
    limit = ckpt.raw_config.get("max_position_embeddings")
    if isinstance(limit, int) and window > limit:
        raise UsageError(f"--eval-window {window} is longer than the model's max_position_embeddings ({limit})",
                         f"use --eval-window {limit} or less")


def _self_eval(ckpt: Checkpoint, tokenizer, chat_template: bool | None, windows: int, window: int = 128) -> EvalData:
    """`--eval self`: eval windows the FP16 model samples itself (the `self` calibration recipe's
    prompts, another seed), from the reference checkpoint where one is given."""
    from ..calib.recipes import self_eval_stream
    from .quantize import round_to_fp16

    stream = self_eval_stream(tokenizer, lambda: round_to_fp16(ckpt.load_model(torch.float32)),
                              windows * window, chat_template)
    return eval_from_stream(tokenizer, stream, window, windows)


def _host_plan(ckpt: Checkpoint, o: BuildOptions, quant: QuantConfig) -> HostPlan:
    plan = plan_host(ckpt, available=None if o.max_memory_gb is None else int(o.max_memory_gb * 2**30), quant=quant)
    if o.check_scope in ("full", "truncated"):     # quick: the scope auto picks, on fewer eval windows
        plan.scope = o.check_scope
        plan.check_layers = ckpt.n_layers if o.check_scope == "full" else min(ckpt.n_layers, TRUNCATED_LAYERS)
    if not plan.fits and not o.force:
        d = plan.describe()
        raise HostMemoryError(
            f"{plan.shortfall()}, this host has {d['available_gib']:.1f} GiB available",
            "free memory or use a bigger host (or --method rtn / int8, which stream one tensor at a time); "
            "--force tries anyway" if plan.quantize_bytes >= plan.peak_bytes else
            "free memory or use a bigger host; --force tries anyway")
    return plan
