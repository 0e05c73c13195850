"""The Python API. The CLI is a thin face over these functions.

    import dsedge
    result = dsedge.build("path/to/DeepSeek-R1-Distill-Qwen-1.5B", target="orin",
                          quant=dsedge.Int4WeightOnlyConfig(group_size=128))
    result.path, result.report["onnx"]["perplexity"]
"""
from __future__ import annotations

import contextlib
import copy
import json
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
from .check import ACCURACY_LEVEL, OnnxDecoder, evaluate, load_eval, measure_latency, validate_export
from .cache import StageCache, cache_key
from .engine.stage import engine_stage
from .export import OPSET, TOLERANCE, ExportResult, export_onnx
from .load import open_checkpoint
from .load.checkpoint import CONFIG_FILES, TOKENIZER_FILES
from .plan import plan_host
from .plan.host import TRUNCATED_LAYERS
from .quantize import Int4WeightOnlyConfig, QuantConfig, WeightSource, apply_fake_quant, quantize_model
from .report import write_reports
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
          eval_separator: str = "newline", allow_pickle: bool = False, overwrite: bool = False, targets_dir: Path | None = None,
          latency: bool = True, generate_tokens: int = 16, force: bool = False,
          check_scope: str = "auto", use_cache: bool = True, max_memory_gb: float | None = None,
          budgets: list[str] | tuple[str, ...] = (), build_engine: bool = True, stage: StageHook | None = None) -> BuildResult:
    """Load, quantize, export to ONNX, validate against PyTorch, check accuracy; write an artifact.

    model: a checkpoint folder or hub id; None builds the bundled reference checkpoint.
    eval_separator: how lines of an --eval file are joined: "newline" (continuous text) or "eos"
    (one document per line). The bundled reference eval text always uses "eos".
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
        qres = quantize_model(quant, source, ckpt.spec, ckpt.n_layers,
                              lambda n: ckpt.index[f"{n}.weight"].shape[1])

    with out as staging, torch.no_grad(), tempfile.TemporaryDirectory(dir=staging.parent,
                                                                      prefix=f".{out.path.name}.check-") as scratch:
        with timed("export"):
            key = cache_key("export", ckpt.sha256(), quant.to_dict(), dtype, OPSET, __version__)
            entry = cache.get("export", key)
            if entry:
                meta = cache.restore(entry, staging, "export")
                exp = ExportResult(path=staging / "model.onnx", **meta)
            else:
                exp = export_onnx(ckpt.config, source.tensor, qres.weights, qres.spec, staging / "model.onnx", act_dtype)
                cache.put("export", key, sorted(staging.glob("model.onnx*")),
                          {k: v for k, v in exp.__dict__.items() if k != "path"})
            for f in TOKENIZER_FILES + CONFIG_FILES:
                if (ckpt.path / f).exists():
                    shutil.copy2(ckpt.path / f, staging / f)

        with timed("validate"):
            full = plan.scope == "full"
            # FP16 reference weights, run in FP32; the whole model, or its first layers + head
            ref_model = _round_to_fp16(ckpt.load_model(torch.float32, layers=None if full else plan.check_layers))
            if full:
                checked_onnx = exp.path
            else:  # the same weights, first layers only, exported the same way
                checked_onnx = export_onnx(ref_model.config, source.tensor, qres.weights, qres.spec,
                                           Path(scratch) / "truncated.onnx", act_dtype).path
            q_model = apply_fake_quant(copy.deepcopy(ref_model) if full else ref_model, qres.weights,
                                       only=_module_names(ref_model))
            decoder = OnnxDecoder(checked_onnx)
            atol, rtol = TOLERANCE[act_dtype]
            fidelity = validate_export(decoder, q_model, atol, rtol)
            gen = _greedy_agreement(decoder, q_model, data, generate_tokens, atol + rtol * fidelity.max_abs_logit)

        with timed("check"):
            metrics, lat = None, None
            if full:
                metrics = evaluate({"fp16_reference": _torch_logits(ref_model), "pytorch": _torch_logits(q_model),
                                    "onnx": decoder.logits}, data, reference="fp16_reference")
                lat = measure_latency(decoder, vocab=ckpt.config.vocab_size) if latency else None
            del decoder, ref_model, q_model

        with timed("engine"):
            compat, engine = engine_stage(staging, tgt, targets_dir, build=build_engine)

        report = _report(ckpt, is_reference, tgt, quant, qres, exp, fidelity, metrics, gen, lat, data, times,
                         staging, plan)
        report["tensorrt_compat"], report["engine"] = compat, engine
        report["reused_stages"] = cache.reused
        report["budgets"] = budget_table(estimate_budgets(
            json.loads((ckpt.path / "config.json").read_text()), tgt, quant.method, quant.bits,
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
            eval=data.describe(), check={"onnxruntime_qdq_matmulnbits_accuracy_level": ACCURACY_LEVEL,
                                         "scope": plan.scope, "layers": plan.check_layers})
    return BuildResult(out.path, report, manifest)


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


def _greedy_agreement(decoder: OnnxDecoder, model, data, n: int, tolerance: float) -> dict:
    """Greedy tokens through the ONNX KV cache against PyTorch's on the same weights.

    Where the two first part, PyTorch's logit margin between its token and ONNX's is recorded:
    a margin within the export tolerance is a near-tie that FP16 activations may flip (names in
    the reference corpus are near-equiprobable), anything larger is a real disagreement."""
    prompts = data.windows[:4, :16]                                       # (4, 16)
    onnx_tokens = decoder.generate(prompts, n)
    torch_tokens, torch_logits = torch_greedy(model, torch.from_numpy(prompts), n)
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
        "quantization": {**quant.to_dict(), "label": quant.label(), "quantized_linears": len(qres.weights),
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
    if metrics:
        ref, onnx_m = metrics["fp16_reference"], metrics["onnx"]
        r.update({"fp16_reference": ref.to_dict(), "pytorch": metrics["pytorch"].to_dict(), "onnx": onnx_m.to_dict(),
                  "ppl_change_pct": round(100 * (onnx_m.perplexity / ref.perplexity - 1), 4)})
    return r


def load_report(artifact: Path) -> dict:
    return json.loads((Path(artifact) / "report.json").read_text())
