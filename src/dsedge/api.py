"""The Python API. The CLI is a thin face over these functions.

    import dsedge
    result = dsedge.build("path/to/DeepSeek-R1-Distill-Qwen-1.5B", target="orin",
                          quant=dsedge.Int4WeightOnlyConfig(group_size=128))
    result.path, result.report["onnx"]["perplexity"]
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager

from . import reference
from .errors import UsageError
from .options import BuildOptions

if TYPE_CHECKING:
    from .quantize import QuantConfig

StageHook = Callable[[str], ContextManager]
STAGES = ("load", "quantize", "export", "validate", "check", "engine")
FIT = "fit"   # `dsedge compare --methods ...,fit`: a --fit build as one row


@dataclass
class BuildResult:
    path: Path
    report: dict
    manifest: dict


def build(model: str | Path | None = None, target: str = "orin", quant: QuantConfig | None = None,
          output: str | Path | None = None, eval_path: str | Path | None = None, dtype: str = "float16",
          eval_separator: str = "newline", eval_windows: int = 32, eval_window: int = 128,
          kv_cache: str = "fp16", reference_model: str | Path | None = None,
          calib_spec: str | Path | None = None, allow_pickle: bool = False, overwrite: bool = False,
          targets_dir: Path | None = None, latency: bool = True, generate_tokens: int = 16, force: bool = False,
          check_scope: str = "auto", use_cache: bool = True, max_memory_gb: float | None = None,
          budgets: list[str] | tuple[str, ...] = (), build_engine: bool = True, chat_template: bool | None = None,
          jetpack: str | None = None, stage: StageHook | None = None) -> BuildResult:
    """Load, quantize, export to ONNX, validate against PyTorch, check accuracy; write an artifact.
    The options are dsedge.options.BuildOptions' (see there); `stage`: optional hook, called as
    `with stage(name):` around each of STAGES (progress bars)."""
    import torch

    from .cache import StageCache
    from .engine.stage import engine_stage
    from .stages.check import check_stage
    from .stages.export import cache_export, export_stage
    from .stages.load import load_stage
    from .stages.quantize import kv_cache_stage, quantize_stage
    from .stages.report import write_artifact
    from .stages.validate import validate_stage

    o = BuildOptions(model=model, target=target, quant=quant, output=output, eval_path=eval_path, dtype=dtype,
                     eval_separator=eval_separator, eval_windows=eval_windows, eval_window=eval_window,
                     kv_cache=kv_cache, reference_model=reference_model, calib_spec=calib_spec,
                     allow_pickle=allow_pickle, overwrite=overwrite, targets_dir=targets_dir, latency=latency,
                     generate_tokens=generate_tokens, force=force, check_scope=check_scope, use_cache=use_cache,
                     max_memory_gb=max_memory_gb, budgets=tuple(budgets), build_engine=build_engine,
                     chat_template=chat_template, jetpack=jetpack)
    cache, times, started = StageCache(enabled=use_cache), {}, time.perf_counter()
    timed = _timer(stage, times)
    _quiet_libraries()
    with timed("load"):
        job = load_stage(o)
    with job.out as staging, torch.no_grad(), tempfile.TemporaryDirectory(   # holds -o's lock until the end
            dir=staging.parent, prefix=f".{job.out.path.name}.check-{os.getpid()}-") as scratch:
        with timed("quantize"), torch.enable_grad():
            fit = fit_calib = None
            if getattr(job.quant, "needs_fit", False):   # --fit
                from .stages.fit import fit_stage

                job.quant, fit, fit_calib = fit_stage(job, calib_spec, chat_template)
            q = quantize_stage(job, calib_spec, chat_template)
            q.fit, q.calib = fit, q.calib or fit_calib   # the manifest records what the fit measured on
            q.kv_scales = kv_cache_stage(job, q, calib_spec, chat_template)
        with timed("export"):
            exported = export_stage(job, q, dtype, staging, cache)
        cache_export(cache, exported, staging)
        with timed("validate"):
            v = validate_stage(job, q, exported.result, o.act_dtype, Path(scratch), cache, generate_tokens)
        with timed("check"):
            checked = check_stage(job, v, cache, Path(scratch), latency, q)
        with timed("engine"):
            compat, engine = engine_stage(staging, job.target, targets_dir, build=build_engine,
                                          name=job.out.path.name)
        report, manifest = write_artifact(staging, job, q, exported, v, checked, compat, engine, cache.reused,
                                          job.out.notes + cache.notes, times, started)
    return BuildResult(job.out.path, report, manifest)


def _timer(stage: StageHook | None, times: dict):
    """`with timed(name):` runs the caller's stage hook and records the stage's seconds in `times`."""
    @contextlib.contextmanager
    def timed(name):
        t = time.perf_counter()
        with (stage or (lambda _: contextlib.nullcontext()))(name):
            yield
        times[name] = round(time.perf_counter() - t, 3)
    return timed


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
    # llm-compressor logs through loguru to stdout (which breaks --json) and draws tqdm bars per
    # layer; dsedge shows its own stages. Its import re-enables its logger, so the disable below
    # does not reach it: its console level does. (LLM_COMPRESSOR_LOG_DISABLED would also skip
    # registering its METRIC level, and GPTQ then fails logging to it.)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")
    with contextlib.suppress(ImportError):
        from loguru import logger

        for lib in ("llmcompressor", "compressed_tensors", "gptqmodel"):
            logger.disable(lib)


def plan_config(method: str | None = None, bits: int | None = None, group_size: int | None = None,
                symmetric: bool | None = None) -> "QuantConfig":
    """The config `dsedge plan` plans for: FP16 unless a method or bits below 16 is named."""
    from .quantize import Fp16Config, config_from_options

    if method is None and bits in (None, 16):
        return Fp16Config()
    return config_from_options(method, bits, group_size, symmetric)


def plan(model: str | Path | None, target: str = "orin", quant: "QuantConfig | None" = None,
         context: int | None = None, batch: int | None = None, targets_dir: Path | None = None,
         jetpack: str | None = None, kv_cache: str = "fp16"):
    """`dsedge plan`: memory of a `quant` build (None: FP16) of the model whose config.json is read
    (a folder, the file, or a hub id) on `target` -> (plan.memory.MemoryPlan, [plan.memory.Option]:
    which of FP16 / INT8 / INT4 fit)."""
    from .load.config import read_config
    from .plan.memory import options, plan_memory
    from .targets import find_target

    from .quantize.kv_cache import check_kv_dtype

    config, t = read_config(model), find_target(target, targets_dir, jetpack)
    check_kv_dtype(kv_cache)
    p = plan_memory(config, t, quant, context, batch, kv_cache)
    return p, options(config, t, p.context, p.batch, kv_cache)


def plan_fit(model: str | Path | None, target: str = "orin", context: int | None = None, batch: int | None = None,
             targets_dir: Path | None = None, jetpack: str | None = None, kv_cache: str = "fp16",
             group_size: int = 128, max_bits: float | None = None):
    """`dsedge plan --fit`: can a fitted mix meet `target` at `context`? -> (plan.memory.MemoryPlan
    of the cheapest mix, dict: the budget, the cheapest mix's bytes, the room left for INT8 / FP16)."""
    from .archs import arch_for
    from .errors import UsageError
    from .fit.budget import plan_fit as fit_plan
    from .fit.units import fittable
    from .load.config import read_config
    from .quantize import MixedPrecisionConfig
    from .quantize.kv_cache import check_kv_dtype
    from .targets import find_target

    config, t = read_config(model), find_target(target, targets_dir, jetpack)
    check_kv_dtype(kv_cache)
    MixedPrecisionConfig(group_size=group_size, context=context, max_bits=max_bits)   # validates them
    why = fittable(arch_for(config, plan_only=True))
    if why:
        raise UsageError(f"--fit does not take this model: {why}", "plan it with --bits 4 or 8 instead")
    return fit_plan(config, t, context, batch, kv_cache, group_size, max_bits)


def compare(model: str | Path | None = None, methods: list[str] | tuple[str, ...] = ("fp16", "int8", "rtn"),
            bits: int | None = None, group_size: int | None = None, target: str = "orin",
            output: str | Path | None = None, overwrite: bool = False, progress: Callable | None = None,
            fit_bits: float | None = None, context: int | None = None, **build_options) -> tuple[list[BuildResult], list[dict], dict[str, Path]]:
    """Build `model` once per method through the same pipeline (one artifact each under `output`)
    and write compare.csv / compare.json / pareto.png there. -> (builds, table rows, files). `bits` / `group_size` apply to the
    methods with a choice of widths (rtn, gptq, awq); fp16, int8 and smoothquant keep their own,
    and each row's "options" says what it took (None: nothing). The FP16 reference logits are computed
    by the first build and reused by the others (dsedge.cache); a rerun reuses finished stages.
    progress: optional callback(method, index, total) called before each build."""
    from .quantize import METHODS, config_from_options
    from .report.compare import compare_rows, write_compare

    # "gptq:gptqmodel" names a method and its backend, to compare two implementations of one method
    specs = [m.split(":", 1) if ":" in m else [m, None] for m in methods]
    unknown = [m for m, _ in specs if m not in METHODS and m != FIT]
    if unknown or not methods:
        raise UsageError(f"unknown method(s): {', '.join(unknown) or '(none given)'}",
                         f"use --methods with some of: {', '.join(METHODS)}, fit (calibrated ones may name a backend: "
                         "gptq:gptqmodel)")
    # --bits / --group-size go to the methods with a choice of widths (rtn, gptq, awq); fp16, int8
    # and smoothquant (W8A8) have one width each and keep it, so `--bits 4` never rejects them
    given = " ".join(f"{flag} {v}" for flag, v in (("--bits", bits), ("--group-size", group_size)) if v is not None)
    configs, took = [], []
    for m, backend in specs:
        if m == FIT:   # --fit as a row: fitted at --fit-bits / --context, INT4 at --group-size
            from .quantize import MixedPrecisionConfig

            configs.append(MixedPrecisionConfig(group_size=128 if group_size is None else group_size,
                                                context=context, max_bits=fit_bits))
            took.append(None)
            continue
        takes = len(METHODS[m].allowed_bits) > 1
        configs.append(config_from_options(m, bits if takes else None, group_size if takes else None, backend=backend))
        took.append(given if takes and given else None)
    if FIT not in (m for m, _ in specs) and (fit_bits is not None or context is not None):
        raise UsageError("--fit-bits / --context apply to the fit row only", "add fit to --methods, or drop them")
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
    for row, opts in zip(rows, took):
        row["options"] = opts
    return results, rows, write_compare(rows, output)


def gate(candidate: str | Path, baseline: str | Path | None = None, thresholds: dict[str, str | None] | None = None,
         project_file: Path | None = None, junit: str | Path | None = None,
         summary: str | Path | None = None):
    """Compare `candidate` (artifact folder, report.json or baseline file) with `baseline` (the
    same kinds; default: dsedge.yaml's gate.baseline) metric by metric -> dsedge.gate.GateResult.

    thresholds: {"max_ppl_increase": "1%", "max_kl": "0.05", ...} (None values are ignored) over
    dsedge.yaml's `gate:` section (project_file, or ./dsedge.yaml) over the defaults.
    junit / summary: also write JUnit XML there / append the Markdown summary there. Raises UsageError when the two cannot
    be compared (different eval data or source model); a regression is `not result.passed`."""
    from .gate import load_gateable, resolve_thresholds, run_gate, to_junit, to_markdown

    t, from_project = resolve_thresholds(thresholds, project_file)
    baseline = baseline or from_project
    if baseline is None:
        raise UsageError("no baseline given", "pass --baseline (artifact, report.json or baseline file) or set "
                                              "gate.baseline in dsedge.yaml")
    t0 = time.perf_counter()
    res = run_gate(load_gateable(candidate, "candidate"), load_gateable(baseline, "baseline"), t)
    res.seconds = time.perf_counter() - t0     # reading, verifying and comparing both: the JUnit suite's time
    if junit is not None:
        Path(junit).parent.mkdir(parents=True, exist_ok=True)
        Path(junit).write_text(to_junit(res))
    if summary is not None:   # appended: $GITHUB_STEP_SUMMARY holds every step's Markdown, not only ours
        Path(summary).parent.mkdir(parents=True, exist_ok=True)
        with open(summary, "a+b") as f:
            body, end = to_markdown(res).encode(), f.seek(0, os.SEEK_END)
            if end:   # a blank line after what is there, whether it ends with a newline or not
                f.seek(end - 1)
                body = (b"\n" if f.read(1) == b"\n" else b"\n\n") + body
            f.write(body)
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
    from .artifact import read_manifest, verify_artifact
    from .report import write_reports

    folder = Path(artifact)
    if folder.is_file() and folder.name == "report.json":
        folder = folder.parent
    if not (folder / "report.json").is_file():
        raise UsageError(f"{artifact} is not a dsedge artifact (no report.json)", "pass a folder written by dsedge build")
    if (folder / "manifest.json").is_file():
        # a report.json (or anything else) edited since the build is not rendered as dsedge's;
        # report.md / .html are what this regenerates
        verify_artifact(folder, skip=("report.md", "report.html"))
    try:
        data = json.loads((folder / "report.json").read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"{folder / 'report.json'} is not valid JSON ({e})", "rebuild the artifact") from None
    if not isinstance(data, dict):
        raise UsageError(f"{folder / 'report.json'} does not hold a JSON object", "rebuild the artifact")
    try:
        paths = write_reports(folder, data, json_too=False)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise UsageError(f"{folder / 'report.json'} is malformed ({type(e).__name__}: {e})",
                         "rebuild the artifact with dsedge build") from None
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

# `dsedge run` (no torch either): greedy generation with a built artifact, here or on a device.
from .run import Generation, Runner, generate  # noqa: E402,F401
