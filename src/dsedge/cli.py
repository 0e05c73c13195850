"""The `dsedge` command: parses options, calls dsedge.api, renders with rich. No logic of its own."""
from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

# The typer app, the consoles and _run are shared with cli_gate and cli_deploy: they live in cli_common,
# which also sets TQDM_DISABLE before any library is imported.
from .cli_common import _run, _state, app, console, is_terminal, out


_TARGETS_DIR = typer.Option(None, "--targets-dir", help="Extra folder of target YAML files.")
_KV_CACHE = typer.Option("fp16", "--kv-cache", help="KV cache dtype: fp16, or int8 (static per-channel scales calibrated "
                         "on --calib; half the cache memory).")


def _progress(enabled: bool):
    """A `stage` hook for dsedge.api.build: a rich progress bar per pipeline stage on a terminal; one
    plain line as each stage starts and ends elsewhere (a pipe, a CI log), written as it happens."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    def check_terminated():
        if _state.get("terminated") is not None:
            raise _state["terminated"]

    if not enabled:
        @contextlib.contextmanager
        def quiet_stage(name):
            check_terminated()
            yield
            check_terminated()
        return contextlib.nullcontext(quiet_stage)
    if not is_terminal(console):
        return contextlib.nullcontext(_plain_stage(check_terminated))
    progress = Progress(SpinnerColumn(), TextColumn("{task.description:<9}"), BarColumn(), TimeElapsedColumn(),
                        console=console, transient=False)
    tasks = {}

    @contextlib.contextmanager
    def stage(name):
        check_terminated()
        tasks[name] = progress.add_task(name, total=1)
        yield
        check_terminated()
        progress.update(tasks[name], completed=1)

    class _Ctx:
        def __enter__(self):
            progress.start()
            return stage

        def __exit__(self, *exc):
            progress.stop()

    return _Ctx()


def _plain_stage(check_terminated):
    """The non-terminal stage hook: "stage NAME started" / "stage NAME done in S s", flushed at once
    (rich's live bar only draws on a terminal: piped, every line would arrive when the build ends)."""
    t_build = time.perf_counter()

    def line(text: str) -> None:
        console.print(f"[{time.perf_counter() - t_build:7.1f} s] {text}", markup=False, highlight=False)
        console.file.flush()

    @contextlib.contextmanager
    def stage(name):
        check_terminated()
        line(f"stage {name} started")
        t0 = time.perf_counter()
        try:
            yield
        except BaseException:
            line(f"stage {name} stopped after {time.perf_counter() - t0:.1f} s")
            raise
        check_terminated()
        line(f"stage {name} done in {time.perf_counter() - t0:.1f} s")
    return stage


@app.command()
def build(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint folder or hub id (default: the bundled reference checkpoint)."),
    target: str = typer.Option("orin", "--target", "-t", help="Target name or alias (see `dsedge targets`)."),
    jetpack: Optional[str] = typer.Option(None, "--jetpack", help="Jetson targets: JetPack release (e.g. 7.2), picking its TensorRT (default: the target file's)."),
    method: Optional[str] = typer.Option(None, "--method", help="fp16 | int8 | rtn | gptq | awq | smoothquant (default: from --bits)."),
    bits: Optional[int] = typer.Option(None, "--bits", help="4 (RTN INT4), 8 (INT8 weight-only) or 16 (FP16)."),
    group_size: Optional[int] = typer.Option(None, "--group-size", help="Input channels per scale (default 128 for 4-bit; -1 = per channel)."),
    asym: bool = typer.Option(False, "--asym", help="Asymmetric weights (zero points; TensorRT needs symmetric)."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Imported (already quantized) --model: the original checkpoint, for accuracy against it."),
    calib: Optional[str] = typer.Option(None, "--calib", help="Calibration: recipe name (calibration/*.yaml; `self`: text the FP16 model generates), recipe file, or .txt/.jsonl (default: reference)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Calibrated methods: llmcompressor (default) or gptqmodel."),
    act_order: Optional[bool] = typer.Option(None, "--act-order/--no-act-order", help="GPTQ: quantize columns by decreasing Hessian diagonal (default: the backend's own: on with llmcompressor, off with gptqmodel)."),
    static_groups: Optional[bool] = typer.Option(None, "--static-groups/--no-static-groups", help="GPTQ with act-order: keep groups in channel order (default: on with llmcompressor, its only act-order; off with gptqmodel)."),
    damping: Optional[float] = typer.Option(None, "--damping", help="GPTQ dampening fraction (default 0.01)."),
    block_size: Optional[int] = typer.Option(None, "--block-size", help="GPTQ columns per block (default 128)."),
    true_sequential: Optional[bool] = typer.Option(None, "--true-sequential/--no-true-sequential", help="GPTQ: attention before MLP within a layer (default on)."),
    grid: Optional[int] = typer.Option(None, "--grid", help="AWQ scale-search grid points (default 20)."),
    clip: Optional[bool] = typer.Option(None, "--clip/--no-clip", help="AWQ weight-clipping search (default: the backend's; llmcompressor never, gptqmodel always)."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="SmoothQuant migration strength (default 0.5)."),
    quantize_lm_head: Optional[bool] = typer.Option(None, "--quantize-lm-head/--no-quantize-lm-head", help="Quantize lm_head too, at the method's bits and group (default off: FP16, as TensorRT-LLM; onnxruntime-genai quantizes it)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Artifact folder (default artifacts/<model>-<method>-<target>)."),
    eval_file: Optional[Path] = typer.Option(None, "--eval", help="Text file for perplexity, or `self`: text the FP16 model generates (default: the reference corpus's eval split)."),
    eval_separator: str = typer.Option("newline", "--eval-separator", help="Join --eval lines with: newline (continuous text) or eos (one document per line)."),
    eval_windows: int = typer.Option(32, "--eval-windows", help="Eval windows to measure accuracy on (at most; fewer when the text is shorter)."),
    eval_window: int = typer.Option(128, "--eval-window", help="Tokens per eval window: the context perplexity and KL are measured at."),
    kv_cache: str = _KV_CACHE,
    fit: bool = typer.Option(False, "--fit", help="Per-linear precision fitted to the target: INT4 / INT8 / FP16 for each linear, lm_head and the embedding (INT8 / FP16), least measured KL within the target's memory at --context."),
    context: Optional[int] = typer.Option(None, "--context", help="--fit: the context the memory budget is planned at (default: the target's max_context)."),
    fit_bits: Optional[float] = typer.Option(None, "--fit-bits", help="--fit: at most this many stored bits per fitted weight as well (INT4 g128 alone: 4.125)."),
    chat_template: Optional[bool] = typer.Option(None, "--chat-template/--no-chat-template", help="Render calibration records and --eval lines through the tokenizer's chat template (R1: <think> turns); default: the calibration recipe's chat_template, plain eval text."),
    dtype: str = typer.Option("float16", "--dtype", help="Activation dtype of the graph: float16 (TensorRT) or float32."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing artifact folder."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Load pytorch_model.bin files (pickle can run code)."),
    targets_dir: Optional[Path] = _TARGETS_DIR,
    no_latency: bool = typer.Option(False, "--no-latency", help="Skip the host latency measurement."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ignore finished stages of earlier identical builds."),
    check: str = typer.Option("auto", "--check", help="auto | full | truncated: PyTorch checks on the whole model or its first layers; quick: the scope auto "
                        "picks, accuracy on the first 4 eval windows (the report says so)."),
    force: bool = typer.Option(False, "--force", help="Build even if the planner predicts this host lacks the memory."),
    max_memory: Optional[float] = typer.Option(None, "--max-memory", help="Plan for at most this many GiB (default: what the host has available)."),
    no_engine: bool = typer.Option(False, "--no-engine", help="Do not build the TensorRT engine even where this machine could."),
    budget: list[str] = typer.Option([], "--budget", help="Override a target budget, NAME=VALUE (repeatable; NAME=none drops it)."),
    no_budget_fail: bool = typer.Option(False, "--no-budget-fail", help="Exit 0 even when a budget is missed."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json instead of the table."),
):
    """Load, quantize, export to ONNX, validate and check; write an artifact folder."""
    def go():
        from . import api
        from .quantize import config_from_options

        options = dict(backend=backend, act_order=act_order, static_groups=static_groups, damping=damping,
                       block_size=block_size, true_sequential=true_sequential, grid=grid, clipping=clip, alpha=alpha,
                       quantize_lm_head=quantize_lm_head)
        chosen = (method, bits, group_size, True if asym else None, *options.values())
        # nothing chosen: the default (INT4 RTN), or an imported checkpoint's own quantization
        quant = None if all(v is None for v in chosen) else config_from_options(
            method, bits, group_size, False if asym else None, **options)
        if fit or context is not None or fit_bits is not None:
            quant = fit_config(fit, context, fit_bits, group_size, asym,
                               {"--method": method, "--bits": bits, **{f"--{k.replace('_', '-')}": v
                                                                       for k, v in options.items()}})
        with _progress(not as_json) as stage:
            res = api.build(model, target=target, quant=quant, output=output, eval_path=eval_file,
                            eval_separator=eval_separator, eval_windows=eval_windows, eval_window=eval_window, kv_cache=kv_cache, reference_model=reference, calib_spec=calib, dtype=dtype,
                            allow_pickle=allow_pickle, overwrite=overwrite, targets_dir=targets_dir,
                            latency=not no_latency, use_cache=not no_cache, check_scope=check, force=force,
                            max_memory_gb=max_memory, budgets=budget, build_engine=not no_engine,
                            chat_template=chat_template, jetpack=jetpack, stage=stage)
        for note in res.report.get("housekeeping", []):
            console.print(note, highlight=False, soft_wrap=True, markup=False)
        if res.report.get("reused_stages"):
            console.print(f"reused from cache: {', '.join(res.report['reused_stages'])} (--no-cache to redo)",
                          highlight=False)
        missed = res.report.get("budgets_missed") or []
        if as_json:
            out.print_json(json.dumps(res.report))
        else:
            _print_summary(res)
        if missed:
            console.print(f"budget missed: {', '.join(missed)} (see the report; --budget NAME=VALUE or "
                          f"--no-budget-fail to accept)", highlight=False)
            if not no_budget_fail:
                raise typer.Exit(1)

    _run(go)


def fit_config(fit: bool, context: int | None, fit_bits: float | None, group_size: int | None, asym: bool,
               others: dict):
    """The unfitted MixedPrecisionConfig `--fit` asks for; --context / --fit-bits need --fit, and
    --fit chooses each unit's bits itself (round to nearest), so a method or bits is an error."""
    from .errors import UsageError
    from .quantize import MixedPrecisionConfig

    if not fit:
        flag = "--context" if context is not None else "--fit-bits"
        raise UsageError(f"{flag} applies to --fit only", f"add --fit, or drop {flag}")
    given = [k for k, v in others.items() if v is not None]
    if given:
        raise UsageError(f"--fit chooses every linear's precision itself (round to nearest); {', '.join(given)} "
                         "names another method", f"drop {', '.join(given)} (--group-size sets the INT4 block)")
    return MixedPrecisionConfig(group_size=128 if group_size is None else group_size, context=context,
                                max_bits=fit_bits, symmetric=not asym)


def _print_summary(res) -> None:
    from .report import summary_rows

    table = Table(title="dsedge build", show_header=True)
    table.add_column("metric", style="bold")
    table.add_column("value")
    for k, v in summary_rows(res.report):
        table.add_row(k, v)
    out.print(table)
    out.print(f"artifact: {res.path}", highlight=False)


targets_app = typer.Typer(help="List targets (targets/*.yaml) or show one.", invoke_without_command=True)
app.add_typer(targets_app, name="targets")


@targets_app.command("show")
def targets_show(name: str = typer.Argument(..., help="Target name or alias, e.g. orin."),
                 targets_dir: Optional[Path] = _TARGETS_DIR,
                 as_json: bool = typer.Option(False, "--json", help="Print the target as JSON."),
                 as_yaml: bool = typer.Option(False, "--yaml", help="Print the target as YAML only (no comment line), "
                                                                    "for yaml.safe_load.")):
    """Print one target's facts and budgets."""
    def go():
        import yaml

        from .errors import UsageError
        from .targets import find_target

        if as_json and as_yaml:
            raise UsageError("--json and --yaml both given", "pick one of them")
        t = find_target(name, targets_dir)
        if as_json:
            out.print_json(json.dumps(t.to_dict()))
        elif as_yaml:   # written as it is: no markup, no wrapping, whatever the width
            typer.echo(yaml.safe_dump(t.to_dict(), sort_keys=False, allow_unicode=True, width=float("inf")), nl=False)
        else:
            out.print(f"# {t.source_file}\n" + yaml.safe_dump(t.to_dict(), sort_keys=False), highlight=False)

    _run(go)


@targets_app.callback()
def targets_list(ctx: typer.Context, targets_dir: Optional[Path] = _TARGETS_DIR,
                 as_json: bool = typer.Option(False, "--json", help="Print every target as JSON.")):
    """List the targets."""
    if ctx.invoked_subcommand:
        return

    def go():
        from .targets import list_targets

        ts = list_targets(targets_dir)
        if as_json:
            out.print_json(json.dumps({k: v.to_dict() for k, v in ts.items()}))
            return
        table = Table(title="targets")
        for col in ("name", "aliases", "GPU", "memory", "bandwidth", "TensorRT"):
            table.add_column(col)
        for t in ts.values():
            table.add_row(t.name, ", ".join(t.aliases), f"sm {t.gpu.compute_capability}",
                          f"{t.memory.usable_gb:g}/{t.memory.total_gb:g} GB", f"{t.memory.bandwidth_gbs:g} GB/s",
                          t.tensorrt.version)
        out.print(table)

    _run(go)


@app.command()
def compare(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint folder or hub id (default: the reference checkpoint)."),
    methods: str = typer.Option("fp16,int8,rtn", "--methods", help="Comma-separated methods to build and compare; METHOD:BACKEND names a backend (gptq:gptqmodel); fit: a --fit build (with --fit-bits / --context)."),
    bits: Optional[int] = typer.Option(None, "--bits", help="Bits for the methods that take them (default 4)."),
    group_size: Optional[int] = typer.Option(None, "--group-size", help="Group size for the methods that take one (default 128; -1 = per channel)."),
    target: str = typer.Option("orin", "--target", "-t", help="Target name or alias (see `dsedge targets`)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for the artifacts and compare.csv/json/pareto.png."),
    eval_file: Optional[Path] = typer.Option(None, "--eval", help="Text file for perplexity, or `self`: text the FP16 model generates (default: the reference corpus's eval split)."),
    calib: Optional[str] = typer.Option(None, "--calib", help="Calibration for gptq / awq / smoothquant (recipe name, YAML, .txt or .jsonl)."),
    eval_separator: str = typer.Option("newline", "--eval-separator", help="Join --eval lines with: newline (continuous text) or eos (one document per line)."),
    eval_windows: int = typer.Option(32, "--eval-windows", help="Eval windows to measure accuracy on (at most; fewer when the text is shorter)."),
    eval_window: int = typer.Option(128, "--eval-window", help="Tokens per eval window: the context perplexity and KL are measured at."),
    kv_cache: str = _KV_CACHE,
    fit_bits: Optional[float] = typer.Option(None, "--fit-bits", help="The `fit` row (--methods ...,fit): at most this many stored bits per fitted weight."),
    context: Optional[int] = typer.Option(None, "--context", help="The `fit` row: the context its memory budget is planned at."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing artifact folders under --output."),
    no_latency: bool = typer.Option(False, "--no-latency", help="Skip the host latency measurement."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON instead of the table."),
):
    """Build the model once per method through the same pipeline and compare them side by side."""
    def go():
        from . import api
        from .report.compare import print_table

        def progress(label, i, n):
            console.print(f"[bold]{i + 1}/{n}[/bold] {label}", highlight=False)

        results, rows, files = api.compare(model, [m.strip() for m in methods.split(",") if m.strip()], bits, group_size,
                                     target, output, overwrite, progress, fit_bits, context, eval_path=eval_file, calib_spec=calib,
                                     eval_separator=eval_separator, eval_windows=eval_windows, eval_window=eval_window,
                                     kv_cache=kv_cache, latency=not no_latency, build_engine=False)
        if as_json:
            out.print_json(json.dumps(rows))
            return
        print_table(rows, out, title=f"dsedge compare on {results[0].report['target']['name']}")
        out.print("written: " + ", ".join(str(p) for p in files.values()), highlight=False)

    _run(go)


@app.command("check-onnx")
def check_onnx_cmd(
    artifact: Path = typer.Argument(..., help="Artifact folder or model.onnx."),
    target: str = typer.Option("orin", "--target", "-t", help="Target whose TensorRT version to check against."),
    jetpack: Optional[str] = typer.Option(None, "--jetpack", help="Jetson targets: JetPack release (e.g. 7.2), picking its TensorRT (default: the target file's)."),
    targets_dir: Optional[Path] = _TARGETS_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print the check as JSON."),
):
    """Check an exported ONNX against the target's TensorRT version (no TensorRT needed)."""
    def go():
        from .engine import check_onnx
        from .errors import UsageError
        from .targets import find_target

        if not artifact.exists():
            raise UsageError(f"{artifact} does not exist", "pass an artifact folder written by dsedge build, or its model.onnx")
        rep = check_onnx(artifact, find_target(target, targets_dir, jetpack))
        if as_json:
            out.print_json(json.dumps(rep.to_dict()))
        else:
            out.print(rep.summary(), highlight=False, soft_wrap=True)
        if not rep.ok:
            raise typer.Exit(1)

    _run(go)


engine_app = typer.Typer(help="TensorRT engines: build one from an artifact on the device.", no_args_is_help=True)
app.add_typer(engine_app, name="engine")


@engine_app.command("build")
def engine_build(
    artifact: Path = typer.Argument(..., help="Artifact folder written by dsedge build."),
    target: str = typer.Option("orin", "--target", "-t", help="Target the engine is built for (its TensorRT settings)."),
    jetpack: Optional[str] = typer.Option(None, "--jetpack", help="Jetson targets: JetPack release (e.g. 7.2), picking its TensorRT (default: the target file's)."),
    targets_dir: Optional[Path] = _TARGETS_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print the engine's facts as JSON."),
):
    """Build model.engine inside the artifact (needs TensorRT and a GPU matching the target)."""
    def go():
        from .artifact import read_manifest, write_manifest
        from .engine import ENGINE_FILE, build_engine, check_onnx
        from .engine.stage import settings_for
        from .errors import UsageError
        from .targets import find_target

        if not (artifact / "manifest.json").is_file():
            raise UsageError(f"{artifact} is not a dsedge artifact (no manifest.json)", "pass a folder written by dsedge build")
        t = find_target(target, targets_dir, jetpack)
        rep = check_onnx(artifact, t)
        if not rep.ok:
            raise UsageError(rep.summary(), "rebuild the artifact with settings this TensorRT takes (see the problems)")
        settings = settings_for(artifact / "model.onnx", t, targets_dir)
        info = build_engine(artifact / "model.onnx", t, settings, artifact / ENGINE_FILE)
        manifest = read_manifest(artifact)
        fields = {k: v for k, v in manifest.items() if k not in ("manifest_version", "created_unix", "versions", "files")}
        fields["engine"] = {"built": True, "settings": settings.to_dict(), **info.to_dict()}
        write_manifest(artifact, **fields)
        if as_json:
            out.print_json(json.dumps(fields["engine"], default=str))
        else:
            out.print(f"engine: {info.path} ({info.bytes / 2**20:.1f} MiB, {info.seconds:.0f} s)", highlight=False)

    _run(go)


@app.command()
def plan(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint folder, its config.json, or a hub id (only config.json is read)."),
    target: str = typer.Option("orin", "--target", "-t", help="Target name or alias."),
    jetpack: Optional[str] = typer.Option(None, "--jetpack", help="Jetson targets: JetPack release (e.g. 7.2), picking its TensorRT (default: the target file's)."),
    bits: Optional[int] = typer.Option(None, "--bits", help="4, 8 or 16 (default 16)."),
    method: Optional[str] = typer.Option(None, "--method", help="Quantization method (default: from --bits)."),
    group_size: Optional[int] = typer.Option(None, "--group-size", help="Input channels per scale (as in build)."),
    asym: bool = typer.Option(False, "--asym", help="Zero points (as in build)."),
    context: Optional[int] = typer.Option(None, "--context", help="Context length (default: the target's max_context)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Batch size (default: the target's max_batch)."),
    kv_cache: str = _KV_CACHE,
    fit: bool = typer.Option(False, "--fit", help="Plan a fitted mix (build --fit): the budget for the fitted weights and whether their cheapest storage (INT4, INT8 embedding) meets it."),
    fit_bits: Optional[float] = typer.Option(None, "--fit-bits", help="--fit: at most this many stored bits per fitted weight as well."),
    targets_dir: Optional[Path] = _TARGETS_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print the plan and the FP16 / INT8 / INT4 options as JSON."),
):
    """Memory plan of a model on a target from config.json alone: weights, KV cache, workspace, fits or not."""
    def go():
        from . import api
        from .plan.memory import GiB

        if fit or fit_bits is not None:
            fit_config(fit, None, fit_bits, group_size, asym, {"--method": method, "--bits": bits})   # the same refusals
            return _plan_fit(api.plan_fit(model, target, context, batch, targets_dir, jetpack, kv_cache,
                                          128 if group_size is None else group_size, fit_bits), as_json)
        quant = api.plan_config(method, bits, group_size, False if asym else None)
        p, opts = api.plan(model, target, quant, context, batch, targets_dir, jetpack, kv_cache)
        if as_json:
            out.print_json(json.dumps({"plan": p.to_dict(), "options": [o.to_dict() for o in opts]}))
        else:
            table = Table(title=f"{p.architecture} on {p.target}: {p.method}, context {p.context}, batch {p.batch}")
            for col in ("item", "GiB", "how"):
                table.add_column(col)
            for row in p.rows():
                table.add_row(*row)
            out.print(table)
            out.print("options: " + "; ".join(
                f"{o.precision} {o.plan.total_bytes / GiB:.1f} GiB "
                + ("fits" if o.fits else "not supported by the target" if not o.supported else "does not fit")
                for o in opts), highlight=False)
        if not p.fits:
            raise typer.Exit(1)

    _run(go)


def _plan_fit(result, as_json: bool) -> None:
    from .plan.memory import GiB

    p, f = result
    if as_json:
        out.print_json(json.dumps({"plan": p.to_dict(), "fit": f}))
    else:
        table = Table(title=f"{p.architecture} on {p.target}: fitted mix at its cheapest, context {p.context}, "
                            f"batch {p.batch}")
        for col in ("item", "GiB", "how"):
            table.add_column(col)
        for row in p.rows():
            table.add_row(*row)
        out.print(table)
        b, g = f["budget"], (lambda x: f"{x / GiB:.2f} GiB")
        line = (f"fit: the fitted weights may take {g(b['bytes'])} ({b['binding']}); their cheapest storage takes "
                f"{g(f['cheapest_bytes'])}: ")
        if f["fits"]:
            frac = f["room_int8_fraction"]
            line += (f"fits, {g(f['room_bytes'])} left for INT8 / FP16 where the build measures it matters"
                     + (f" (INT8 for {min(frac, 1):.0%} of the linears' INT4 bytes)" if frac is not None else ""))
        else:
            line += f"does NOT fit, {g(-f['room_bytes'])} short"
        out.print(line, highlight=False)
    if not f["fits"]:
        raise typer.Exit(1)


# The gate / report and deploy / bench commands are declared in their own modules, on the shared app;
# imported here, after this module's commands, so that importing dsedge.cli registers them all in this order.
from . import cli_deploy, cli_gate, cli_run  # noqa: E402,F401


def main():
    app()


if __name__ == "__main__":
    sys.exit(main())
