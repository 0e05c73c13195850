"""The Python API. The CLI is a thin face over these functions.

    import dsedge
    result = dsedge.build("path/to/DeepSeek-R1-Distill-Qwen-1.5B", target="orin",
                          quant=dsedge.Int4WeightOnlyConfig(group_size=128))
    result.path, result.report["onnx"]["perplexity"]
"""
from __future__ import annotations

import contextlib
import copy
import gc
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import torch

from . import __version__, reference
from .artifact import Artifact, write_manifest
from .errors import CheckpointError, HostMemoryError, UsageError
from .check import ACCURACY_LEVEL, OnnxDecoder, evaluate, load_eval, measure_latency
from .check.fidelity import compare_with, torch_reference
from .cache import CachedLogits, StageCache, cache_key
from .engine.stage import engine_stage
from .export import OPSET, TOLERANCE, ExportResult, export_onnx
from .load import open_checkpoint
from .load.checkpoint import CONFIG_FILES, TOKENIZER_FILES
from .plan import plan_host
from .plan.host import TRUNCATED_LAYERS
from .calib.recipes import resolve_calibration
from .quantize import (Int4WeightOnlyConfig, QuantConfig, QuantResult, WeightSource, apply_act_fake_quant, apply_fake_quant,
                       apply_tensors, quantize_model)
from .quantize.calibrated import CalibratedConfig
from .report import write_reports
from .report.layers import LayerErrors
from .plan.budget import budget_table, estimate_budgets, missed_budgets
from .targets import apply_budget_overrides, find_target

StageHook = Callable[[str], ContextManager]
STAGES = ("load", "quantize", "export", "validate", "check", "engine")
_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass
class BuildResult:
    path: Path
    report: dict
    manifest: dict


def default_output(model_name: str, quant: QuantConfig, target: str) -> Path:
    return Path("artifacts") / f"{model_name}-{quant.label()}-{target}"


def build(model: str | Path | None = None, target: str = "orin", quant: QuantConfig | None = None,
          output: str | Path | None = None, eval_path: str | Path | None = None, dtype: str = "float16",
          eval_separator: str = "newline", reference_model: str | Path | None = None, calib_spec: str | Path | None = None, allow_pickle: bool = False, overwrite: bool = False, targets_dir: Path | None = None,
          latency: bool = True, generate_tokens: int = 16, force: bool = False,
          check_scope: str = "auto", use_cache: bool = True, max_memory_gb: float | None = None,
          budgets: list[str] | tuple[str, ...] = (), build_engine: bool = True, stage: StageHook | None = None) -> BuildResult:
    """Load, quantize, export to ONNX, validate against PyTorch, check accuracy; write an artifact.

    model: a checkpoint folder or hub id; None builds the bundled reference checkpoint.
    eval_separator: how lines of an --eval file are joined: "newline" (continuous text) or "eos"
    (one document per line). The bundled reference eval text always uses "eos".
    reference_model: for an imported (already quantized) checkpoint, the original it came from:
    accuracy is then measured against it; without it, perplexity only.
    calib_spec: calibration for gptq / awq / smoothquant: a recipe name (calibration/*.yaml), a
    recipe file, or a .txt / .jsonl file; None: the reference recipe.
    check_scope: "auto" (full checks when the model fits this host twice in FP32, else
    validation on the first layers only), "full" or "truncated".
    force: build even when the planner predicts the host's memory is too small.
    use_cache: reuse finished stages of an identical earlier build (see dsedge.cache).
    max_memory_gb: plan as if this host had only this much memory available.
    build_engine: build the TensorRT engine when this machine can (else build_engine.sh is written).
    budgets: overrides of the target's budgets, "NAME=VALUE" (after ./dsedge.yaml's `budgets:`).
    stage: optional hook, called as `with stage(name):` around each of STAGES (progress bars).
    """
    stage = stage or (lambda name: contextlib.nullcontext())
    user_quant = quant
    quant = quant or Int4WeightOnlyConfig()
    if dtype not in _DTYPES:
        raise UsageError(f"--dtype {dtype} is not supported", "use float16 (TensorRT) or float32")
    if check_scope not in ("auto", "full", "truncated"):
        raise UsageError(f"--check {check_scope} is not one of auto, full, truncated", "use --check auto")
    act_dtype = _DTYPES[dtype]
    cache = StageCache(enabled=use_cache)
    _quiet_libraries()
    t_start = time.perf_counter()
    times: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(name):
        t = time.perf_counter()
        with stage(name):
            yield
        times[name] = round(time.perf_counter() - t, 3)

    with timed("load"):
        is_reference = model is None
        ckpt = open_checkpoint(reference.checkpoint_path() if is_reference else model, allow_pickle)
        if ckpt.prequant is not None:  # an imported GPTQ / AWQ / compressed-tensors checkpoint
            if user_quant is not None:
                raise UsageError(f"{ckpt.name} is already quantized ({ckpt.prequant.label()}, "
                                 f"{ckpt.prequant.format}); it is imported as it is",
                                 "drop --method / --bits / --group-size (pass --reference ORIGINAL for accuracy)")
            quant = ImportedConfig(ckpt.prequant)
        ref_ckpt = open_checkpoint(reference_model, allow_pickle) if reference_model else None
        if ref_ckpt is not None and ckpt.prequant is None:
            raise UsageError("--reference is for imported (already quantized) checkpoints",
                             "drop --reference: dsedge quantizes --model itself and compares with it")
        tgt = apply_budget_overrides(find_target(target, targets_dir), budgets)
        out = Artifact(Path(output) if output else default_output(ckpt.name, quant, tgt.name), overwrite)
        out.check_destination()
        ckpt.validate()
        plan = plan_host(ckpt, available=None if max_memory_gb is None else int(max_memory_gb * 2**30))
        if check_scope != "auto":
            plan.scope = check_scope
            plan.check_layers = ckpt.n_layers if check_scope == "full" else min(ckpt.n_layers, TRUNCATED_LAYERS)
        if not plan.fits and not force:
            d = plan.describe()
            raise HostMemoryError(
                f"this build needs about {plan.peak_bytes / 2**30:.1f} GiB of memory, "
                f"this host has {d['available_gib']:.1f} GiB available",
                "free memory or use a bigger host; --force tries anyway")
        tokenizer = ckpt.tokenizer()
        if eval_path is None:  # the reference corpus: one sentence per line, trained with </s> between
            eval_file, task_file, sep = reference.eval_text_path(), reference.task_path(), "eos"
        else:
            eval_file, task_file, sep = Path(eval_path), None, eval_separator
        data = load_eval(tokenizer, eval_file, task_file, separator=sep)
        # Every stage reads weights through this: memory-mapped, one tensor at a time, rounded to
        # FP16 (the reference precision) whatever the checkpoint's dtype.
        source = WeightSource(tensor=lambda key: _finite(key, ckpt.tensor(key)).to(torch.float16).float())

    with timed("quantize"):
        calib = None
        if isinstance(quant, CalibratedConfig):
            # Calibrated methods need the whole model (FP32 on FP16-rounded weights, its own copy:
            # the library edits it) and calibration data; peak memory is that model plus one
            # layer's calibration activations (see quantize/backends/llmcompressor.py).
            calib = resolve_calibration(calib_spec, tokenizer)
            source.model = lambda: _round_to_fp16(ckpt.load_model(torch.float32))
        if isinstance(quant, ImportedConfig):  # nothing to quantize: the codes come from the checkpoint
            qres = QuantResult(quant, ckpt.prequant.weights)
        else:
            qres = quantize_model(quant, source, ckpt.spec, ckpt.n_layers,
                                  lambda n: ckpt.index[f"{n}.weight"].shape[1], calib, ckpt.raw_config)
        if calib is not None:
            _round_scales_to_fp16(qres)
        # what the graph and the PyTorch check read: the method's changed tensors (smoothed norms), else the checkpoint's
        weights_of = source.tensor if not qres.tensors else (
            lambda key: qres.tensors[key].float() if key in qres.tensors else source.tensor(key))
        float_of, layers_note = _sqnr_source(quant, qres, source, ref_ckpt)
        # the same weights, with each one's SQNR recorded the first time it is produced
        qweights = LayerErrors(qres.weights, float_of)

    with out as staging, torch.no_grad(), tempfile.TemporaryDirectory(dir=staging.parent,
                                                                      prefix=f".{out.path.name}.check-") as scratch:
        with timed("export"):
            key = cache_key("export", ckpt.sha256(), quant.to_dict(), dtype, OPSET, __version__,
                            calib.describe() if calib else None)
            entry = cache.get("export", key)
            if entry:
                meta = cache.restore(entry, staging, "export")
                exp = ExportResult(path=staging / "model.onnx", **meta)
            else:
                exp = export_onnx(ckpt.config, weights_of, qweights, qres.spec, staging / "model.onnx", act_dtype,
                                  act_scales=qres.act_scales, cache=cache)
            for f in TOKENIZER_FILES + CONFIG_FILES:
                if (ckpt.path / f).exists():
                    shutil.copy2(ckpt.path / f, staging / f)
        # cached once the stage has ended: an interrupt Python deferred during the export (one that
        # landed in a __del__) is raised at the stage boundary, before anything is cached
        if not entry:
            cache.put("export", key, sorted(staging.glob("model.onnx*")),
                      {k: v for k, v in exp.__dict__.items() if k != "path"})

        with timed("validate"):
            full = plan.scope == "full"
            # FP16 reference weights, run in FP32; the whole model, or its first layers + head
            layers = None if full else plan.check_layers
            ref_model = _round_to_fp16(ckpt.load_model(torch.float32, layers=layers))
            # INT8 activations (W8A8) in an FP16 graph flip codes at rounding boundaries against the
            # FP32 PyTorch reference: such graphs are checked through an FP32 variant (same weights
            # and scales), and the report says so.
            check_dtype = torch.float32 if qres.act_scales else act_dtype
            if full and check_dtype == act_dtype:
                checked_onnx = exp.path
            else:  # the same weights (first layers only when truncated), exported the same way
                checked_onnx = export_onnx(ref_model.config, weights_of, qweights, qres.spec,
                                           Path(scratch) / "check.onnx", check_dtype, act_scales=qres.act_scales,
                                           cache=cache).path
            q_model = copy.deepcopy(ref_model) if full and ref_ckpt is None else ref_model
            if ref_ckpt is not None:  # the original the imported checkpoint was quantized from
                ref_model = _round_to_fp16(ref_ckpt.load_model(torch.float32, layers=layers))
            apply_tensors(q_model, qres.tensors)
            apply_fake_quant(q_model, qweights, only=_module_names(ref_model))
            apply_act_fake_quant(q_model, qres.act_scales, only=_module_names(ref_model))
            # PyTorch first: on the truncated scope the models are freed before onnxruntime loads
            # the graph (on a 7B checkpoint both hold the FP32/FP16 embedding and head).
            steps = torch_reference(q_model)
            prompts = data.windows[:4, :16]                                   # (4, 16)
            torch_gen = torch_greedy(q_model, torch.from_numpy(prompts), generate_tokens)
            if not full:
                del q_model, ref_model
                gc.collect()
            decoder = OnnxDecoder(checked_onnx)
            atol, rtol = TOLERANCE[check_dtype]
            fidelity = compare_with(decoder, *steps, atol, rtol)
            gen = _greedy_agreement(decoder, prompts, *torch_gen, atol + rtol * fidelity.max_abs_logit)

        with timed("check"):
            metrics, lat = None, None
            if full:
                if isinstance(quant, ImportedConfig) and ref_ckpt is None:  # no original to compare with
                    metrics = evaluate({"pytorch": _torch_logits(q_model), "onnx": decoder.logits}, data)
                else:
                    src = ref_ckpt or ckpt
                    ref_logits = CachedLogits(_torch_logits(ref_model), cache,
                                              cache_key("reference_logits", src.sha256(), data.describe(), __version__))
                    metrics = evaluate({"fp16_reference": ref_logits, "pytorch": _torch_logits(q_model),
                                        "onnx": decoder.logits}, data, reference="fp16_reference")
                    ref_logits.save(Path(scratch))
                lat = measure_latency(decoder, vocab=ckpt.config.vocab_size) if latency else None
                del ref_model, q_model
            del decoder

        with timed("engine"):
            compat, engine = engine_stage(staging, tgt, targets_dir, build=build_engine)

        qweights.complete()  # weights a cached export or a truncated check did not produce
        report = _report(ckpt, is_reference, tgt, quant, qres, exp, fidelity, metrics, gen, lat, data, times,
                         staging, plan)
        report["layers"], report["layers_note"] = qweights.to_list(), layers_note
        if qres.expert_tokens is not None:
            report["calibration_expert_tokens"] = {
                "routed": qres.expert_tokens, "samples": calib.describe().get("samples") if calib else None,
                "note": "tokens the FP16 routers send to each expert over the calibration data; the method's "
                        "statistics use every calibration token for every expert (llm-compressor "
                        "moe_calibrate_all_experts), so an expert the router never picks is still calibrated"}
        if ckpt.spec.moe is not None:  # weight bytes a decoded token reads, per MoE form, from the graph
            from .export.deepseek_v2 import weight_bytes_per_token

            report["moe_decode_weight_bytes"] = weight_bytes_per_token(
                exp.path, int(ckpt.raw_config[ckpt.spec.moe.top_k_key]))
        if check_dtype != act_dtype:
            report["graph_checked"].update(
                activations="float32", file=report["graph_checked"]["file"] + " (FP32 variant: the artifact's "
                "FP16 graph with INT8 activations flips activation codes at rounding boundaries against the FP32 "
                "PyTorch reference; same weights and scales)")
        report["tensorrt_compat"], report["engine"] = compat, engine
        report["reused_stages"] = cache.reused
        report["budgets"] = budget_table(estimate_budgets(
            json.loads((ckpt.path / "config.json").read_text()), tgt, getattr(quant, "plan_method", quant.method),
            quant.bits,
            report["ppl_change_pct"]), tgt)
        report["budgets_missed"] = missed_budgets(report["budgets"])
        times["total"] = round(time.perf_counter() - t_start, 3)
        write_reports(staging, report)
        manifest = write_manifest(
            staging, dsedge_version=__version__,
            source={"model": str(ckpt.path), "name": ckpt.name, "architecture": ckpt.architecture,
                    "sha256": ckpt.sha256(), "reference_checkpoint": is_reference},
            quantization=quant.to_dict(),
            target={"name": tgt.name, "file": tgt.source_file, "budgets": tgt.budgets.model_dump()},
            export={"opset": exp.opset, "dtype": exp.dtype, "external_data": exp.external_data},
            engine=engine,
            tensorrt_compat={"ok": compat["ok"], "tensorrt": tgt.tensorrt.version},
            calibration=calib.describe() if calib else None,
            eval=data.describe(), check={"onnxruntime_qdq_matmulnbits_accuracy_level": ACCURACY_LEVEL,
                                         "scope": plan.scope, "layers": plan.check_layers})
    return BuildResult(out.path, report, manifest)


@dataclass(frozen=True)
class ImportedConfig:
    """Stands for the quantization config of an imported checkpoint (it is not re-quantized)."""
    prequant: object
    method = "prequantized"

    @property
    def bits(self) -> int:
        return self.prequant.bits

    @property
    def plan_method(self) -> str:  # the native method with the same storage, for the planner
        return "rtn" if self.bits == 4 else "int8"

    def to_dict(self) -> dict:
        return self.prequant.to_dict()

    def label(self) -> str:
        return self.prequant.label()


def _sqnr_source(quant, qres, source, ref_ckpt) -> tuple[Callable | None, str | None]:
    """The float weights each quantized weight is compared with for per-layer SQNR, or None and why not."""
    if not qres.weights:
        return None, "no quantized linears (FP16 build)"
    if isinstance(quant, ImportedConfig):
        if ref_ckpt is None:
            return None, "imported checkpoint without --reference: no float weights to compare with"
        return (lambda key: _finite(key, ref_ckpt.tensor(key)).to(torch.float16).float()), None
    if qres.tensors:  # AWQ / SmoothQuant scale the weights and fold the inverse into the norms
        return None, (f"{quant.method} rescales each linear's input channels before quantizing (folded into the "
                      "norms): its quantized weights are not comparable with the checkpoint's")
    return source.tensor, None


def _round_scales_to_fp16(qres) -> None:
    """Libraries return FP32 scales; the graph stores FP16 ones. Round them here so the PyTorch
    check and the ONNX graph use the same values (a change of at most 2^-11 relative)."""
    for w in qres.weights.values():
        w.scale = w.scale.half().float()
    qres.act_scales = {k: float(torch.tensor(v).half()) for k, v in qres.act_scales.items()}


def _round_to_fp16(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def _module_names(model) -> set[str]:
    return {name for name, _ in model.named_modules()}


def _finite(key: str, t: torch.Tensor) -> torch.Tensor:
    if t.is_floating_point() and not torch.isfinite(t).all():
        bad = "NaN" if torch.isnan(t).any() else "Inf"
        raise CheckpointError(f"weight {key} contains {bad} values",
                              "the checkpoint is corrupt (or overflowed when converted): use a clean copy")
    return t


def _quiet_libraries() -> None:
    """transformers' loading bars and torch.onnx's registry warnings would break the progress display."""
    import logging

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # torchao (pulled in by llm-compressor / GPTQModel) warns on import about CUDA kernels it
    # cannot load on a CPU machine, and torch's pytree about its enums: noise for dsedge users.
    for name in ("torch.onnx", "torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # llm-compressor logs through loguru and draws tqdm bars per layer; dsedge shows its own stages
    os.environ.setdefault("TQDM_DISABLE", "1")
    with contextlib.suppress(ImportError):
        from loguru import logger

        for lib in ("llmcompressor", "compressed_tensors", "gptqmodel"):
            logger.disable(lib)


def _torch_logits(model):
    @torch.no_grad()
    def fn(ids: np.ndarray) -> np.ndarray:
        return model(input_ids=torch.from_numpy(ids)).logits.float().numpy()
    return fn


@torch.no_grad()
def torch_greedy(model, ids: torch.Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch greedy decoding through transformers' own KV cache (DynamicCache), n tokens,
    never stopping at EOS. -> tokens (B, n), logits at each step (B, n, V)."""
    out = model(input_ids=ids, use_cache=True)
    tokens, logits = [], []
    for _ in range(n):
        logits.append(out.logits[:, -1].float())
        nxt = out.logits[:, -1:].argmax(-1)                                # (B, 1)
        tokens.append(nxt)
        out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
    return torch.cat(tokens, 1).numpy(), torch.stack(logits, 1).numpy()


def _greedy_agreement(decoder: OnnxDecoder, prompts: np.ndarray, torch_tokens: np.ndarray,
                      torch_logits: np.ndarray, tolerance: float) -> dict:
    """Greedy tokens through the ONNX KV cache against PyTorch's on the same weights.

    Where the two first part, PyTorch's logit margin between its token and ONNX's is recorded:
    a margin within the export tolerance is a near-tie that FP16 activations may flip (names in
    the reference corpus are near-equiprobable), anything larger is a real disagreement."""
    n = torch_tokens.shape[1]
    onnx_tokens = decoder.generate(prompts, n)
    same = onnx_tokens == torch_tokens
    worst_margin = 0.0
    for b in range(len(prompts)):
        if not same[b].all():
            j = int(np.argmin(same[b]))                                    # first divergence
            margin = float(torch_logits[b, j, torch_tokens[b, j]] - torch_logits[b, j, onnx_tokens[b, j]])
            worst_margin = max(worst_margin, margin)
    return {"tokens": int(n), "prompts": int(len(prompts)), "identical": bool(same.all()),
            "matching_fraction": float(same.mean()), "worst_margin_at_divergence": worst_margin,
            "tolerance": tolerance, "agrees": bool(same.all() or worst_margin <= tolerance)}


def _report(ckpt, is_reference, tgt, quant, qres, exp, fidelity, metrics, gen, lat, data, times, staging,
            plan) -> dict:
    onnx_bytes = sum(p.stat().st_size for p in staging.glob("model.onnx*"))
    full = plan.scope == "full"
    r = {
        "dsedge_version": __version__,
        "model": {"name": ckpt.name, "architecture": ckpt.architecture, "reference_checkpoint": is_reference,
                  "layers": ckpt.n_layers, "params": plan.params},
        # identity of what was quantized, so that `dsedge gate` can refuse to compare unrelated builds
        "source": {"name": ckpt.name, "sha256": ckpt.sha256()},
        "quantization": {**quant.to_dict(), "label": quant.label(), "quantized_linears": len(qres.weights),
                         "activations": (getattr(quant, "activation_scheme", None) if qres.act_scales
                                         else "fp16 (weight-only)"),
                         "seconds": round(qres.total_seconds, 3)},
        "target": {"name": tgt.name, "tensorrt": tgt.tensorrt.version},
        "size_mb": round(onnx_bytes / 1e6, 3),
        "graph_checked": {"file": "model.onnx" if full else f"model.onnx truncated to its first {plan.check_layers} "
                                                             f"of {plan.n_layers} layers + head (same weights)",
                          "activations": exp.dtype, "runtime": "onnxruntime CPUExecutionProvider",
                          "qdq_matmulnbits_accuracy_level": ACCURACY_LEVEL},
        "host_plan": plan.describe(),
        "eval": data.describe(),
        "fp16_reference": None, "pytorch": None, "onnx": None, "ppl_change_pct": None,
        "accuracy_skipped": None if full else (
            f"the model needs ~{plan.full_check_bytes / 2**30:.0f} GiB for a full PyTorch check and this host has "
            f"{plan.available_bytes / 2**30:.0f} GiB available: the export was validated on the first "
            f"{plan.check_layers} layers; accuracy and host latency were not measured"),
        "export_fidelity": fidelity.to_dict(),
        "greedy_generation": gen,
        "host_latency": lat.to_dict() if lat else None,
        "export": {"opset": exp.opset, "ops": exp.ops, "initializers": exp.initializers,
                   "external_data": exp.external_data},
        "stage_seconds": times,
    }
    if metrics and "fp16_reference" in metrics:
        ref, onnx_m = metrics["fp16_reference"], metrics["onnx"]
        r.update({"fp16_reference": ref.to_dict(), "pytorch": metrics["pytorch"].to_dict(), "onnx": onnx_m.to_dict(),
                  "ppl_change_pct": round(100 * (onnx_m.perplexity / ref.perplexity - 1), 4)})
    elif metrics:  # an imported checkpoint without --reference: absolute figures only
        r.update({"pytorch": metrics["pytorch"].to_dict(), "onnx": metrics["onnx"].to_dict(),
                  "accuracy_note": "imported checkpoint without --reference: perplexity and task accuracy are "
                                   "absolute; no KL / top-1 / perplexity change against the original"})
    return r


def load_report(artifact: Path) -> dict:
    return json.loads((Path(artifact) / "report.json").read_text())


def compare(model: str | Path | None = None, methods: list[str] | tuple[str, ...] = ("fp16", "int8", "rtn"),
            bits: int | None = None, group_size: int | None = None, target: str = "orin",
            output: str | Path | None = None, overwrite: bool = False, progress: Callable | None = None,
            **build_options) -> tuple[list[BuildResult], list[dict], dict[str, Path]]:
    """Build `model` once per method through the same pipeline (one artifact each under `output`)
    and write compare.csv / compare.json / pareto.png there. -> (builds, table rows, files). `bits` / `group_size` apply to the
    methods that take them (fp16 keeps 16 bits, int8 8). The FP16 reference logits are computed
    by the first build and reused by the others (dsedge.cache); a rerun reuses finished stages.
    progress: optional callback(method, index, total) called before each build."""
    from .quantize import METHODS, config_from_options
    from .report.compare import compare_rows, write_compare

    # "gptq:gptqmodel" names a method and its backend, to compare two implementations of one method
    specs = [m.split(":", 1) if ":" in m else [m, None] for m in methods]
    unknown = [m for m, _ in specs if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"unknown method(s): {', '.join(unknown) or '(none given)'}",
                         f"use --methods with some of: {', '.join(METHODS)} (calibrated ones may name a backend: "
                         "gptq:gptqmodel)")
    configs = []
    for m, backend in specs:
        b = bits if m not in ("fp16", "int8") else None
        configs.append(config_from_options(m, b, group_size if m not in ("fp16", "int8") else None, backend=backend))
    if output is None:
        name = Path(str(model)).name if model else reference.DEFAULT_MODEL
        output = Path("artifacts") / f"compare-{name}-{target}"
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} exists and is a file", "pass a folder path")
    results = []
    for i, q in enumerate(configs):
        if progress:
            progress(q.label(), i, len(configs))
        results.append(build(model, target=target, quant=q, output=output / q.label(), overwrite=overwrite,
                             **build_options))
    rows = compare_rows([r.report for r in results])
    return results, rows, write_compare(rows, output)


def gate(candidate: str | Path, baseline: str | Path | None = None, thresholds: dict[str, str | None] | None = None,
         project_file: Path | None = None, junit: str | Path | None = None,
         summary: str | Path | None = None):
    """Compare `candidate` (artifact folder, report.json or baseline file) with `baseline` (the
    same kinds; default: dsedge.yaml's gate.baseline) metric by metric -> dsedge.gate.GateResult.

    thresholds: {"max_ppl_increase": "1%", "max_kl": "0.05", ...} (None values are ignored) over
    dsedge.yaml's `gate:` section (project_file, or ./dsedge.yaml) over the defaults.
    junit / summary: also write JUnit XML / Markdown there. Raises UsageError when the two cannot
    be compared (different eval data or source model); a regression is `not result.passed`."""
    from .gate import load_gateable, resolve_thresholds, run_gate, to_junit, to_markdown

    t, from_project = resolve_thresholds(thresholds, project_file)
    baseline = baseline or from_project
    if baseline is None:
        raise UsageError("no baseline given", "pass --baseline (artifact, report.json or baseline file) or set "
                                              "gate.baseline in dsedge.yaml")
    res = run_gate(load_gateable(candidate, "candidate"), load_gateable(baseline, "baseline"), t)
    for path, text in ((junit, to_junit), (summary, to_markdown)):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text(res))
    return res


def update_baseline(candidate: str | Path, baseline: str | Path | None = None,
                    project_file: Path | None = None) -> Path:
    """Write `candidate`'s gateable metrics as the baseline file `baseline` (default: dsedge.yaml's
    gate.baseline). Done on purpose, never by `gate()` itself."""
    from .gate import load_gateable, resolve_thresholds, write_baseline

    if baseline is None:
        baseline = resolve_thresholds(None, project_file)[1]
    if baseline is None:
        raise UsageError("--update-baseline needs a baseline file to write",
                         "pass --baseline dsedge-baseline.json (or set gate.baseline in dsedge.yaml)")
    return write_baseline(load_gateable(candidate, "candidate"), baseline)


def report(artifact: str | Path) -> dict[str, Path]:
    """Regenerate report.md and report.html of an artifact from its report.json (and refresh the
    manifest's file hashes). -> {"md": path, "html": path}."""
    from .artifact import read_manifest
    from .report import write_reports

    folder = Path(artifact)
    if folder.is_file() and folder.name == "report.json":
        folder = folder.parent
    if not (folder / "report.json").is_file():
        raise UsageError(f"{artifact} is not a dsedge artifact (no report.json)", "pass a folder written by dsedge build")
    try:
        data = json.loads((folder / "report.json").read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"{folder / 'report.json'} is not valid JSON ({e})", "rebuild the artifact") from None
    paths = write_reports(folder, data, json_too=False)
    if (folder / "manifest.json").is_file():  # keep the hashes of the regenerated files true (nothing else changes)
        from .load.checkpoint import file_sha256

        manifest = read_manifest(folder)
        for p in paths.values():
            manifest.setdefault("files", {})[p.name] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return paths


# Deploy stage (no torch there): `dsedge flash`, `dsedge flash --rollback`, `dsedge devices
# status`, `dsedge bench` are these functions.
from .deploy import bench, devices_status, flash, rollback  # noqa: E402,F401
